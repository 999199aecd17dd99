//! What a caller sends to a chat engine and what it gets back.
//!
//! A [`GenerateRequest`] carries already-tokenized input; the caller tokenized it on its own thread.
//! The reply is a [`TokenStream`]: a bounded channel of [`Event`]s ending with exactly one
//! `Finished` or `Failed`. Dropping the stream cancels the request.

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::SamplingParams;

/// A generation request with its prompt already tokenized.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Prompt token ids.
    pub prompt: Vec<i32>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Strings that end generation; they are not emitted.
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
    /// How to pick each token.
    pub sampling: SamplingParams,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the model's length limit.
    Length,
}

impl FinishReason {
    /// OpenAI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Token accounting for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Prompt tokens whose KV came from the prefix cache instead of being computed.
    pub cached_tokens: u32,
}

/// One item of a request's output.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New text (may span several tokens, never splits a UTF-8 character).
    Delta {
        /// The text.
        text: String,
        /// Tokens generated so far, this delta included.
        completion_tokens: u32,
        /// When the request asked for them ([`SamplingParams::logprobs`]): the tokens generated
        /// since the previous delta, each with its log-probabilities; empty (no allocation)
        /// otherwise. Tokens that formed a stop string are not reported, nor is an end token.
        logprobs: Vec<TokenLogprob>,
    },
    /// Generation ended normally.
    Finished {
        /// Why it ended.
        reason: FinishReason,
        /// Token counts.
        usage: Usage,
        /// Time the request waited before the engine admitted it.
        queued: std::time::Duration,
    },
    /// Generation failed inside the engine.
    Failed(String),
}

/// One token and its log-probability: the natural log of its probability under the model's
/// raw distribution for that step (the log-softmax of the logits, before temperature, top-k,
/// top-p, min-p, penalties, biases or a grammar), as OpenAI reports and vLLM does by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub token: i32,
    /// The token's bytes (a piece of a UTF-8 character for some tokens; special tokens as their text).
    pub bytes: Vec<u8>,
    /// ln p, at most 0.
    pub logprob: f32,
}

/// A generated token's log-probability and the most likely tokens of the same step.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token that was generated (its bytes as they went into the output text).
    pub chosen: Candidate,
    /// The most likely tokens, most likely first (equal log-probabilities: lower id first), as
    /// many as asked; the chosen token is among them when it ranks high enough.
    pub top: Vec<Candidate>,
}

/// The receiving end of a request's output. Drop it to cancel the request.
#[derive(Debug)]
pub struct TokenStream {
    pub(crate) events: mpsc::Receiver<Event>,
}

impl TokenStream {
    /// The next event, or `None` once the engine has dropped the request.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

/// A request inside the engine: the request, where its output goes, and the queue slot it holds.
#[derive(Debug)]
pub(crate) struct Submitted {
    pub request: GenerateRequest,
    pub events: mpsc::Sender<Event>,
    pub span: tracing::Span,
    /// When the caller submitted it.
    pub submitted_at: std::time::Instant,
    /// Held until the request leaves the engine; bounds waiting + running requests.
    pub _permit: OwnedSemaphorePermit,
}
