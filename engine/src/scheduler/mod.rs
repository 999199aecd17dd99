//! The chat engine thread: continuous batching over one llama.cpp context, with paged KV
//! admission, preemption and automatic prefix caching.
//!
//! The policy is the [`Scheduler`] (`policy.rs`, pure Rust, tested without a model): it owns the
//! waiting queue, the running sequences' tokens and progress, the llama.cpp sequence ids, the
//! [`BlockManager`](crate::kv::BlockManager) and the prefill pacer, and answers each step with
//! plain data. [`ChatWorker`] owns the llama.cpp context, the sampling threads and the clients'
//! channels, and executes: every step it drops requests whose client went away; admits waiting
//! requests first-come first-served while llama.cpp sequence ids and KV blocks last (a cached
//! prefix is tagged into the new sequence instead of being recomputed; a longer one saved in the
//! RAM or disk tier is restored, `tiering.rs`); takes the step's plan — one decode token for each
//! running sequence first, then chunks of prefill, all under `max_num_batched_tokens` and, with
//! `max_decode_slowdown`, under a time budget the pacer learns from past steps, preempting the
//! most recently admitted sequence when blocks run out (it is recomputed later, usually from the
//! prefix cache); applies the plan's [`KvOp`]s; runs the step as one llama.cpp batch, or on the
//! CPU as one per kind of work (see [`batches`]); samples; and reports the tokens and the
//! finished sequences back to the scheduler.
//! There are no fixed slots: any sequence may grow to `max_model_len` while blocks last.
//!
//! KV layout (`kv_layout`, see `kv/layout.rs`): one unified cache, where sharing a prefix tags its
//! cells, or one stream per llama.cpp sequence id (`max_num_seqs` streams of `max_model_len`
//! cells), where sharing copies a stream. A stream copy is deferred by llama.cpp to the next
//! batch, so until a batch has run this thread never restores into a stream that is the source of
//! a pending copy, nor saves a prefix from one that is its destination (see `pending_copies`).
//!
//! Host work per step is kept small because on a GPU it is what limits throughput: sampling runs
//! on a small thread pool, one sequence per task, straight from llama.cpp's logits rows (greedy
//! requests take an argmax, plain temperature sampling runs in Rust without llama.cpp's candidate
//! array: see `sampling`); only detokenizing and handing events to the clients stay on the engine
//! thread, and with the whole model on a GPU the hand-off of a step's events is done while the
//! next step's batch computes when that batch is one ubatch (llama.cpp's decode then returns
//! before the device finishes: `deliver`), so a decode step does not wait for the clients. Each
//! step's time is split into phases (schedule, decode, sample, emit) and published with the other
//! counters, so `/metrics` and `raw_bench` show where a step goes.
//!
//! Liveness: the loop beats the heartbeat before every step and after every llama.cpp batch, so
//! the longest silence of a working engine is one batch, at most `max_num_batched_tokens` tokens
//! (chunked prefill cuts a long prompt into steps of that size; `n_ubatch` is at most 512).
//!
//! Invariants (the scheduler's, see `policy.rs`): a llama.cpp sequence id is running, parked
//! (holding cached cells) or free, and a free id has no cells; every KV decision goes through the
//! block manager, whose [`KvOp`]s this thread applies to llama.cpp in the order it gets them, after
//! saving the prefix of any sequence that leaves.

mod pacing;
mod policy;
mod prefill_order;
mod save_budget;
mod sequence;
mod tiering;
mod work;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use rayon::prelude::*;

use self::policy::{Extended, Leaving, Removed, Scheduler, SchedulerConfig};
use self::sequence::{Flow, Sequence};
use self::work::{batches, tokens, Work};
use crate::backend::backend;
use crate::gpu::kv_bytes_per_token;
use crate::handle::{report_ready, whole_model_on_gpu, Command};
use crate::kv::{coalesce, stream_sizing, KvOp, PrefixTiers, Tier};
use crate::sampling::build_sampler;
use crate::telemetry::{CacheTier, StepPhases, Telemetry};
use crate::{BatchMixing, EngineError, Event, FinishReason, FlashAttention, KvCacheDtype, KvLayout, ModelConfig};

/// How long an idle engine waits for work before beating its heartbeat again.
const IDLE_WAIT: Duration = Duration::from_millis(500);
/// How long to wait when every sequence is held back by a slow client.
const BLOCKED_WAIT: Duration = Duration::from_millis(2);
/// llama.cpp's limit on sequence ids per context.
pub(crate) const MAX_LLAMA_SEQS: u32 = 256;
/// Fewer sequences to sample than this are sampled on the engine thread (no hand-off cost).
const PARALLEL_SAMPLING_MIN: usize = 4;
/// Most threads that sample in parallel.
const MAX_SAMPLING_THREADS: usize = 8;

/// The engine thread's state for one chat model.
pub(crate) struct ChatWorker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    /// Tokens of `batch` that ask for logits: the rows of its output.
    batch_outputs: usize,
    config: ModelConfig,
    /// Admission, planning and preemption; the requests' tokens and KV bookkeeping.
    scheduler: Scheduler<Sequence>,
    /// Finished sequences whose last events still wait for a slow client.
    draining: Vec<Sequence>,
    telemetry: Arc<Telemetry>,
    /// Threads that sample the sequences of a step in parallel.
    samplers: rayon::ThreadPool,
    /// The prefix cache's RAM and disk tiers, when on.
    tiers: Option<PrefixTiers>,
    /// KV bytes of one token (for the hot tier's size).
    kv_bytes_per_token: u64,
    /// Per-sequence layout: stream copies `(from, to)` applied since the last batch, which
    /// llama.cpp performs at the start of the next one.
    pending_copies: Vec<(i32, i32)>,
    /// Credit for saving finished sequences' prefixes while others wait.
    save_budget: save_budget::SaveBudget,
    /// Time this step spent saving prefixes to the tiers, which the pacer does not count: it is
    /// not the batch's, and charged to a step's prefill tokens it would cut the next steps' prefill.
    saving: Duration,
    /// The longest batch llama.cpp's decode hands to the device and returns from before the device
    /// is done: one ubatch with the whole model on a GPU (a longer batch waits for each ubatch to
    /// finish before it copies the next one's inputs), none on a CPU (decode returns when done).
    /// A step's events are delivered while a batch this long computes, otherwise before it.
    async_batch_tokens: usize,
}

impl<'m> ChatWorker<'m> {
    /// Thread body: create the context, report readiness, then serve until every handle is gone,
    /// or until `stop` is set and nothing is running or waiting.
    pub(crate) fn run(
        model: &'m Arc<LlamaModel>,
        config: ModelConfig,
        inbox: Receiver<Command>,
        ready: SyncSender<Result<(), EngineError>>,
        telemetry: Arc<Telemetry>,
        stop: &AtomicBool,
    ) {
        let Some(mut worker) = report_ready(Self::new(model, config, Arc::clone(&telemetry)), &ready) else { return };
        loop {
            telemetry.beat();
            if worker.idle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match inbox.recv_timeout(IDLE_WAIT) {
                    Ok(cmd) => worker.accept(cmd),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            while let Ok(cmd) = inbox.try_recv() {
                worker.accept(cmd);
            }
            let worked = worker.step();
            worker.publish(); // after the step too, so gauges never go stale while idle
            if !worked {
                // Nothing could run (every sequence waits on its client): wait for news instead of spinning.
                if let Ok(cmd) = inbox.recv_timeout(BLOCKED_WAIT) {
                    worker.accept(cmd);
                }
            }
        }
        // llama.cpp's own counters (prompt/eval time, graphs reused), for comparing with its tools.
        tracing::debug!(model = %worker.config.name, timings = ?worker.ctx.timings(), "llama.cpp counters.");
        tracing::info!(model = %worker.config.name, "Engine thread stopped.");
    }

    fn new(model: &'m LlamaModel, config: ModelConfig, telemetry: Arc<Telemetry>) -> Result<Self, EngineError> {
        let context_error = |reason: String| EngineError::Context { model: config.name.clone(), reason };
        let per_sequence = config.kv_layout == KvLayout::PerSequence;
        let (kv_tokens, n_llama_ids) = if per_sequence {
            if config.max_num_seqs > MAX_LLAMA_SEQS {
                return Err(context_error(format!("kv_layout = \"per_sequence\" has one llama.cpp sequence per stream, at most {MAX_LLAMA_SEQS}: max_num_seqs is {}", config.max_num_seqs)));
            }
            let sizing = stream_sizing(config.max_model_len, config.max_num_seqs, config.kv_cache_tokens).map_err(context_error)?;
            let total = u32::try_from(sizing.total()).map_err(|_| context_error(format!("{} KV cells are more than llama.cpp takes", sizing.total())))?;
            (total, sizing.streams)
        } else {
            let kv_tokens = match config.kv_cache_tokens {
                0 => config.max_model_len,
                n => n.max(config.max_model_len),
            };
            let n_llama_ids = if config.enable_prefix_caching {
                (config.max_num_seqs * 4).clamp(config.max_num_seqs, MAX_LLAMA_SEQS)
            } else {
                config.max_num_seqs
            };
            (kv_tokens, n_llama_ids)
        };
        let threads = config.effective_threads();
        let n_batch = config.max_num_batched_tokens.max(config.max_num_seqs);
        let kv_type = match config.kv_cache_dtype {
            KvCacheDtype::F16 => KvCacheType::F16,
            KvCacheDtype::Q8_0 => KvCacheType::Q8_0,
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(kv_tokens))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch.min(512))
            .with_n_seq_max(n_llama_ids)
            .with_kv_unified(!per_sequence)
            .with_type_k(kv_type)
            .with_type_v(kv_type)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_flash_attention_policy(match config.flash_attention {
                FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
                FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
                FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
            });
        let sampling_threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_SAMPLING_THREADS);
        let samplers = rayon::ThreadPoolBuilder::new()
            .num_threads(sampling_threads)
            .thread_name({
                let name = config.name.clone();
                move |i| format!("sample-{name}-{i}")
            })
            .build()
            .map_err(|e| context_error(format!("cannot start the sampling threads: {e}")))?;
        let ctx = model.new_context(backend()?, params).map_err(|e| context_error(e.to_string()))?;
        let block_size = config.block_size.max(1) as usize;
        let num_blocks = ctx.n_ctx() as usize / block_size;
        if num_blocks * block_size < config.max_model_len as usize {
            return Err(context_error(format!("KV cache of {} tokens cannot hold max_model_len {}", ctx.n_ctx(), config.max_model_len)));
        }
        let stream_cells = ctx.n_ctx() / n_llama_ids;
        if per_sequence && (stream_cells * n_llama_ids != ctx.n_ctx() || (stream_cells as usize) / block_size * block_size < config.max_model_len as usize) {
            return Err(context_error(format!(
                "llama.cpp made {} KV cells for {n_llama_ids} streams, not streams of max_model_len {} in whole blocks of {block_size}",
                ctx.n_ctx(),
                config.max_model_len
            )));
        }
        let salt = {
            let mut h = DefaultHasher::new();
            (config.path.as_os_str(), model.size(), model.n_params(), config.kv_cache_dtype as u8).hash(&mut h);
            h.finish()
        };
        let layout = if per_sequence { format!("kv_unified=false streams={n_llama_ids} stream_cells={stream_cells}") } else { "kv_unified=true".to_owned() };
        tracing::info!(model = %config.name, kv_tokens = ctx.n_ctx(), num_blocks, block_size, llama_ids = n_llama_ids, %layout, "KV cache ready.");
        let tiers = tiering::open_tiers(&config, model, block_size, salt, &layout);
        let scheduler = Scheduler::new(SchedulerConfig {
            max_num_seqs: config.max_num_seqs as usize,
            n_llama_ids: n_llama_ids as i32,
            max_num_batched_tokens: config.max_num_batched_tokens as usize,
            max_model_len: config.max_model_len as usize,
            num_blocks,
            block_size,
            salt,
            prefix_caching: config.enable_prefix_caching,
            prefix_cache_max_tokens: config.prefix_cache_max_tokens,
            same_step_tails: config.batch_mixing == BatchMixing::Split,
            max_decode_slowdown: config.max_decode_slowdown,
            per_sequence,
        });
        let async_batch_tokens = if whole_model_on_gpu(config.n_gpu_layers, model) { ctx.n_ubatch() as usize } else { 0 };
        Ok(Self {
            model,
            batch: LlamaBatch::new(n_batch as usize, 1),
            batch_outputs: 0,
            scheduler,
            ctx,
            draining: Vec::new(),
            tiers,
            kv_bytes_per_token: kv_bytes_per_token(model, config.kv_cache_dtype),
            pending_copies: Vec::new(),
            save_budget: Default::default(),
            saving: Duration::ZERO,
            async_batch_tokens,
            config,
            telemetry,
            samplers,
        })
    }

    fn idle(&self) -> bool {
        self.scheduler.waiting().is_empty() && self.scheduler.running().is_empty() && self.draining.is_empty()
    }

    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Generate(mut submitted) => {
                let sampler = match build_sampler(&submitted.request.sampling, self.model) {
                    Ok(sampler) => sampler,
                    Err(message) => {
                        let _ = submitted.events.try_send(crate::Event::Failed(message));
                        return;
                    }
                };
                let tokens = std::mem::take(&mut submitted.request.prompt);
                let max_tokens = submitted.request.max_tokens;
                let seq = Sequence::new(*submitted, sampler, tokens.len());
                self.scheduler.push(tokens, max_tokens, seq);
            }
            Command::Embed(job) => {
                let _ = job.reply.send(Err(EngineError::WrongKind { model: self.config.name.clone(), operation: "embeddings" }));
            }
        }
    }

    /// One scheduling step. Returns false when there was nothing to compute.
    fn step(&mut self) -> bool {
        let started = Instant::now();
        self.saving = Duration::ZERO;
        self.drop_gone_clients();
        self.admit();
        let plan = self.scheduler.plan(|seq| !seq.behind()); // a client behind waits
        for leaving in &plan.preempted {
            if let Some(entry) = self.scheduler.entry(leaving.key) {
                tracing::debug!(parent: &entry.state.submitted.span, tokens = entry.tokens().len(), "Preempted for KV space.");
            }
            self.save_prefix(leaving);
            self.telemetry.preempted();
        }
        self.apply(&plan.ops);
        self.publish();
        // The last step's events go to the clients now, or while a GPU computes this step's first
        // batch, when llama.cpp returns from that batch at once.
        let parts = batches(&plan.work, self.config.batch_mixing);
        let mut deliver_after_launch = parts.first().is_some_and(|first| returns_at_launch(first, self.stream_ids(first).as_deref(), self.async_batch_tokens));
        if !deliver_after_launch {
            self.deliver();
        }
        if parts.is_empty() {
            return false;
        }
        let scheduled = Instant::now();
        let (mut batch_tokens, mut decode, mut sample) = (0, Duration::ZERO, Duration::ZERO);
        let ubatch_count = if tracing::enabled!(tracing::Level::TRACE) {
            parts.iter().map(|part| ubatches(part, self.stream_ids(part).as_deref(), self.ctx.n_ubatch() as usize)).sum()
        } else {
            0
        };
        for part in parts {
            self.fill_batch(part);
            batch_tokens += self.batch.n_tokens().max(0) as u64;
            let t0 = Instant::now();
            let decoded = self.ctx.decode(&mut self.batch);
            if decoded.is_ok() {
                if std::mem::take(&mut deliver_after_launch) {
                    self.deliver();
                }
                // llama.cpp returns before a GPU finishes; waiting here keeps device time in `decode`.
                self.ctx.synchronize();
                self.pending_copies.clear(); // done before the batch
            }
            decode += t0.elapsed();
            self.telemetry.beat(); // progress inside the step: a split step runs up to three batches
            if let Err(e) = decoded {
                tracing::error!(model = %self.config.name, error = %e, "Batch failed.");
                while let Some(mut removed) = self.scheduler.remove(0) {
                    removed.entry.state.outbox.push_back(Event::Failed(format!("inference failed: {e}")));
                    self.finish(removed);
                }
                return true;
            }
            let t1 = Instant::now();
            self.sample_tokens(); // before the next batch overwrites the logits
            sample += t1.elapsed();
        }
        self.scheduler.computed();
        let emitting = Instant::now();
        self.emit();
        self.scheduler.record_step(&plan, started.elapsed().saturating_sub(self.saving).as_secs_f64());
        self.save_budget.earn(started.elapsed());
        tracing::trace!(
            tokens = batch_tokens,
            ubatches = ubatch_count,
            sequences = plan.work.len(),
            decoding = plan.decoding(),
            decode_us = decode.as_micros() as u64,
            pacer = ?self.scheduler.pacer(),
            "Step."
        );
        self.telemetry.step_done(
            batch_tokens,
            StepPhases { schedule: scheduled - started, decode, sample, emit: emitting.elapsed() },
        );
        true
    }

    /// Per sequence, the llama.cpp id of each piece of `batch`'s work, in batch order (`None` in
    /// the unified layout, where ids do not decide how a batch is cut).
    fn stream_ids(&self, batch: &[Work]) -> Option<Vec<i32>> {
        if !self.scheduler.blocks().is_per_sequence() {
            return None;
        }
        Some(batch.iter().map(|w| self.scheduler.running_llama_id(w.key).unwrap_or(-1)).collect())
    }

    fn publish(&self) {
        let blocks = self.scheduler.blocks();
        let kv_used = blocks.active_blocks() * blocks.block_size();
        let kv_capacity = self.ctx.n_ctx() as usize;
        self.telemetry.publish(self.scheduler.running().len(), self.scheduler.waiting().len(), kv_used, kv_capacity);
        self.publish_tiers();
    }

    /// Drop the sequences whose client went away, or stopped reading for longer than
    /// `stall_timeout`: a running one leaves the running set and its blocks are freed. A running
    /// sequence's events are sent by [`deliver`](Self::deliver), off the critical path; here they
    /// are retried only for a client that was behind.
    fn drop_gone_clients(&mut self) {
        let (now, timeout) = (Instant::now(), self.config.stall_timeout);
        let telemetry = &self.telemetry;
        let keep = |s: &mut Sequence| {
            let flow = s.flush_at(now, timeout);
            stays(s, flow, telemetry)
        };
        self.scheduler.retain_waiting(|e| keep(&mut e.state));
        self.draining.retain_mut(|s| keep(s) && !s.outbox.is_empty());
        let mut i = 0;
        while i < self.scheduler.running().len() {
            let seq = &mut self.scheduler.running_mut()[i].state;
            let flow = if seq.behind() { seq.flush_at(now, timeout) } else { seq.check_at(now, timeout) };
            if stays(seq, flow, &self.telemetry) {
                i += 1;
            } else if let Some(removed) = self.scheduler.remove(i) {
                tracing::debug!(parent: &removed.entry.state.submitted.span, "Sequence freed.");
                self.release(&removed);
            }
        }
    }

    /// Send the running sequences' waiting events (the last step's) to their clients. Called once
    /// per step: with the whole model on a GPU and a first batch of one ubatch (every decode-only
    /// step up to 512 sequences), right after that batch is handed to llama.cpp, which returns
    /// before the device finishes, so the channel sends (and the wake-ups of the client tasks)
    /// overlap the device's work instead of adding to the step. Otherwise before the batch, so a
    /// token is not held back for a batch: on a CPU decode returns when it is done, and a longer
    /// batch (a prefill) returns only when all but its last ubatch are done. A full channel marks
    /// the sequence behind; a closed one is found by the next step's
    /// [`drop_gone_clients`](Self::drop_gone_clients).
    fn deliver(&mut self) {
        for entry in self.scheduler.running_mut() {
            let seq = &mut entry.state;
            if !seq.outbox.is_empty() && !seq.behind() {
                seq.flush();
            }
        }
    }

    /// Admit waiting sequences in order while the scheduler finds them ids and blocks.
    fn admit(&mut self) {
        let block_size = self.scheduler.blocks().block_size();
        loop {
            let tiers = &mut self.tiers;
            let step = self.scheduler.admit_next(|tokens, hot| tiering::candidate(tiers, block_size, tokens, hot));
            self.apply(&step.ops);
            let Some(admitted) = step.admitted else { break };
            let (mut n_past, mut from) = (admitted.cached, (admitted.cached > 0).then_some(CacheTier::Hot));
            if let Some(found) = admitted.restore {
                n_past = self.restore_prefix(admitted.llama_id, admitted.total, &found);
                from = (n_past > 0).then_some(if found.tier == Tier::Disk { CacheTier::Disk } else { CacheTier::Ram });
                self.scheduler.restored(admitted.key, n_past);
            }
            let Some(entry) = self.scheduler.running_entry_mut(admitted.key) else { continue };
            let seq = &mut entry.state;
            if seq.queued.is_none() {
                seq.queued = Some(seq.submitted.submitted_at.elapsed());
                seq.n_cached = n_past;
                self.telemetry.prefix_lookup(admitted.total, n_past);
                self.telemetry.tier_hit(from);
            }
        }
    }

    fn fill_batch(&mut self, planned: &[Work]) {
        self.batch.clear();
        self.batch_outputs = 0;
        for &Work { key, start, take, .. } in planned {
            let Some(entry) = self.scheduler.running_entry_mut(key) else { continue };
            let Some(llama_id) = entry.llama_id() else { continue };
            let len = entry.tokens().len();
            for pos in start..start + take {
                let last = pos + 1 == len;
                if self.batch.add(LlamaToken(entry.tokens()[pos]), pos as i32, &[llama_id], last).is_err() {
                    tracing::error!("batch overflow: planned more tokens than max_num_batched_tokens");
                    return;
                }
                if last {
                    entry.state.logits_row = Some(self.batch_outputs);
                    self.batch_outputs += 1;
                }
            }
        }
    }

    /// Pick the next token of every sequence that had logits in this batch, in parallel when
    /// there are several.
    fn sample_tokens(&mut self) {
        let n_vocab = self.model.n_vocab().max(0) as usize;
        let Self { ctx, scheduler, samplers, batch_outputs, .. } = self;
        let logits = batch_logits(ctx, *batch_outputs, n_vocab);
        let mut jobs: Vec<(&mut Sequence, &[f32])> = scheduler
            .running_mut()
            .iter_mut()
            .filter_map(|entry| {
                let seq = &mut entry.state;
                let row = seq.logits_row.take()?;
                Some((seq, logits.get(row * n_vocab..(row + 1) * n_vocab)?))
            })
            .collect();
        if jobs.len() < PARALLEL_SAMPLING_MIN {
            for (seq, logits) in &mut jobs {
                seq.sample(logits);
            }
        } else {
            samplers.install(|| {
                jobs.par_iter_mut().for_each(|(seq, logits)| seq.sample(logits));
            });
        }
    }

    /// Turn each sampled token into text and events; finish the sequences that are done.
    fn emit(&mut self) {
        let vocab = self.model.vocab();
        let mut i = 0;
        while i < self.scheduler.running().len() {
            let seq = &mut self.scheduler.running_mut()[i].state;
            let Some(token) = seq.sampled.take() else {
                i += 1;
                continue;
            };
            seq.n_generated += 1;
            let finish = if vocab.is_eog(token) && !seq.submitted.request.ignore_eos {
                Some(FinishReason::Stop)
            } else {
                let piece = vocab.token_to_piece(token, false, None);
                seq.keep_logprobs(&piece, |t| vocab.token_to_piece(LlamaToken(t), true, None));
                let text = seq.utf8.push(&piece);
                let pushed = seq.stop.push(&text);
                if !pushed.emit.is_empty() {
                    let delta = seq.delta(pushed.emit);
                    seq.outbox.push_back(delta);
                }
                if pushed.stopped {
                    seq.utf8 = Default::default(); // bytes after a stop string are dropped
                    Some(FinishReason::Stop)
                } else {
                    match self.scheduler.extend(i, token.0) {
                        Extended::Kept => None,
                        Extended::Length => Some(FinishReason::Length),
                    }
                }
            };
            let Some(reason) = finish else {
                i += 1;
                continue;
            };
            let Some(mut removed) = self.scheduler.remove(i) else { break };
            let seq = &mut removed.entry.state;
            let tail = seq.stop.finish() + &seq.utf8.finish();
            if !tail.is_empty() {
                let delta = seq.delta(tail);
                seq.outbox.push_back(delta);
            }
            let queued = seq.queued.unwrap_or_default();
            let usage = seq.usage();
            seq.outbox.push_back(Event::Finished { reason, usage, queued });
            self.finish(removed);
        }
    }

    /// A finished sequence leaves; its last events drain to the client.
    fn finish(&mut self, removed: Removed<Sequence>) {
        self.release(&removed);
        let mut seq = removed.entry.state;
        if seq.flush() && !seq.outbox.is_empty() {
            self.draining.push(seq);
        }
    }

    /// A sequence left the running set: save its prefix to the tiers, then drop its cells.
    fn release(&mut self, removed: &Removed<Sequence>) {
        if let Some(leaving) = removed.leaving.as_ref().filter(|l| !self.copy_pending_into(l.llama_id)) {
            let busy = !self.scheduler.running().is_empty() || !self.scheduler.waiting().is_empty();
            let allowed = self.save_budget.allows(busy);
            let took = tiering::save_prefix(self.tiers.as_mut(), &mut self.ctx, &self.telemetry, &self.config.name, leaving, removed.entry.tokens(), allowed);
            self.save_budget.spend(took);
            self.saving += took;
        }
        self.apply(&removed.ops);
    }

    /// Save the prefix of a sequence that left the running set and is still in the scheduler
    /// (preempted).
    fn save_prefix(&mut self, leaving: &Leaving) {
        if self.copy_pending_into(leaving.llama_id) {
            return;
        }
        let Some(entry) = self.scheduler.entry(leaving.key) else { return };
        self.saving += tiering::save_prefix(self.tiers.as_mut(), &mut self.ctx, &self.telemetry, &self.config.name, leaving, entry.tokens(), true);
    }

    /// Whether `llama_id`'s stream still waits for a copy into it (its buffer is not written yet).
    fn copy_pending_into(&self, llama_id: i32) -> bool {
        self.pending_copies.iter().any(|&(_, to)| to == llama_id)
    }

    /// Whether `llama_id`'s stream is the source of a copy not done yet (it must not be overwritten).
    pub(super) fn copy_pending_from(&self, llama_id: i32) -> bool {
        self.pending_copies.iter().any(|&(from, _)| from == llama_id)
    }

    /// Apply the block manager's decisions to llama.cpp's cache, merged where one call does.
    fn apply(&mut self, ops: &[KvOp]) {
        for op in &coalesce(ops) {
            let result = match *op {
                KvOp::Share { from, to, p0, p1 } => self.ctx.copy_kv_cache_seq(from, to, Some(p0 as u32), Some(p1 as u32)).map(|()| true),
                KvOp::Untag { seq, p0, p1 } => self.ctx.clear_kv_cache_seq(Some(seq as u32), Some(p0 as u32), Some(p1 as u32)),
                // The whole stream (llama.cpp aborts on a partial cross-stream copy), then the cut.
                KvOp::CopyStream { from, to, keep } => {
                    self.pending_copies.push((from, to));
                    self.ctx.copy_kv_cache_seq(from, to, None, None).and_then(|()| self.ctx.clear_kv_cache_seq(Some(to as u32), Some(keep as u32), None))
                }
            };
            if !matches!(result, Ok(true)) {
                tracing::error!(?op, "llama.cpp refused a KV operation; the cache and the block table may disagree.");
            }
        }
    }
}

/// Whether llama.cpp's decode of `batch` returns before the device has computed it: the batch
/// is one ubatch of at most `async_batch_tokens` tokens (0: decode never returns early).
fn returns_at_launch(batch: &[Work], stream_ids: Option<&[i32]>, async_batch_tokens: usize) -> bool {
    async_batch_tokens > 0 && ubatches(batch, stream_ids, async_batch_tokens) == 1
}

/// The ubatches of at most `n_ubatch` tokens that llama.cpp's decode cuts `batch` into: by token
/// count in the unified layout; per sequence (`stream_ids`: each piece of work's llama.cpp id, in
/// batch order) by its equal split over consecutive ids ([`work::per_sequence_ubatches`]), where a
/// prompt beside decode tokens, or a gap in the ids that a finished sequence left, adds ubatches.
fn ubatches(batch: &[Work], stream_ids: Option<&[i32]>, n_ubatch: usize) -> usize {
    let Some(ids) = stream_ids else { return tokens(batch).div_ceil(n_ubatch.max(1)) };
    let mut pieces: Vec<(i32, usize)> = Vec::with_capacity(ids.len());
    for (&id, work) in ids.iter().zip(batch) {
        match pieces.last_mut() {
            Some(last) if last.0 == id => last.1 += work.take, // a prompt's chunk and tail together
            _ => pieces.push((id, work.take)),
        }
    }
    work::per_sequence_ubatches(&pieces, n_ubatch)
}

/// The logits of the batch just decoded: `rows` rows of `n_vocab`, one for each token that asked
/// for them, in batch order. One call (one device synchronization) for the whole batch, where a
/// lookup per sequence would synchronize once per sequence.
fn batch_logits<'c>(ctx: &'c LlamaContext<'_>, rows: usize, n_vocab: usize) -> &'c [f32] {
    if rows == 0 || n_vocab == 0 {
        return &[];
    }
    let first = ctx.get_logits();
    // SAFETY: llama.h documents the buffer `llama_get_logits` returns as holding the logits of
    // every token whose `logits` flag was set, contiguously in batch order: one row of `n_vocab`
    // per such token, and `rows` counts exactly those of the batch just decoded. The buffer
    // belongs to the context and is only rewritten by the next decode, which needs `&mut` the
    // context that this slice borrows.
    unsafe { std::slice::from_raw_parts(first.as_ptr(), rows * n_vocab) }
}

/// Whether a sequence stays after a flush that found its client in `flow`; a stalled client is
/// logged and counted.
fn stays(seq: &Sequence, flow: Flow, telemetry: &Telemetry) -> bool {
    match flow {
        Flow::Open => true,
        Flow::Gone => {
            tracing::debug!(parent: &seq.submitted.span, "Client went away.");
            false
        }
        Flow::Stalled(stalled) => {
            tracing::warn!(
                parent: &seq.submitted.span,
                stalled_ms = stalled.as_millis() as u64,
                generated = seq.n_generated,
                "Client took no event for {:.1} s (over [server] stall_timeout_seconds); generation cancelled.",
                stalled.as_secs_f64()
            );
            telemetry.stalled();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::work::{Part, Work};
    use super::returns_at_launch;

    fn decode(key: u64) -> Work {
        Work { key, start: 200, take: 1, part: Part::Decode }
    }

    #[test]
    fn events_are_delivered_during_a_batch_only_when_decode_returns_at_its_launch() {
        let steady: Vec<Work> = (0..64).map(decode).collect();
        // A decode step of 64 sequences is one ubatch of a GPU's 512: decode returns at launch.
        assert!(returns_at_launch(&steady, None, 512));
        // A prefill chunk makes it four ubatches, and decode waits for the first three.
        let mut with_prefill = steady.clone();
        with_prefill.push(Work { key: 99, start: 0, take: 1_984, part: Part::Chunk });
        assert!(!returns_at_launch(&with_prefill, None, 512));
        // Exactly one ubatch still returns at launch.
        with_prefill[64].take = 512 - 64;
        assert!(returns_at_launch(&with_prefill, None, 512));
        // On a CPU decode returns when it is done; an empty batch is never launched.
        assert!(!returns_at_launch(&steady, None, 0));
        assert!(!returns_at_launch(&[], None, 512));
    }

    #[test]
    fn per_sequence_a_batch_is_one_ubatch_only_of_equal_work_on_consecutive_ids() {
        let steady: Vec<Work> = (0..64).map(decode).collect();
        let ids: Vec<i32> = (0..64).collect();
        assert!(returns_at_launch(&steady, Some(&ids), 512));
        // A finished sequence's id left a gap: two ubatches, ids 0..=16 and 18..=64.
        let gap: Vec<i32> = (0..65).filter(|&id| id != 17).collect();
        assert!(!returns_at_launch(&steady, Some(&gap), 512));
        // A prompt beside the decode tokens: split_equal takes one token of each, then the prompt's rest.
        let mut with_prompt = steady.clone();
        with_prompt[17].take = 100;
        assert!(!returns_at_launch(&with_prompt, Some(&ids), 512));
        // One prompt alone is one ubatch.
        assert!(returns_at_launch(&with_prompt[17..18], Some(&ids[17..18]), 512));
    }
}
