//! `/health` and `/ready` answers.

use serde::Serialize;
use utoipa::ToSchema;

/// `/health` (`ok`, or `degraded` with the reason) and `/ready` (`ready`, with each model's state).
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` or `degraded` (`/health`), `ready` (`/ready`).
    pub status: &'static str,
    /// Why `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `/ready`: each model's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelReadiness>>,
}

impl Status {
    /// A status with nothing more to say.
    pub fn plain(status: &'static str) -> Status {
        Status { status, reason: None, models: None }
    }
}

/// One model in `/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelReadiness {
    pub id: String,
    /// `loaded`, `loading`, `unloaded`, `unloading` or `failed` (a local model), `remote`.
    pub state: String,
    /// Requests holding a local model now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bodies_are_the_documented_ones() {
        let json = |v: &Status| serde_json::to_string(v).unwrap_or_default();
        assert_eq!(json(&Status::plain("ok")), r#"{"status":"ok"}"#);
        assert_eq!(json(&Status { reason: Some("x".into()), ..Status::plain("degraded") }), r#"{"status":"degraded","reason":"x"}"#);
        let models = vec![
            ModelReadiness { id: "a".into(), state: "loaded".into(), in_flight: Some(0) },
            ModelReadiness { id: "b".into(), state: "remote".into(), in_flight: None },
        ];
        assert_eq!(
            json(&Status { models: Some(models), ..Status::plain("ready") }),
            r#"{"status":"ready","models":[{"id":"a","state":"loaded","in_flight":0},{"id":"b","state":"remote"}]}"#
        );
    }
}
