//! The chat engine thread: continuous batching over one llama.cpp context.
//!
//! Every step builds one batch: first one decode token for each running sequence, then chunks of
//! prompt prefill for sequences still reading their prompt, all under `max_num_batched_tokens`. New
//! requests join at the next step and finished ones leave without stalling the rest; there are no
//! fixed slots with a context split, only llama.cpp sequence ids over one unified KV cache.
//!
//! KV admission (for now): a sequence is admitted only when its worst case (prompt + `max_tokens`,
//! capped at `max_model_len`) fits in the cache next to the worst cases already admitted, so a
//! running sequence never runs out of cells. Invariant: `reserved` = sum of admitted reservations
//! ≤ `kv_capacity`, and every admitted sequence owns exactly one llama.cpp sequence id.
//!
//! A sequence whose client stops reading is held back (its events wait in an outbox) and one whose
//! client went away is freed at the next step.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::error::TrySendError;

use crate::backend::backend;
use crate::detokenize::Utf8Assembler;
use crate::handle::Command;
use crate::telemetry::Telemetry;
use crate::request::Submitted;
use crate::sampling::build_sampler;
use crate::stop::StopMatcher;
use crate::{EngineError, Event, FinishReason, ModelConfig, Usage};

/// How long an idle engine waits for work before beating its heartbeat again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How long to wait when every sequence is held back by a slow client.
const BLOCKED_WAIT: Duration = Duration::from_millis(2);

/// One admitted request.
struct Sequence {
    /// Time from submission to admission.
    queued: Duration,
    /// llama.cpp sequence id, owned while admitted.
    seq_id: i32,
    submitted: Submitted,
    sampler: LlamaSampler,
    /// Tokens of this sequence already in the KV cache.
    n_past: usize,
    /// Generated tokens so far.
    n_generated: u32,
    /// Sampled token not yet fed back to the model.
    next_token: Option<LlamaToken>,
    /// Index in this step's batch whose logits belong to this sequence.
    logits_at: Option<i32>,
    /// KV cells reserved for this sequence's worst case.
    reserved: usize,
    utf8: Utf8Assembler,
    stop: StopMatcher,
    /// Events the client has not taken yet.
    outbox: VecDeque<Event>,
}

impl Sequence {
    fn prefilling(&self) -> bool {
        self.n_past < self.submitted.request.prompt.len()
    }

    /// Move events to the client; false when the client has gone away.
    fn flush(&mut self) -> bool {
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

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.submitted.request.prompt.len() as u32,
            completion_tokens: self.n_generated,
            cached_tokens: 0,
        }
    }
}

/// The engine thread's state for one chat model.
pub(crate) struct ChatWorker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    config: ModelConfig,
    kv_capacity: usize,
    reserved: usize,
    free_seq_ids: Vec<i32>,
    waiting: VecDeque<Submitted>,
    running: Vec<Sequence>,
    /// Finished sequences whose last events still wait for a slow client.
    draining: Vec<Sequence>,
    telemetry: Arc<Telemetry>,
}

impl<'m> ChatWorker<'m> {
    /// Thread body: create the context, report readiness, then serve until every handle is gone.
    pub(crate) fn run(
        model: &'m Arc<LlamaModel>,
        config: ModelConfig,
        inbox: Receiver<Command>,
        ready: SyncSender<Result<(), EngineError>>,
        telemetry: Arc<Telemetry>,
    ) {
        let mut worker = match Self::new(model, config, Arc::clone(&telemetry)) {
            Ok(w) => w,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        loop {
            telemetry.beat();
            if worker.idle() {
                match inbox.recv_timeout(IDLE_WAIT) {
                    Ok(cmd) => worker.accept(cmd),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            while let Ok(cmd) = inbox.try_recv() {
                worker.accept(cmd);
            }
            if !worker.step() {
                // Nothing could run (every sequence waits on its client): wait for news instead of spinning.
                if let Ok(cmd) = inbox.recv_timeout(BLOCKED_WAIT) {
                    worker.accept(cmd);
                }
            }
        }
        tracing::info!(model = %worker.config.name, "Engine thread stopped.");
    }

    fn new(model: &'m LlamaModel, config: ModelConfig, telemetry: Arc<Telemetry>) -> Result<Self, EngineError> {
        let kv_capacity = match config.kv_cache_tokens {
            0 => config.max_model_len,
            n => n.max(config.max_model_len),
        };
        let threads = config.effective_threads();
        let n_batch = config.max_num_batched_tokens.max(1);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(kv_capacity))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch.min(512))
            .with_n_seq_max(config.max_num_seqs)
            .with_kv_unified(true)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let context_error = |reason: String| EngineError::Context { model: config.name.clone(), reason };
        let ctx = model.new_context(backend()?, params).map_err(|e| context_error(e.to_string()))?;
        let kv_capacity = ctx.n_ctx() as usize;
        let batch = LlamaBatch::new(n_batch as usize, 1);
        let max_seqs = i32::try_from(config.max_num_seqs).map_err(|e| context_error(e.to_string()))?;
        Ok(Self {
            model,
            ctx,
            batch,
            kv_capacity,
            reserved: 0,
            free_seq_ids: (0..max_seqs).rev().collect(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            draining: Vec::new(),
            config,
            telemetry,
        })
    }

    fn idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty() && self.draining.is_empty()
    }

    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Generate(s) => self.waiting.push_back(s),
            Command::Embed(job) => {
                let _ = job.reply.send(Err(EngineError::WrongKind { model: self.config.name.clone(), operation: "embeddings" }));
            }
        }
    }

    /// One scheduling step. Returns false when there was nothing to compute.
    fn step(&mut self) -> bool {
        self.drop_gone_clients();
        self.admit();
        let kv_used = self.running.iter().map(|s| s.n_past).sum();
        self.telemetry.publish(self.running.len(), self.waiting.len(), kv_used, self.kv_capacity);
        if !self.build_batch() {
            return false;
        }
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            tracing::error!(model = %self.config.name, error = %e, "Batch failed.");
            for mut seq in std::mem::take(&mut self.running) {
                seq.outbox.push_back(Event::Failed(format!("inference failed: {e}")));
                self.release(seq);
            }
            return true;
        }
        self.sample_all();
        true
    }

    fn drop_gone_clients(&mut self) {
        self.waiting.retain(|s| !s.events.is_closed());
        self.draining.retain_mut(Sequence::flush);
        self.draining.retain(|s| !s.outbox.is_empty());
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].flush() {
                i += 1;
            } else {
                let seq = self.running.remove(i);
                tracing::debug!(parent: &seq.submitted.span, "Client went away; sequence freed.");
                self.release(seq);
            }
        }
    }

    /// Move waiting requests to running, in arrival order, while sequence ids and KV cells last.
    fn admit(&mut self) {
        while let Some(next) = self.waiting.front() {
            let want = (next.request.prompt.len() + next.request.max_tokens as usize).min(self.config.max_model_len as usize);
            if self.free_seq_ids.is_empty() || self.reserved + want > self.kv_capacity {
                break;
            }
            let Some(submitted) = self.waiting.pop_front() else { break };
            let Some(seq_id) = self.free_seq_ids.pop() else { break };
            self.reserved += want;
            let sampler = build_sampler(&submitted.request.sampling, self.model.n_vocab());
            let stop = StopMatcher::new(&submitted.request.stop);
            let queued = submitted.submitted_at.elapsed();
            self.running.push(Sequence {
                queued,
                seq_id,
                submitted,
                sampler,
                n_past: 0,
                n_generated: 0,
                next_token: None,
                logits_at: None,
                reserved: want,
                utf8: Utf8Assembler::default(),
                stop,
                outbox: VecDeque::new(),
            });
        }
    }

    /// Fill the batch: decode tokens first, then prefill chunks. False when it stayed empty.
    fn build_batch(&mut self) -> bool {
        self.batch.clear();
        let mut budget = self.config.max_num_batched_tokens as usize;
        for seq in &mut self.running {
            seq.logits_at = None;
            if budget == 0 || !seq.outbox.is_empty() {
                continue;
            }
            if let Some(token) = seq.next_token.take() {
                if self.batch.add(token, seq.n_past as i32, &[seq.seq_id], true).is_err() {
                    seq.next_token = Some(token);
                    break;
                }
                seq.logits_at = Some(self.batch.n_tokens() - 1);
                seq.n_past += 1;
                budget -= 1;
            }
        }
        for seq in &mut self.running {
            if budget == 0 {
                break;
            }
            if !seq.prefilling() {
                continue;
            }
            let prompt = &seq.submitted.request.prompt;
            let end = prompt.len().min(seq.n_past + budget);
            for pos in seq.n_past..end {
                let last = pos + 1 == prompt.len();
                if self.batch.add(LlamaToken(prompt[pos]), pos as i32, &[seq.seq_id], last).is_err() {
                    return self.batch.n_tokens() > 0;
                }
                if last {
                    seq.logits_at = Some(self.batch.n_tokens() - 1);
                }
            }
            budget -= end - seq.n_past;
            seq.n_past = end;
        }
        self.batch.n_tokens() > 0
    }

    /// Sample the next token of every sequence that had logits in this step.
    fn sample_all(&mut self) {
        let vocab = self.model.vocab();
        let max_len = self.config.max_model_len as usize;
        let mut i = 0;
        while i < self.running.len() {
            let seq = &mut self.running[i];
            let Some(at) = seq.logits_at.take() else {
                i += 1;
                continue;
            };
            let token = seq.sampler.sample(&self.ctx, at);
            seq.n_generated += 1;
            let request = &seq.submitted.request;
            let finish = if vocab.is_eog(token) && !request.ignore_eos {
                Some(FinishReason::Stop)
            } else {
                let piece = vocab.token_to_piece(token, false, None);
                let text = seq.utf8.push(&piece);
                let pushed = seq.stop.push(&text);
                if !pushed.emit.is_empty() {
                    seq.outbox.push_back(Event::Delta { text: pushed.emit, completion_tokens: seq.n_generated });
                }
                if pushed.stopped {
                    seq.utf8 = Utf8Assembler::default(); // bytes after a stop string are dropped
                    Some(FinishReason::Stop)
                } else if seq.n_generated >= request.max_tokens || seq.n_past + 1 >= max_len {
                    Some(FinishReason::Length)
                } else {
                    seq.next_token = Some(token);
                    None
                }
            };
            match finish {
                None => i += 1,
                Some(reason) => {
                    // `remove`, not `swap_remove`: admission order is prefill order.
                    let mut seq = self.running.remove(i);
                    let tail = seq.stop.finish() + &seq.utf8.finish();
                    if !tail.is_empty() {
                        seq.outbox.push_back(Event::Delta { text: tail, completion_tokens: seq.n_generated });
                    }
                    seq.outbox.push_back(Event::Finished { reason, usage: seq.usage(), queued: seq.queued });
                    self.release(seq);
                }
            }
        }
    }

    /// Free a sequence's KV cells and id; its remaining events drain to the client.
    fn release(&mut self, mut seq: Sequence) {
        if let Err(e) = self.ctx.clear_kv_cache_seq(Some(seq.seq_id as u32), None, None) {
            tracing::warn!(error = %e, "Could not clear a finished sequence's KV cells.");
        }
        self.free_seq_ids.push(seq.seq_id);
        self.reserved -= seq.reserved;
        if seq.flush() && !seq.outbox.is_empty() {
            self.draining.push(seq);
        }
    }
}
