//! One request inside the chat engine: its tokens, its place in the KV cache, its sampler, and the
//! events waiting for its client.
//!
//! `tokens` holds the prompt followed by every sampled token; `n_past` of them are in the KV
//! cache. Prefill and decode are the same operation — compute `tokens[n_past..]`, take logits at
//! the end — so a preempted sequence is recomputed simply by setting `n_past` back to 0.

use std::collections::VecDeque;
use std::time::Duration;

use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::error::TrySendError;

use crate::detokenize::Utf8Assembler;
use crate::kv::SeqKey;
use crate::request::Submitted;
use crate::sampling::Sampler;
use crate::stop::StopMatcher;
use crate::{Event, Usage};

pub(super) struct Sequence {
    /// The block manager's key for this sequence.
    pub key: SeqKey,
    /// llama.cpp sequence id while admitted.
    pub llama_id: Option<i32>,
    pub submitted: Submitted,
    /// Prompt, then generated tokens.
    pub tokens: Vec<i32>,
    /// Length of the original prompt.
    pub n_prompt: usize,
    /// Tokens of `tokens` in the KV cache.
    pub n_past: usize,
    /// Generated tokens so far.
    pub n_generated: u32,
    /// Prompt tokens served by the prefix cache at first admission.
    pub n_cached: usize,
    /// Time from submission to first admission.
    pub queued: Option<Duration>,
    pub sampler: Sampler,
    /// Index in this step's batch whose logits belong to this sequence.
    pub logits_at: Option<i32>,
    /// The token picked this step, waiting to be emitted.
    pub sampled: Option<LlamaToken>,
    pub utf8: Utf8Assembler,
    pub stop: StopMatcher,
    /// Events the client has not taken yet; while non-empty the sequence is not computed.
    pub outbox: VecDeque<Event>,
}

impl Sequence {
    pub(super) fn new(key: SeqKey, mut submitted: Submitted, sampler: Sampler) -> Self {
        let tokens = std::mem::take(&mut submitted.request.prompt);
        let stop = StopMatcher::new(&submitted.request.stop);
        Self {
            key,
            llama_id: None,
            n_prompt: tokens.len(),
            tokens,
            submitted,
            n_past: 0,
            n_generated: 0,
            n_cached: 0,
            queued: None,
            sampler,
            logits_at: None,
            sampled: None,
            utf8: Utf8Assembler::default(),
            stop,
            outbox: VecDeque::new(),
        }
    }

    /// Tokens still to compute before the next sample.
    pub(super) fn remaining(&self) -> usize {
        self.tokens.len() - self.n_past
    }

    /// Move events to the client; false when the client has gone away.
    pub(super) fn flush(&mut self) -> bool {
        while let Some(event) = self.outbox.pop_front() {
            match self.submitted.events.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.outbox.push_front(event);
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        !self.submitted.events.is_closed()
    }

    pub(super) fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.n_prompt as u32, completion_tokens: self.n_generated, cached_tokens: self.n_cached as u32 }
    }
}
