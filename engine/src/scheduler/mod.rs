//! The chat engine thread: continuous batching over one llama.cpp context, with paged KV
//! admission, preemption and automatic prefix caching.
//!
//! Every step: drop requests whose client went away; admit waiting requests first-come
//! first-served while llama.cpp sequence ids and KV blocks last (a cached prefix is tagged into
//! the new sequence instead of being recomputed); plan the step's tokens — one decode token for
//! each running sequence first, then chunks of prefill, all under `max_num_batched_tokens` and,
//! with `max_decode_slowdown`, under a time budget the [`PrefillPacer`] learns from past steps — and
//! grow each sequence's blocks, preempting the most recently admitted sequence when blocks run out
//! (it is recomputed later, usually from the prefix cache); run the step as one llama.cpp batch, or
//! on the CPU as one per kind of work (see [`batches`]); sample.
//! There are no fixed slots: any sequence may grow to `max_model_len` while blocks last.
//!
//! Host work per step is kept small because on a GPU it is what limits throughput: sampling runs
//! on a small thread pool, one sequence per task, straight from llama.cpp's logits rows (greedy
//! requests take an argmax, plain temperature sampling runs in Rust without llama.cpp's candidate
//! array: see `sampling`); only detokenizing and handing events to
//! the clients stay on the engine thread. Each step's time is split into phases (schedule, decode,
//! sample, emit) and published with the other counters, so `/metrics` and `raw_bench` show where
//! a step goes.
//!
//! Liveness: the loop beats the heartbeat before every step and after every llama.cpp batch, so
//! the longest silence of a working engine is one batch, at most `max_num_batched_tokens` tokens
//! (chunked prefill cuts a long prompt into steps of that size; `n_ubatch` is at most 512).
//!
//! Invariants: a llama.cpp sequence id is running, parked (holding cached cells) or free, and a
//! free id has no cells; every KV decision goes through the [`BlockManager`], whose [`KvOp`]s are
//! applied to llama.cpp in order.

mod pacing;
mod prefill_order;
mod sequence;
mod tiering;

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroU32;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use rayon::prelude::*;

use self::pacing::PrefillPacer;
use self::prefill_order::prefill_order;
use self::sequence::{Flow, Sequence};
use crate::backend::backend;
use crate::handle::{report_ready, Command};
use crate::gpu::kv_bytes_per_token;
use crate::kv::{coalesce, BlockManager, KvOp, PrefixMatch, PrefixTiers, SeqKey, Tier};
use crate::sampling::build_sampler;
use crate::telemetry::{CacheTier, StepPhases, Telemetry};
use crate::{BatchMixing, EngineError, Event, FinishReason, FlashAttention, KvCacheDtype, ModelConfig};

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
    config: ModelConfig,
    blocks: BlockManager,
    /// llama.cpp sequence ids available to this context.
    n_llama_ids: i32,
    /// Ids of finished sequences that still hold cached cells, oldest first.
    parked: VecDeque<i32>,
    next_key: SeqKey,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    /// Finished sequences whose last events still wait for a slow client.
    draining: Vec<Sequence>,
    telemetry: Arc<Telemetry>,
    /// Threads that sample the sequences of a step in parallel.
    samplers: rayon::ThreadPool,
    /// Sizes the prefill of steps that also decode (`max_decode_slowdown`).
    pacer: PrefillPacer,
    /// The prefix cache's RAM and disk tiers, when on.
    tiers: Option<PrefixTiers>,
    /// KV bytes of one token (for the hot tier's size).
    kv_bytes_per_token: u64,
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
        let Some(mut worker) = report_ready(Self::new(model, config, Arc::clone(&telemetry)), &ready) else { return };
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
        let kv_tokens = match config.kv_cache_tokens {
            0 => config.max_model_len,
            n => n.max(config.max_model_len),
        };
        let n_llama_ids = if config.enable_prefix_caching {
            (config.max_num_seqs * 4).clamp(config.max_num_seqs, MAX_LLAMA_SEQS)
        } else {
            config.max_num_seqs
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
            .with_kv_unified(true)
            .with_type_k(kv_type)
            .with_type_v(kv_type)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_flash_attention_policy(match config.flash_attention {
                FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
                FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
                FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
            });
        let context_error = |reason: String| EngineError::Context { model: config.name.clone(), reason };
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
        let salt = {
            let mut h = DefaultHasher::new();
            (config.path.as_os_str(), model.size(), model.n_params(), config.kv_cache_dtype as u8).hash(&mut h);
            h.finish()
        };
        tracing::info!(model = %config.name, kv_tokens = ctx.n_ctx(), num_blocks, block_size, llama_ids = n_llama_ids, "KV cache ready.");
        let tiers = tiering::open_tiers(&config, model, block_size, salt);
        Ok(Self {
            model,
            batch: LlamaBatch::new(n_batch as usize, 1),
            blocks: {
                let (total, probation) = cache_bounds(config.prefix_cache_max_tokens, block_size);
                BlockManager::new(num_blocks, block_size, salt, config.enable_prefix_caching).with_cache_limit(total, probation)
            },
            ctx,
            n_llama_ids: n_llama_ids as i32,
            parked: VecDeque::new(),
            next_key: 0,
            waiting: VecDeque::new(),
            running: Vec::new(),
            draining: Vec::new(),
            pacer: PrefillPacer::new(config.max_decode_slowdown),
            tiers,
            kv_bytes_per_token: kv_bytes_per_token(model, config.kv_cache_dtype),
            config,
            telemetry,
            samplers,
        })
    }

    fn idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty() && self.draining.is_empty()
    }

    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Generate(submitted) => {
                let sampler = match build_sampler(&submitted.request.sampling, &self.model) {
                    Ok(sampler) => sampler,
                    Err(message) => {
                        let _ = submitted.events.try_send(crate::Event::Failed(message));
                        return;
                    }
                };
                self.next_key += 1;
                self.waiting.push_back(Sequence::new(self.next_key, submitted, sampler));
            }
            Command::Embed(job) => {
                let _ = job.reply.send(Err(EngineError::WrongKind { model: self.config.name.clone(), operation: "embeddings" }));
            }
        }
    }

    /// One scheduling step. Returns false when there was nothing to compute.
    fn step(&mut self) -> bool {
        let started = Instant::now();
        self.drop_gone_clients();
        self.admit();
        let planned = self.plan();
        self.publish();
        if planned.is_empty() {
            return false;
        }
        let scheduled = Instant::now();
        let (mut batch_tokens, mut decode, mut sample) = (0, Duration::ZERO, Duration::ZERO);
        for part in batches(&planned, self.config.batch_mixing) {
            self.fill_batch(part);
            batch_tokens += self.batch.n_tokens().max(0) as u64;
            let t0 = Instant::now();
            let decoded = self.ctx.decode(&mut self.batch);
            if decoded.is_ok() {
                // llama.cpp returns before a GPU finishes; waiting here keeps device time in `decode`.
                self.ctx.synchronize();
            }
            decode += t0.elapsed();
            self.telemetry.beat(); // progress inside the step: a split step runs up to three batches
            if let Err(e) = decoded {
                tracing::error!(model = %self.config.name, error = %e, "Batch failed.");
                for mut seq in std::mem::take(&mut self.running) {
                    seq.outbox.push_back(Event::Failed(format!("inference failed: {e}")));
                    self.finish(seq);
                }
                return true;
            }
            let t1 = Instant::now();
            self.sample_tokens(); // before the next batch overwrites the logits
            sample += t1.elapsed();
        }
        for seq in &self.running {
            self.blocks.register(seq.key, &seq.tokens, seq.n_past);
        }
        let emitting = Instant::now();
        self.emit();
        let decoding = planned.iter().filter(|w| w.part == Part::Decode).count();
        let prefilled = planned.iter().filter(|w| w.part != Part::Decode).map(|w| w.take).sum();
        self.pacer.record(decoding, prefilled, started.elapsed().as_secs_f64());
        tracing::trace!(
            tokens = batch_tokens,
            sequences = planned.len(),
            decoding,
            decode_us = decode.as_micros() as u64,
            pacer = ?self.pacer,
            "Step."
        );
        self.telemetry.step_done(
            batch_tokens,
            StepPhases { schedule: scheduled - started, decode, sample, emit: emitting.elapsed() },
        );
        true
    }

    fn publish(&self) {
        let kv_used = self.blocks.active_blocks() * self.blocks.block_size();
        let kv_capacity = self.ctx.n_ctx() as usize;
        self.telemetry.publish(self.running.len(), self.waiting.len(), kv_used, kv_capacity);
        self.publish_tiers();
    }

    /// Drop the sequences whose client went away, or stopped reading for longer than
    /// `stall_timeout`: a running one leaves the running set and its blocks are freed.
    fn drop_gone_clients(&mut self) {
        let (now, timeout) = (Instant::now(), self.config.stall_timeout);
        let telemetry = &self.telemetry;
        let keep = |s: &mut Sequence| {
            let flow = s.flush_at(now, timeout);
            stays(s, flow, telemetry)
        };
        self.waiting.retain_mut(keep);
        self.draining.retain_mut(|s| keep(s) && !s.outbox.is_empty());
        let mut i = 0;
        while i < self.running.len() {
            let flow = self.running[i].flush_at(now, timeout);
            if stays(&self.running[i], flow, &self.telemetry) {
                i += 1;
            } else {
                let seq = self.running.remove(i);
                tracing::debug!(parent: &seq.submitted.span, "Sequence freed.");
                self.release_blocks(&seq);
            }
        }
    }

    /// Admit waiting sequences in order while sequence ids and blocks last.
    fn admit(&mut self) {
        while self.running.len() < self.config.max_num_seqs as usize {
            if self.waiting.is_empty() {
                break;
            }
            // Taking an id may evict a parked id's cached blocks, so first ask whether the request
            // could fit even with its whole cached prefix; if not, nothing is evicted for it.
            let Some(front) = self.waiting.front() else { break };
            if !self.fits(&self.blocks.match_prefix(&front.tokens)) {
                break;
            }
            // The id before the prefix: finding one may evict cached blocks, which must not be
            // part of the prefix this sequence is about to share.
            let Some(llama_id) = self.free_llama_id() else { break };
            let Some(seq) = self.waiting.front() else { break };
            let mut prefix = self.blocks.match_prefix(&seq.tokens);
            let (key, total, tokens) = (seq.key, seq.tokens.len(), seq.tokens.clone());
            // A longer prefix saved below the KV cache is restored into fresh blocks instead.
            let below = self.tier_candidate(&tokens, prefix.tokens).filter(|_| self.fits(&PrefixMatch::default()));
            if below.is_some() {
                prefix = PrefixMatch::default();
            } else if !self.fits(&prefix) {
                break;
            }
            let Ok(ops) = self.blocks.allocate(key, llama_id, total, &prefix) else { break };
            self.apply(&ops);
            let (mut n_past, mut from) = (prefix.tokens, (prefix.tokens > 0).then_some(CacheTier::Hot));
            if let Some(found) = below {
                n_past = self.restore_prefix(llama_id, total, &found);
                from = (n_past > 0).then_some(if found.tier == Tier::Disk { CacheTier::Disk } else { CacheTier::Ram });
                self.blocks.register(key, &tokens, n_past);
            }
            let Some(mut seq) = self.waiting.pop_front() else { break };
            if seq.queued.is_none() {
                seq.queued = Some(seq.submitted.submitted_at.elapsed());
                seq.n_cached = n_past;
                self.telemetry.prefix_lookup(total, n_past);
                self.telemetry.tier_hit(from);
            }
            seq.llama_id = Some(llama_id);
            seq.n_past = n_past;
            self.running.push(seq);
        }
    }

    /// Whether the first waiting sequence, reusing `prefix`, fits in the blocks available, keeping
    /// one block of headroom per running sequence so that admissions do not cause preemptions.
    fn fits(&self, prefix: &PrefixMatch) -> bool {
        let Some(seq) = self.waiting.front() else { return false };
        let need = self.blocks.blocks_to_admit(seq.tokens.len(), prefix);
        self.running.is_empty() || need + self.running.len() <= self.blocks.available_blocks()
    }

    /// A llama.cpp sequence id that is neither running nor holding cells, evicting the oldest
    /// parked id's cached cells if needed.
    fn free_llama_id(&mut self) -> Option<i32> {
        let in_use = |w: &Self, id: i32| w.running.iter().any(|s| s.llama_id == Some(id)) || w.blocks.is_holding(id);
        if let Some(id) = (0..self.n_llama_ids).find(|&id| !in_use(self, id)) {
            return Some(id);
        }
        for _ in 0..self.parked.len() {
            let id = self.parked.pop_front()?;
            if self.running.iter().any(|s| s.llama_id == Some(id)) {
                continue; // a stale entry: the id was freed by eviction and reused since
            }
            if !self.blocks.is_holding(id) {
                return Some(id);
            }
            match self.blocks.evict_holder(id) {
                Some(ops) => {
                    self.apply(&ops);
                    return Some(id);
                }
                None => self.parked.push_back(id), // its cells are shared by a running sequence
            }
        }
        None
    }

    /// Decide what each running sequence computes this step and make room for it in the KV cache:
    /// first one decode token of every decoding sequence, then prompt prefill in [`prefill_order`]
    /// under what the token budget (and, with `max_decode_slowdown`, the pacer) leaves.
    /// The work comes out grouped by [`Part`]: decode tokens, prefill chunks, prompt tails.
    fn plan(&mut self) -> Vec<Work> {
        let mut budget = self.config.max_num_batched_tokens as usize;
        let shape = Shape {
            block_size: self.blocks.block_size(),
            caching: self.config.enable_prefix_caching,
            same_step_tails: self.config.batch_mixing == BatchMixing::Split,
        };
        let decoding: Vec<SeqKey> = self.running.iter().filter(|s| s.remaining() == 1).map(|s| s.key).collect();
        let prompts: Vec<(SeqKey, usize)> =
            self.running.iter().filter(|s| s.remaining() > 1).map(|s| (s.key, s.remaining())).collect();
        let mut planned: Vec<Work> = Vec::with_capacity(self.running.len());
        for key in decoding {
            if budget == 0 {
                break;
            }
            budget -= self.plan_sequence(key, budget, shape, &mut planned);
        }
        if !prompts.is_empty() && budget > 0 {
            // What prefill may add without stalling the decode tokens planned above too long.
            budget = self.pacer.prefill_budget(planned.len(), budget, shape.block_size);
            for turn in prefill_order(&prompts, budget) {
                let available = budget.saturating_sub(turn.held_back);
                if available > 0 {
                    budget -= self.plan_sequence(turn.key, available, shape, &mut planned);
                }
            }
        }
        planned.sort_by_key(|w| w.part); // stable: planning order within a part
        planned
    }

    /// Plan one sequence's work within `budget` tokens, growing its blocks (preempting the most
    /// recently admitted unplanned sequence when they run out). Returns the tokens planned.
    fn plan_sequence(&mut self, key: SeqKey, budget: usize, shape: Shape, planned: &mut Vec<Work>) -> usize {
        let Some(seq) = self.running.iter().find(|s| s.key == key) else { return 0 };
        if !seq.outbox.is_empty() {
            return 0; // its client is behind
        }
        let work = step_work(seq.n_past, seq.tokens.len(), budget, shape);
        let take: usize = work.iter().map(|w| w.0).sum();
        let target = seq.n_past + take;
        loop {
            match self.blocks.grow(key, target) {
                Ok(ops) => {
                    self.apply(&ops);
                    planned.extend(work.iter().map(|&(take, part)| Work { key, take, part }));
                    return take;
                }
                Err(_) => {
                    let victim = self.running.iter().rposition(|s| s.key != key && !planned.iter().any(|p| p.key == s.key));
                    match victim {
                        Some(v) => self.preempt(v),
                        None => return 0, // wait for planned sequences to finish
                    }
                }
            }
        }
    }

    fn fill_batch(&mut self, planned: &[Work]) {
        self.batch.clear();
        for &Work { key, take, .. } in planned {
            let Some(seq) = self.running.iter_mut().find(|s| s.key == key) else { continue };
            let Some(llama_id) = seq.llama_id else { continue };
            let end = seq.n_past + take;
            for pos in seq.n_past..end {
                let last = pos + 1 == seq.tokens.len();
                if self.batch.add(LlamaToken(seq.tokens[pos]), pos as i32, &[llama_id], last).is_err() {
                    tracing::error!("batch overflow: planned more tokens than max_num_batched_tokens");
                    return;
                }
                if last {
                    seq.logits_at = Some(self.batch.n_tokens() - 1);
                }
            }
            seq.n_past = end;
        }
    }

    /// Pick the next token of every sequence that had logits in this step, in parallel when
    /// there are several.
    fn sample_tokens(&mut self) {
        let Self { ctx, running, samplers, .. } = self;
        let ctx: &LlamaContext<'m> = ctx;
        let mut jobs: Vec<(&mut Sequence, &[f32])> = running
            .iter_mut()
            .filter_map(|seq| {
                let at = seq.logits_at.take()?;
                Some((seq, ctx.get_logits_ith(at)))
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
        let max_len = self.config.max_model_len as usize;
        let mut i = 0;
        while i < self.running.len() {
            let seq = &mut self.running[i];
            let Some(token) = seq.sampled.take() else {
                i += 1;
                continue;
            };
            seq.n_generated += 1;
            let (ignore_eos, max_tokens) = (seq.submitted.request.ignore_eos, seq.submitted.request.max_tokens);
            let finish = if vocab.is_eog(token) && !ignore_eos {
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
                } else if seq.n_generated >= max_tokens || seq.tokens.len() + 1 >= max_len {
                    Some(FinishReason::Length)
                } else {
                    seq.tokens.push(token.0);
                    None
                }
            };
            match finish {
                None => i += 1,
                Some(reason) => {
                    // `remove`, not `swap_remove`: admission order is preemption order.
                    let mut seq = self.running.remove(i);
                    let tail = seq.stop.finish() + &seq.utf8.finish();
                    if !tail.is_empty() {
                        let delta = seq.delta(tail);
                        seq.outbox.push_back(delta);
                    }
                    let queued = seq.queued.unwrap_or_default();
                    seq.outbox.push_back(Event::Finished { reason, usage: seq.usage(), queued });
                    self.finish(seq);
                }
            }
        }
    }

    /// Preempt `running[index]`: free its blocks (registered ones stay cached) and queue it first
    /// for recomputation.
    fn preempt(&mut self, index: usize) {
        let mut seq = self.running.remove(index);
        tracing::debug!(parent: &seq.submitted.span, tokens = seq.tokens.len(), "Preempted for KV space.");
        self.release_blocks(&seq);
        seq.llama_id = None;
        seq.n_past = 0;
        seq.logits_at = None;
        self.telemetry.preempted();
        self.waiting.push_front(seq);
    }

    /// A finished sequence leaves; its last events drain to the client.
    fn finish(&mut self, mut seq: Sequence) {
        self.release_blocks(&seq);
        if seq.flush() && !seq.outbox.is_empty() {
            self.draining.push(seq);
        }
    }

    fn release_blocks(&mut self, seq: &Sequence) {
        if let Some(id) = seq.llama_id {
            self.save_prefix(seq.key, id, &seq.tokens, seq.n_past);
        }
        let ops = self.blocks.release(seq.key);
        self.apply(&ops);
        if let Some(id) = seq.llama_id {
            if self.blocks.is_holding(id) && !self.parked.contains(&id) {
                self.parked.push_back(id);
            }
        }
    }

    /// Apply the block manager's decisions to llama.cpp's cache, merged where one call does.
    fn apply(&mut self, ops: &[KvOp]) {
        for op in &coalesce(ops) {
            let result = match *op {
                KvOp::Share { from, to, p0, p1 } => self.ctx.copy_kv_cache_seq(from, to, Some(p0 as u32), Some(p1 as u32)).map(|()| true),
                KvOp::Untag { seq, p0, p1 } => self.ctx.clear_kv_cache_seq(Some(seq as u32), Some(p0 as u32), Some(p1 as u32)),
            };
            if !matches!(result, Ok(true)) {
                tracing::error!(?op, "llama.cpp refused a KV operation; the cache and the block table may disagree.");
            }
        }
    }
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

/// The prefix cache's bounds in blocks: `prefix_cache_max_tokens` in all (0: unbounded), and a
/// quarter of that for blocks never served from the cache (one-off prompts), which go first.
fn cache_bounds(max_tokens: u32, block_size: usize) -> (usize, usize) {
    match max_tokens {
        0 => (usize::MAX, usize::MAX),
        n => {
            let total = (n as usize).div_ceil(block_size.max(1));
            (total, total.div_ceil(4))
        }
    }
}

/// One sequence's share of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Work {
    key: SeqKey,
    take: usize,
    part: Part,
}

/// Which llama.cpp batch of a split step a piece of work goes to, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    /// One token of a running sequence.
    Decode,
    /// Prompt tokens up to the prompt's last full block.
    Chunk,
    /// A prompt's tokens after its last full block: what a cached copy of it computes.
    Tail,
}

/// Query rows from which llama.cpp's CPU flash attention computes a batch in dense tiles
/// (`GGML_FA_TILE_Q`); below it each row skips the cells it may not see.
const FA_TILE_ROWS: usize = 64;

/// The llama.cpp batches of one step's plan (grouped by part): all of it (`Mixed`), or one batch
/// per part (`Split`): decode tokens, prefill chunks, prompt tails. A split step's decode tokens
/// and chunks still go together while they are fewer than [`FA_TILE_ROWS`]: there the kernel
/// has no tiles to make dense, and a few paced prefill tokens are not worth a graph computation of
/// their own. Tails always go alone, as a cached copy computes them.
fn batches(planned: &[Work], mixing: BatchMixing) -> Vec<&[Work]> {
    match mixing {
        BatchMixing::Split => {
            let mut parts: Vec<&[Work]> = planned.chunk_by(|a, b| a.part == b.part).collect();
            if let [decode, chunk, ..] = parts[..] {
                let tokens = |p: &[Work]| p.iter().map(|w| w.take).sum::<usize>();
                if decode[0].part == Part::Decode && chunk[0].part == Part::Chunk && tokens(decode) + tokens(chunk) < FA_TILE_ROWS {
                    parts.splice(..2, [&planned[..decode.len() + chunk.len()]]);
                }
            }
            parts
        }
        BatchMixing::Auto | BatchMixing::Mixed => [planned].into_iter().filter(|p| !p.is_empty()).collect(),
    }
}

/// How a step cuts prompts.
#[derive(Debug, Clone, Copy)]
struct Shape {
    block_size: usize,
    caching: bool,
    /// A prompt's tail may follow its last chunk in the same step (as its own batch).
    same_step_tails: bool,
}

/// What a sequence with `n_past` of its `len` tokens computed does this step, within `budget`:
/// `(tokens, part)` pieces. A cold prompt's prefill stops at its last full block
/// ([`prefill_chunk`]); its tail follows in the same step when the step is split and the budget
/// allows, else in the next step.
fn step_work(n_past: usize, len: usize, budget: usize, shape: Shape) -> Vec<(usize, Part)> {
    let remaining = len.saturating_sub(n_past);
    if remaining <= 1 {
        return vec![(remaining, Part::Decode)];
    }
    let tail_start = tail_start(len, shape.block_size);
    if shape.caching && n_past >= tail_start {
        return vec![(remaining.min(budget), Part::Tail)];
    }
    let take = prefill_chunk(n_past, len, budget, shape.block_size, shape.caching);
    let tail = len - tail_start;
    if shape.caching && shape.same_step_tails && n_past + take == tail_start && take + tail <= budget {
        vec![(take, Part::Chunk), (tail, Part::Tail)]
    } else {
        vec![(take, Part::Chunk)]
    }
}

/// Where the tail of `len` tokens starts: the end of its last full block that leaves at least one
/// token after it, which is where a cached copy of the same tokens resumes.
fn tail_start(len: usize, block_size: usize) -> usize {
    let block_size = block_size.max(1);
    len.saturating_sub(1) / block_size * block_size
}

/// Tokens of a sequence to compute this step: all that remain, within the step's budget, except
/// that with prefix caching a prefill chunk stops at the last full block of the token list. A
/// later request with the same tokens resumes from exactly there (its cached prefix), so the cold
/// and the cached request compute their tail in the same shape and give the same output: llama.cpp
/// picks kernels by batch size, and their results may differ in the last bits.
fn prefill_chunk(n_past: usize, len: usize, budget: usize, block_size: usize, caching: bool) -> usize {
    let take = len.saturating_sub(n_past).min(budget);
    let resume_at = tail_start(len, block_size);
    if caching && n_past < resume_at && n_past + take > resume_at {
        resume_at - n_past
    } else {
        take
    }
}

#[cfg(test)]
mod tests {
    use super::{batches, cache_bounds, prefill_chunk, step_work, BatchMixing, Part, Shape, Work};

    #[test]
    fn a_quarter_of_the_prefix_cache_is_for_blocks_never_reused() {
        assert_eq!(cache_bounds(8192, 16), (512, 128));
        assert_eq!(cache_bounds(100, 16), (7, 2));
        assert_eq!(cache_bounds(0, 16), (usize::MAX, usize::MAX));
    }

    #[test]
    fn a_split_step_runs_decode_tokens_chunks_and_tails_as_separate_batches() {
        let w = |key, take, part| Work { key, take, part };
        let planned = [w(1, 1, Part::Decode), w(2, 1, Part::Decode), w(3, 112, Part::Chunk), w(3, 16, Part::Tail), w(4, 16, Part::Tail)];
        assert_eq!(batches(&planned, BatchMixing::Split), vec![&planned[..2], &planned[2..3], &planned[3..]]);
        assert_eq!(batches(&planned, BatchMixing::Mixed), vec![&planned[..]]);
        assert_eq!(batches(&planned[..2], BatchMixing::Split), vec![&planned[..2]]);
        assert!(batches(&[], BatchMixing::Split).is_empty());
        assert!(batches(&[], BatchMixing::Mixed).is_empty());
    }

    #[test]
    fn a_split_step_keeps_decode_tokens_and_a_small_chunk_together() {
        let w = |key, take, part| Work { key, take, part };
        // 2 decode tokens and a 40-token chunk: below the kernel's tile, one batch; the tail alone.
        let small = [w(1, 1, Part::Decode), w(2, 1, Part::Decode), w(3, 40, Part::Chunk), w(3, 16, Part::Tail)];
        assert_eq!(batches(&small, BatchMixing::Split), vec![&small[..3], &small[3..]]);
        // 2 + 62 tokens reach the tile: apart.
        let large = [w(1, 1, Part::Decode), w(2, 1, Part::Decode), w(3, 62, Part::Chunk)];
        assert_eq!(batches(&large, BatchMixing::Split), vec![&large[..2], &large[2..]]);
        // Decode tokens and a tail are never merged.
        let tail = [w(1, 1, Part::Decode), w(3, 16, Part::Tail)];
        assert_eq!(batches(&tail, BatchMixing::Split), vec![&tail[..1], &tail[1..]]);
    }

    #[test]
    fn a_cold_prompts_tail_follows_its_chunk_in_the_same_step_when_split() {
        let split = Shape { block_size: 16, caching: true, same_step_tails: true };
        let mixed = Shape { same_step_tails: false, ..split };
        // 128 tokens: 112 up to the last full block, then the 16 a cached copy would compute.
        assert_eq!(step_work(0, 128, 512, split), vec![(112, Part::Chunk), (16, Part::Tail)]);
        assert_eq!(step_work(0, 128, 512, mixed), vec![(112, Part::Chunk)]);
        assert_eq!(step_work(112, 128, 512, mixed), vec![(16, Part::Tail)]);
        // A cached copy resumes at the tail: the same piece, in the same part.
        assert_eq!(step_work(112, 128, 512, split), vec![(16, Part::Tail)]);
        // No room for the tail: next step.
        assert_eq!(step_work(0, 128, 120, split), vec![(112, Part::Chunk)]);
        // Decoding, and prompts without caching.
        assert_eq!(step_work(128, 129, 512, split), vec![(1, Part::Decode)]);
        let uncached = Shape { caching: false, ..split };
        assert_eq!(step_work(0, 128, 512, uncached), vec![(128, Part::Chunk)]);
    }

    #[test]
    fn a_prefill_chunk_stops_where_a_cached_copy_would_resume() {
        // 176 tokens, blocks of 16: a later identical prompt reuses 160 and computes 16.
        assert_eq!(prefill_chunk(0, 176, 512, 16, true), 160);
        assert_eq!(prefill_chunk(160, 176, 512, 16, true), 16);
        // Without caching, or when the budget ends first, nothing changes.
        assert_eq!(prefill_chunk(0, 176, 512, 16, false), 176);
        assert_eq!(prefill_chunk(0, 176, 100, 16, true), 100);
        assert_eq!(prefill_chunk(100, 176, 512, 16, true), 60);
        // Shorter than a block plus one token: computed at once; decode takes one token.
        assert_eq!(prefill_chunk(0, 16, 512, 16, true), 16);
        assert_eq!(prefill_chunk(0, 17, 512, 16, true), 16);
        assert_eq!(prefill_chunk(176, 177, 512, 16, true), 1);
        assert_eq!(prefill_chunk(5, 5, 512, 16, true), 0);
    }
}
