//! Ollama's API beside OpenAI's, so tools that only speak Ollama (editors, desktop chat apps, the
//! `ollama` Python package) use hearth as they are: `POST /api/chat`, `/api/generate`,
//! `/api/embed`, `/api/embeddings`, `/api/show`, `GET /api/tags`, `/api/ps`, `/api/version`.
//!
//! Design: a translation layer only. The handlers turn Ollama's fields into the same
//! [`GenerationParams`](crate::service::generate::GenerationParams) and embedding request the
//! OpenAI routes build, call the same service functions ([`crate::service::generate::start`],
//! [`crate::service::embed::embeddings`]), and shape what comes back: generations as NDJSON
//! (`application/x-ndjson`, one object a line, `stream` true by default as in Ollama) ending with
//! an object that has `done: true`, `done_reason` and the timings in nanoseconds. Validation,
//! limits, the structured-output grammar (`format`), metrics and the engine are shared, so the two
//! APIs cannot drift apart.
//!
//! Names: Ollama clients send `name:tag`; `name` and `name:latest` both mean the configured model
//! `name`, and `/api/tags` lists each model as `name:latest`. An unknown model is a 404 with
//! Ollama's body, `{"error": "model 'x' not found"}`; every error of these routes has Ollama's
//! `{"error": "..."}` shape (the middleware's own refusals — key, Host, body size — keep
//! OpenAI's shape). Scopes: `infer` for chat, generate and embeddings, `read` for the rest; the
//! Host/Origin guard applies as on every route.

mod embed;
mod generate;
mod models;
mod openai;
pub mod types;

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use crate::error::ApiError;
use crate::provider::Backend;
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::post("/api/chat", Scope::Infer, BodyKind::Json), generate::chat)
        .add(Route::post("/api/generate", Scope::Infer, BodyKind::Json), generate::generate)
        .add(Route::post("/api/embed", Scope::Infer, BodyKind::Json), embed::embed)
        .add(Route::post("/api/embeddings", Scope::Infer, BodyKind::Json), embed::embeddings)
        .add(Route::get("/api/tags", Scope::Read), models::tags)
        .add(Route::post("/api/show", Scope::Read, BodyKind::Json), models::show)
        .add(Route::get("/api/ps", Scope::Read), models::ps)
        .add(Route::get("/api/version", Scope::Read), models::version);
}

/// An [`ApiError`] answered in Ollama's shape: the same status (and `Retry-After`), the body
/// `{"error": "..."}`; an unknown model says `model 'x' not found`, as Ollama does.
#[derive(Debug)]
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        OllamaError(e)
    }
}

impl From<crate::fault::ServiceError> for OllamaError {
    fn from(e: crate::fault::ServiceError) -> Self {
        OllamaError(e.into())
    }
}

impl fmt::Display for OllamaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ApiError::ModelNotFound(name) => write!(f, "model '{name}' not found"),
            other => write!(f, "{other}"),
        }
    }
}

impl ResponseError for OllamaError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        // The inner response logs as every API error does and carries the headers (Retry-After).
        let inner = self.0.error_response();
        let mut response = HttpResponse::build(inner.status());
        for (name, value) in inner.headers() {
            if name != actix_web::http::header::CONTENT_TYPE && name != actix_web::http::header::CONTENT_LENGTH {
                response.insert_header((name.clone(), value.clone()));
            }
        }
        response.json(types::ErrorBody { error: self.to_string() })
    }
}

/// The served model an Ollama client means by `name`: the model of that name, else, for
/// `name:latest`, the model `name`.
fn resolve(state: &AppState, name: &str) -> Result<Backend, ApiError> {
    let models = state.models().map_err(ApiError::from)?;
    if let Ok(backend) = models.get(name) {
        return Ok(backend.clone());
    }
    match name.strip_suffix(":latest").map(|base| models.get(base)) {
        Some(Ok(backend)) => Ok(backend.clone()),
        _ => Err(ApiError::ModelNotFound(name.to_owned())),
    }
}

/// The name `/api/tags` and `/api/ps` list for a served model.
fn tagged(name: &str) -> String {
    if name.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// Now, as Ollama writes `created_at`.
fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A Unix time in seconds as RFC 3339.
fn unix_rfc3339(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A duration in nanoseconds, as Ollama reports durations.
fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_the_latest_tag_unless_they_have_one() {
        assert_eq!(tagged("smollm2"), "smollm2:latest");
        assert_eq!(tagged("qwen:7b"), "qwen:7b");
    }

    #[test]
    fn errors_have_ollamas_body_and_keep_status_and_retry_after() {
        let not_found = OllamaError(ApiError::ModelNotFound("x:latest".into()));
        assert_eq!(not_found.to_string(), "model 'x:latest' not found");
        assert_eq!(not_found.error_response().status(), StatusCode::NOT_FOUND);
        let busy = OllamaError(ApiError::Overloaded("full".into())).error_response();
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(busy.headers().contains_key(actix_web::http::header::RETRY_AFTER));
    }

    #[test]
    fn times_are_rfc_3339() {
        assert_eq!(unix_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert!(now_rfc3339().ends_with('Z'));
    }
}
