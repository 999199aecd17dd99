//! The OpenAI request fields an Ollama `/api/chat` or `/api/generate` request is turned into
//! ([`super::generate`] fills them). They are serialized and read by the OpenAI routes' own
//! `GenerationParams::from_body`, so every check and error message of those routes applies; a
//! field left `None` is absent, as if the client had not sent it.

use engine::SamplingParams;
use serde::Serialize;
use serde_json::Value;

/// The chat/legacy completions body fields Ollama's requests map to.
#[derive(Debug, Default, Serialize)]
pub(super) struct OpenAiFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// The sampling fields, in the one type the OpenAI routes read them into (only those set
    /// are written; `repeat_penalty` becomes `repetition_penalty`).
    #[serde(flatten)]
    pub sampling: SamplingParams,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<&'a [String]>,
    /// From `num_predict` when positive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// From `format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<LogprobsField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
}

/// `response_format`: `{"type": "json_object"}` or `{"type": "json_schema", "json_schema": ...}`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ResponseFormat<'a> {
    JsonObject,
    JsonSchema { json_schema: NamedSchema<'a> },
}

/// The `json_schema` of [`ResponseFormat::JsonSchema`].
#[derive(Debug, Serialize)]
pub(super) struct NamedSchema<'a> {
    pub name: &'static str,
    pub schema: &'a Value,
}

/// `logprobs`: chat's flag, or the legacy completions' count of alternatives.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum LogprobsField {
    Flag(bool),
    Count(i64),
}
