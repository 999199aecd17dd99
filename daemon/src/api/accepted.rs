//! The request fields each generation API takes, in one place.
//!
//! OpenAI answers a field it does not know with a 400 that names it; hearth does the same, so a
//! client never believes a setting took effect when it was silently dropped. Each list below is
//! what hearth implements for its endpoint; [`NO_OP`] are fields that change nothing about the
//! answer here and are accepted on every endpoint (bookkeeping for OpenAI's platform). A field
//! sent as `null` counts as not sent. The sampling fields of chat and completions are not listed
//! here: they are [`engine::SamplingParams::fields`], the fields serde reads into the one sampling
//! type, so a new one is accepted where it is declared. Any other new field is added to its
//! endpoint's list here and parsed in `service/generate.rs` (`GenerationParams`) or
//! `service/responses.rs`.

use engine::SamplingParams;
use serde_json::Value;

use crate::error::ApiError;

/// Accepted and ignored everywhere: they describe the caller or ask OpenAI's platform for
/// bookkeeping (`store` keeps a chat completion for OpenAI's dashboard), and answer the same
/// without them. `prompt_cache_key` is a routing hint; hearth's prefix cache needs none.
pub const NO_OP: &[&str] = &["user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"];

/// The limit and output fields chat and completions share (`GenerationParams`), beside the
/// sampling fields ([`engine::SamplingParams::fields`]).
const GENERATION: &[&str] = &[
    "model",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "stream",
    "stream_options",
    "n",
    "ignore_eos",
    "response_format",
    "logprobs",
    "top_logprobs",
];

/// The generation APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Responses,
}

impl Endpoint {
    /// The fields of this endpoint beyond [`GENERATION`] (for chat and completions).
    fn own(self) -> &'static [&'static str] {
        match self {
            Endpoint::Chat => &["messages", "tools", "tool_choice", "parallel_tool_calls"],
            Endpoint::Completions => &["prompt"],
            Endpoint::Responses => &[
                "model",
                "input",
                "instructions",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
                "stream",
                "previous_response_id",
                "include",
                "max_output_tokens",
                "temperature",
                "top_p",
            ],
        }
    }

    fn takes(self, field: &str) -> bool {
        let shared = matches!(self, Endpoint::Chat | Endpoint::Completions) && (GENERATION.contains(&field) || SamplingParams::fields().contains(&field));
        shared || self.own().contains(&field) || NO_OP.contains(&field)
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Responses => "/v1/responses",
        }
    }
}

/// A 400 naming the first field of `body` that `endpoint` does not implement.
pub fn check(body: &Value, endpoint: Endpoint) -> Result<(), ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::BadRequest { message: "the request body must be a JSON object".into(), param: None, code: "invalid_value" });
    };
    match object.iter().find(|(field, value)| !value.is_null() && !endpoint.takes(field)) {
        None => Ok(()),
        Some((field, _)) => Err(ApiError::BadRequest {
            message: format!("unrecognized request argument supplied: {field} (hearth's {} does not implement it)", endpoint.path()),
            param: Some(field.clone()),
            code: "unsupported_parameter",
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_unknown_field_is_named_and_null_or_no_op_fields_pass() {
        let ok = json!({"model": "m", "messages": [], "user": "u", "metadata": {"a": "b"}, "tools": [], "echo": null});
        assert!(check(&ok, Endpoint::Chat).is_ok());
        let err = check(&json!({"model": "m", "messages": [], "audio": {"voice": "x"}}), Endpoint::Chat).unwrap_err();
        assert!(err.to_string().contains("audio"), "{err}");
        assert_eq!(err.body()["error"]["param"], "audio");
        // A chat field is not a completions field, and the other way round.
        assert!(check(&json!({"model": "m", "prompt": "x", "tools": []}), Endpoint::Completions).is_err());
        assert!(check(&json!({"model": "m", "messages": [], "prompt": "x"}), Endpoint::Chat).is_err());
        assert!(check(&json!({"model": "m", "input": "x", "seed": 1}), Endpoint::Responses).is_err());
        assert!(check(&json!({"model": "m", "input": "x", "max_output_tokens": 16, "store": false}), Endpoint::Responses).is_ok());
        assert!(check(&json!([1]), Endpoint::Chat).is_err());
    }

    /// Every sampling field serde reads into `SamplingParams` is accepted on chat and completions
    /// and reaches it through `GenerationParams::from_body` (a value of the wrong type is an error
    /// naming it); what the sampling type derives rather than reads (`grammar`) is refused.
    #[test]
    fn the_sampling_fields_accepted_are_the_ones_the_sampling_type_reads() {
        let sampling = SamplingParams::fields();
        for field in sampling {
            for endpoint in [Endpoint::Chat, Endpoint::Completions] {
                assert!(check(&json!({ *field: 1 }), endpoint).is_ok(), "{field} on {endpoint:?}");
            }
            assert!(check(&json!({ *field: 1 }), Endpoint::Responses).is_err() || ["temperature", "top_p"].contains(field), "{field} on responses");
            let err = crate::service::generate::GenerationParams::from_body(&json!({"model": "m", *field: "x"})).unwrap_err();
            assert_eq!(err.to_string().split('`').nth(1), Some(*field), "{err}");
        }
        assert!(sampling.contains(&"temperature") && sampling.contains(&"repetition_penalty") && sampling.contains(&"logit_bias"));
        let err = check(&json!({"model": "m", "messages": [], "grammar": "root ::= \"x\""}), Endpoint::Chat).unwrap_err();
        assert_eq!(err.body()["error"]["param"], "grammar");
        assert_eq!(err.body()["error"]["code"], "unsupported_parameter");
    }
}
