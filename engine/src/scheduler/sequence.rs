//! One request inside the chat engine: its tokens, its place in the KV cache, its sampler, and the
//! events waiting for its client.
//!
//! Its tokens and its place in the KV cache are the scheduler's (`policy::Entry`, whose state this
//! is): the prompt followed by every sampled token, `n_past` of them in the KV cache. Prefill and
//! decode are the same operation — compute `tokens[n_past..]`, take logits at the end — so a
//! preempted sequence is recomputed simply by setting `n_past` back to 0.
//!
//! Events reach the client through a bounded channel. When it is full (the client stopped
//! reading: a TCP zero window stops actix polling the stream) the events wait in `outbox` and
//! `stalled_since` records when; every event the client takes clears it. The scheduler cancels a
//! sequence stalled longer than `stall_timeout` ([`Flow::Stalled`]), so a reader that never reads
//! again cannot hold a running slot and its KV blocks forever.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::error::TrySendError;

use crate::detokenize::Utf8Assembler;
use crate::request::Submitted;
use crate::sampling::{rank, Ranked, Sampler};
use crate::stop::StopMatcher;
use crate::{Candidate, Event, TokenLogprob, Usage};

pub(super) struct Sequence {
    pub submitted: Submitted,
    /// Length of the original prompt.
    pub n_prompt: usize,
    /// Generated tokens so far.
    pub n_generated: u32,
    /// Prompt tokens served by the prefix cache at first admission.
    pub n_cached: usize,
    /// Time from submission to first admission.
    pub queued: Option<Duration>,
    pub sampler: Sampler,
    /// Row of this sequence's logits among the current batch's outputs.
    pub logits_row: Option<usize>,
    /// The token picked this step, waiting to be emitted.
    pub sampled: Option<LlamaToken>,
    /// Its log-probabilities by id, when the request asked for them.
    pub ranked: Option<Ranked>,
    /// Log-probabilities of tokens emitted since the last delta, waiting to go out with the next.
    pub logprobs: Vec<TokenLogprob>,
    pub utf8: Utf8Assembler,
    pub stop: StopMatcher,
    /// Events the client has not taken yet: those of the last step (sent while the next one
    /// computes), or those its full channel refused (then the sequence is [`behind`](Self::behind)).
    pub outbox: VecDeque<Event>,
    /// Since when the channel has been full with events still in `outbox`; None while the client
    /// keeps up.
    pub stalled_since: Option<Instant>,
}

/// Where a sequence's client stands after a [`Sequence::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// The client takes events (or some wait in the outbox for less than the stall timeout).
    Open,
    /// The client went away: the channel is closed.
    Gone,
    /// The client has taken no event for this long, longer than the stall timeout.
    Stalled(Duration),
}

impl Sequence {
    /// A request whose prompt of `n_prompt` tokens the scheduler keeps.
    pub(super) fn new(submitted: Submitted, sampler: Sampler, n_prompt: usize) -> Self {
        let stop = StopMatcher::new(&submitted.request.stop);
        Self {
            n_prompt,
            submitted,
            n_generated: 0,
            n_cached: 0,
            queued: None,
            sampler,
            logits_row: None,
            sampled: None,
            ranked: None,
            logprobs: Vec::new(),
            utf8: Utf8Assembler::default(),
            stop,
            outbox: VecDeque::new(),
            stalled_since: None,
        }
    }

    /// Pick the next token from this step's logits (and rank them, when the request asked for
    /// log-probabilities). Runs on a sampling thread.
    pub(super) fn sample(&mut self, logits: &[f32]) {
        let token = self.sampler.pick(logits);
        if let Some(n) = self.submitted.request.sampling.logprobs {
            self.ranked = Some(rank(logits, token.0, usize::from(n)));
        }
        self.sampled = Some(token);
    }

    /// The sampled token, whose bytes are `piece`, goes into the output: keep its
    /// log-probabilities (if ranked) for the next delta; `bytes_of` looks up the alternatives'.
    pub(super) fn keep_logprobs(&mut self, piece: &[u8], bytes_of: impl Fn(i32) -> Vec<u8>) {
        let Some(Ranked { chosen, top }) = self.ranked.take() else { return };
        let top = top.into_iter().map(|(token, logprob)| Candidate { token, bytes: bytes_of(token), logprob }).collect();
        self.logprobs.push(TokenLogprob { chosen: Candidate { token: chosen.0, bytes: piece.to_vec(), logprob: chosen.1 }, top });
    }

    /// A delta of `text` carrying the log-probabilities kept since the last one.
    pub(super) fn delta(&mut self, text: String) -> Event {
        Event::Delta { text, completion_tokens: self.n_generated, logprobs: std::mem::take(&mut self.logprobs) }
    }

    /// Whether the client is behind: the last flush found its channel full and left events in
    /// the outbox. Such a sequence computes nothing until a flush gets them all out.
    pub(super) fn behind(&self) -> bool {
        self.stalled_since.is_some()
    }

    /// Where the client stands at `now` without sending anything: gone when its channel is closed,
    /// stalled when events have waited for a full channel longer than `stall_timeout`.
    pub(super) fn check_at(&self, now: Instant, stall_timeout: Duration) -> Flow {
        if self.submitted.events.is_closed() {
            return Flow::Gone;
        }
        match self.stalled_since.map(|since| now.saturating_duration_since(since)) {
            Some(stalled) if !stall_timeout.is_zero() && stalled > stall_timeout => Flow::Stalled(stalled),
            _ => Flow::Open,
        }
    }

    /// Move events to the client; false when the client has gone away.
    pub(super) fn flush(&mut self) -> bool {
        self.flush_at(Instant::now(), Duration::ZERO) != Flow::Gone
    }

    /// Move events to the client at `now`, and say whether it is still there, or has taken no
    /// event for longer than `stall_timeout` (`Duration::ZERO`: never stalled).
    pub(super) fn flush_at(&mut self, now: Instant, stall_timeout: Duration) -> Flow {
        while let Some(event) = self.outbox.pop_front() {
            match self.submitted.events.try_send(event) {
                Ok(()) => self.stalled_since = None,
                Err(TrySendError::Full(event)) => {
                    self.outbox.push_front(event);
                    self.stalled_since.get_or_insert(now);
                    break;
                }
                Err(TrySendError::Closed(_)) => return Flow::Gone,
            }
        }
        self.check_at(now, stall_timeout)
    }

    pub(super) fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.n_prompt as u32, completion_tokens: self.n_generated, cached_tokens: self.n_cached as u32 }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{mpsc, Semaphore};

    use super::*;
    use crate::{GenerateRequest, SamplingParams};

    fn sequence(capacity: usize) -> (Sequence, mpsc::Receiver<Event>) {
        let (events, rx) = mpsc::channel(capacity);
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap_or_else(|e| panic!("{e}"));
        let request = GenerateRequest { prompt: vec![1, 2, 3], max_tokens: 8, stop: Vec::new(), ignore_eos: false, sampling: SamplingParams::default() };
        let submitted = Submitted { request, events, span: tracing::Span::none(), submitted_at: Instant::now(), _permit: permit };
        (Sequence::new(submitted, Sampler::Greedy, 3), rx)
    }

    fn delta(n: u32) -> Event {
        Event::Delta { text: format!("t{n}"), completion_tokens: n, logprobs: Vec::new() }
    }

    #[test]
    fn a_client_that_takes_no_event_is_stalled_only_after_the_timeout() {
        let timeout = Duration::from_secs(3);
        let (mut seq, _rx) = sequence(1);
        let t0 = Instant::now();
        seq.outbox.extend([delta(1), delta(2)]);
        assert_eq!(seq.flush_at(t0, timeout), Flow::Open, "one event fits, the second waits");
        assert_eq!(seq.stalled_since, Some(t0));
        assert_eq!(seq.flush_at(t0 + Duration::from_secs(2), timeout), Flow::Open);
        assert_eq!(seq.stalled_since, Some(t0), "the stall is counted from the first full channel");
        assert_eq!(seq.flush_at(t0 + Duration::from_secs(4), timeout), Flow::Stalled(Duration::from_secs(4)));
        assert_eq!(seq.flush_at(t0 + Duration::from_secs(4), Duration::ZERO), Flow::Open, "a zero timeout never stalls");
        assert_eq!(seq.outbox.len(), 1, "nothing was lost from the outbox");
    }

    #[test]
    fn an_event_taken_clears_the_stall() {
        let timeout = Duration::from_secs(3);
        let (mut seq, mut rx) = sequence(1);
        let t0 = Instant::now();
        seq.outbox.extend([delta(1), delta(2)]);
        assert_eq!(seq.flush_at(t0, timeout), Flow::Open);
        assert!(matches!(rx.try_recv(), Ok(Event::Delta { completion_tokens: 1, .. })));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(seq.flush_at(t1, timeout), Flow::Open);
        assert_eq!(seq.stalled_since, None, "the waiting event went out");
        seq.outbox.push_back(delta(3));
        assert_eq!(seq.flush_at(t1 + Duration::from_secs(1), timeout), Flow::Open);
        assert_eq!(seq.stalled_since, Some(t1 + Duration::from_secs(1)), "a new stall starts from its own instant");
        assert_eq!(seq.flush_at(t0 + Duration::from_secs(5), timeout), Flow::Open, "2 s into the new stall, not 5 s");
    }

    #[test]
    fn a_check_sends_nothing_and_sees_what_the_last_flush_saw() {
        let timeout = Duration::from_secs(3);
        let (mut seq, mut rx) = sequence(1);
        let t0 = Instant::now();
        seq.outbox.push_back(delta(1));
        assert_eq!(seq.check_at(t0, timeout), Flow::Open);
        assert!(!seq.behind(), "events not yet flushed are not a client behind");
        assert!(rx.try_recv().is_err(), "a check sends nothing");
        seq.outbox.push_back(delta(2));
        assert_eq!(seq.flush_at(t0, timeout), Flow::Open, "one event fits, the second waits");
        assert!(seq.behind());
        assert_eq!(seq.check_at(t0 + Duration::from_secs(2), timeout), Flow::Open);
        assert_eq!(seq.check_at(t0 + Duration::from_secs(4), timeout), Flow::Stalled(Duration::from_secs(4)));
        assert_eq!(seq.check_at(t0 + Duration::from_secs(4), Duration::ZERO), Flow::Open, "a zero timeout never stalls");
        assert!(matches!(rx.try_recv(), Ok(Event::Delta { completion_tokens: 1, .. })));
        assert_eq!(seq.flush_at(t0 + Duration::from_secs(4), timeout), Flow::Open);
        assert!(!seq.behind(), "the waiting event went out");
        drop(rx);
        assert_eq!(seq.check_at(t0 + Duration::from_secs(5), timeout), Flow::Gone);
    }

    #[test]
    fn a_closed_channel_is_a_client_gone() {
        let (mut seq, rx) = sequence(4);
        drop(rx);
        assert_eq!(seq.flush_at(Instant::now(), Duration::from_secs(3)), Flow::Gone);
        assert!(!seq.flush());
    }
}
