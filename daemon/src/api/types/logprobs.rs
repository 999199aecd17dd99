//! The `logprobs` objects of OpenAI's answers as typed structs (built by `api::logprobs` from the
//! engine's per-token log-probabilities):
//!
//! - Chat: [`ChatLogprobs`], `{"content": [{token, logprob, bytes, top_logprobs: [{token,
//!   logprob, bytes}]}], "refusal": null}`.
//! - Legacy completions: [`CompletionLogprobs`], `{tokens, token_logprobs, top_logprobs:
//!   [{token: logprob}], text_offset}`.
//!
//! A log-probability of −inf (a NaN logit) is written as −9999.0 ([`finite_logprob`]), OpenAI's
//! stand-in, since JSON has no infinity.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// OpenAI's stand-in for a log-probability JSON cannot hold (−inf).
pub const NOT_FINITE: f64 = -9999.0;

/// `lp` as sent: itself when finite, else [`NOT_FINITE`].
pub fn finite_logprob(lp: f32) -> f64 {
    if lp.is_finite() { f64::from(lp) } else { NOT_FINITE }
}

/// The chat completions' `logprobs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatLogprobs {
    /// One entry per generated token.
    pub content: Vec<ChatTokenLogprob>,
    /// Always null: hearth's models do not refuse through a separate channel.
    pub refusal: Option<String>,
}

/// A generated token of [`ChatLogprobs`], with its most likely alternatives.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatTokenLogprob {
    /// The token's bytes decoded as UTF-8 (U+FFFD for part of a character).
    pub token: String,
    pub logprob: f64,
    /// The token's exact bytes.
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<ChatTopLogprob>,
}

/// One alternative of a [`ChatTokenLogprob`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
}

/// The legacy completions' `logprobs`: parallel lists, one entry per generated token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f64>,
    /// Per token, its alternatives as `{token: logprob}` (in the engine's order; two
    /// alternatives with the same text keep the first one's place and the last one's value).
    #[schema(value_type = Vec<Object>)]
    pub top_logprobs: Vec<Map<String, Value>>,
    /// Characters of the completion before each token.
    pub text_offset: Vec<usize>,
}
