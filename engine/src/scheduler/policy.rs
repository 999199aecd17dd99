//! The chat engine's scheduling policy, in pure Rust so it can be proven without a model:
//! admission, step planning and preemption over the paged KV bookkeeping.
//!
//! The [`Scheduler`] owns the waiting queue, the running sequences' token lists and how much of
//! each is computed, the pool of llama.cpp sequence ids, the [`BlockManager`] and the
//! [`PrefillPacer`] — nothing of llama.cpp. Each entry carries its caller's per-request state `T`
//! (for the engine thread: the sampler and the client's channel). The engine thread owns the
//! context and drives a step:
//! 1. [`Scheduler::admit_next`], until it admits nothing: the first waiting request, first come
//!    first served, while `max_num_seqs`, llama.cpp ids and blocks last. Its [`KvOp`]s tag a
//!    cached prefix into the new sequence (so it is not recomputed); a longer prefix offered by
//!    the `below` lookup (the RAM and disk tiers) is restored by the caller instead, which reports
//!    how much it restored with [`Scheduler::restored`].
//! 2. [`Scheduler::plan`]: one decode token for every decoding sequence first, then prompt
//!    prefill in [`prefill_order`], all under `max_num_batched_tokens` and the pacer's time
//!    budget; blocks grow for the planned tokens, and when they run out the most recently admitted
//!    sequence not planned yet is preempted (back to the front of the queue, recomputed later,
//!    usually from the prefix cache). The caller saves each preempted sequence's prefix (if it
//!    keeps tiers) and then applies the plan's ops.
//! 3. The caller computes the [`Work`] (positions `start..start + take` of each sequence), then
//!    [`Scheduler::computed`] registers the full blocks in the prefix cache.
//! 4. Each sampled token goes through [`Scheduler::extend`] (which ends a sequence at its
//!    `max_tokens` or at `max_model_len`); a finished sequence, or one whose client went away,
//!    leaves through [`Scheduler::remove`]; [`Scheduler::record_step`] teaches the pacer the
//!    step's time.
//!
//! Every [`KvOp`] comes back to the caller in the order it must be applied; a sequence that
//! leaves comes with a [`Leaving`]: the tokens of its registered prefix, which the caller may
//! save from the sequence's cells before applying the ops that drop them.
//!
//! Invariants (checked after every call by the property test in `policy_tests.rs`, against a
//! simulation of llama.cpp's cells): a llama.cpp sequence id is running (exactly one running
//! sequence has it), parked (no running sequence, but it holds cached cells; it is in `parked`,
//! to be reclaimed) or free (it has no cells); no op names an id that is free before and after
//! it; the cells in use never exceed the cache; a running sequence's computed tokens are in its
//! blocks.

use std::collections::VecDeque;

use super::pacing::PrefillPacer;
use super::prefill_order::prefill_order;
use super::work::{step_work, tail_start, Part, Shape, Work};
use crate::kv::{common_whole_blocks, BlockManager, Blocks, KvOp, PrefixMatch, SeqKey, StreamManager};

/// What the scheduler is given: the context's size and the model's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SchedulerConfig {
    /// Most sequences running at once.
    pub max_num_seqs: usize,
    /// llama.cpp sequence ids of the context (at least `max_num_seqs`; more let finished
    /// sequences keep their cells as a prefix cache).
    pub n_llama_ids: i32,
    /// Most tokens computed in one step.
    pub max_num_batched_tokens: usize,
    /// Most tokens of one sequence, prompt and output.
    pub max_model_len: usize,
    /// KV blocks of the cache.
    pub num_blocks: usize,
    /// Token positions per block.
    pub block_size: usize,
    /// Identifies the model and KV type in the prefix cache's hashes.
    pub salt: u64,
    /// Automatic prefix caching.
    pub prefix_caching: bool,
    /// Bound of the prefix cache in tokens (0: unbounded).
    pub prefix_cache_max_tokens: u32,
    /// A prompt's tail may follow its last chunk in the same step (split batches).
    pub same_step_tails: bool,
    /// `max_decode_slowdown` (below 1: prefill is not paced).
    pub max_decode_slowdown: f32,
    /// llama.cpp's per-sequence KV layout: each of the `n_llama_ids` ids has its own stream of
    /// `num_blocks / n_llama_ids` blocks (see `kv/streams.rs`).
    pub per_sequence: bool,
}

/// One request inside the scheduler: its tokens, how many are computed, its llama.cpp id.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    key: SeqKey,
    /// llama.cpp sequence id while running.
    llama_id: Option<i32>,
    /// Prompt, then the generated tokens kept so far.
    tokens: Vec<i32>,
    /// Tokens of `tokens` computed (or planned this step) in the KV cache.
    n_past: usize,
    /// Most tokens to generate.
    max_tokens: u32,
    /// Tokens generated so far.
    generated: u32,
    /// The caller's state of this request.
    pub state: T,
}

impl<T> Entry<T> {
    pub(crate) fn llama_id(&self) -> Option<i32> {
        self.llama_id
    }

    pub(crate) fn tokens(&self) -> &[i32] {
        &self.tokens
    }

    /// Tokens still to compute before the next sample.
    pub(crate) fn remaining(&self) -> usize {
        self.tokens.len() - self.n_past
    }
}

/// A sequence leaving the running set (finished, preempted or its client gone): its cells at
/// `0..keep` hold the registered prefix, until the ops that come with it are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leaving {
    pub key: SeqKey,
    pub llama_id: i32,
    /// Tokens of its registered prefix: the leading tokens whose full blocks are in the prefix
    /// cache, which a lower tier may save.
    pub keep: usize,
}

/// A sequence admitted by [`Scheduler::admit_next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admitted<R> {
    pub key: SeqKey,
    pub llama_id: i32,
    /// Tokens of the sequence.
    pub total: usize,
    /// Prompt tokens tagged from the prefix cache by the ops (not recomputed).
    pub cached: usize,
    /// A longer prefix from below the KV cache to restore into `llama_id` after the ops (the
    /// sequence then has fresh blocks for all its tokens and nothing cached); report the tokens
    /// restored with [`Scheduler::restored`].
    pub restore: Option<R>,
}

/// One try at admission: ops to apply in any case (finding an id may evict a parked id's cells
/// even when the request then does not fit), and the sequence admitted, if any.
#[derive(Debug)]
pub(crate) struct AdmitStep<R> {
    pub ops: Vec<KvOp>,
    pub admitted: Option<Admitted<R>>,
}

/// A step's plan.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// What each sequence computes, grouped by [`Part`]: decode tokens, prefill chunks, tails.
    pub work: Vec<Work>,
    /// Sequences preempted for KV space, in order; each is back at the front of the queue.
    pub preempted: Vec<Leaving>,
    /// KV operations to apply, in order, after saving the preempted sequences' prefixes.
    pub ops: Vec<KvOp>,
}

impl Plan {
    /// Decoding sequences in the plan.
    pub(crate) fn decoding(&self) -> usize {
        self.work.iter().filter(|w| w.part == Part::Decode).count()
    }

    /// Prompt tokens in the plan.
    pub(crate) fn prefilled(&self) -> usize {
        self.work.iter().filter(|w| w.part != Part::Decode).map(|w| w.take).sum()
    }
}

/// A running sequence that left through [`Scheduler::remove`].
#[derive(Debug)]
pub(crate) struct Removed<T> {
    pub entry: Entry<T>,
    pub leaving: Option<Leaving>,
    /// KV operations to apply, in order, after saving the prefix.
    pub ops: Vec<KvOp>,
}

/// What became of a sampled token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extended {
    /// Appended: the sequence goes on.
    Kept,
    /// The sequence reached its `max_tokens`, or one more token would reach `max_model_len`; the
    /// token is not appended.
    Length,
}

/// The scheduling policy of one chat engine.
#[derive(Debug)]
pub(crate) struct Scheduler<T> {
    config: SchedulerConfig,
    blocks: Blocks,
    /// Ids of finished sequences that still hold cached cells, oldest first (an entry may be
    /// stale: its id since freed by eviction, or reused).
    parked: VecDeque<i32>,
    /// Key of the last request pushed.
    next_key: SeqKey,
    waiting: VecDeque<Entry<T>>,
    /// In admission order, which is preemption order (last first).
    running: Vec<Entry<T>>,
    /// Sizes the prefill of steps that also decode (`max_decode_slowdown`).
    pacer: PrefillPacer,
}

impl<T> Scheduler<T> {
    pub(crate) fn new(config: SchedulerConfig) -> Self {
        let block_size = config.block_size.max(1);
        let blocks = if config.per_sequence {
            let streams = config.n_llama_ids.max(1) as usize;
            Blocks::PerSequence(StreamManager::new(streams, config.num_blocks / streams, block_size, config.prefix_caching))
        } else {
            let (total, probation) = cache_bounds(config.prefix_cache_max_tokens, block_size);
            Blocks::Unified(BlockManager::new(config.num_blocks, block_size, config.salt, config.prefix_caching).with_cache_limit(total, probation))
        };
        Self {
            config,
            blocks,
            parked: VecDeque::new(),
            next_key: 0,
            waiting: VecDeque::new(),
            running: Vec::new(),
            pacer: PrefillPacer::new(config.max_decode_slowdown),
        }
    }

    /// Queue a request of `tokens` that may generate `max_tokens`; returns its key.
    pub(crate) fn push(&mut self, tokens: Vec<i32>, max_tokens: u32, state: T) -> SeqKey {
        self.next_key += 1;
        let key = self.next_key;
        self.waiting.push_back(Entry { key, llama_id: None, tokens, n_past: 0, max_tokens, generated: 0, state });
        key
    }

    pub(crate) fn blocks(&self) -> &Blocks {
        &self.blocks
    }

    pub(crate) fn pacer(&self) -> &PrefillPacer {
        &self.pacer
    }

    /// Waiting requests, first to be admitted first.
    pub(crate) fn waiting(&self) -> &VecDeque<Entry<T>> {
        &self.waiting
    }

    /// Running sequences in admission order.
    pub(crate) fn running(&self) -> &[Entry<T>] {
        &self.running
    }

    /// Running sequences in admission order, for their state.
    pub(crate) fn running_mut(&mut self) -> &mut [Entry<T>] {
        &mut self.running
    }

    /// The request `key`, running or waiting.
    pub(crate) fn entry(&self, key: SeqKey) -> Option<&Entry<T>> {
        self.running.iter().find(|e| e.key == key).or_else(|| self.waiting.iter().find(|e| e.key == key))
    }

    /// The llama.cpp id of the running sequence `key` (`None` when it is not running).
    pub(crate) fn running_llama_id(&self, key: SeqKey) -> Option<i32> {
        self.running.iter().find(|e| e.key == key).and_then(|e| e.llama_id)
    }

    /// The running sequence `key`.
    pub(crate) fn running_entry_mut(&mut self, key: SeqKey) -> Option<&mut Entry<T>> {
        self.running.iter_mut().find(|e| e.key == key)
    }

    /// Keep the waiting requests for which `keep` says so (waiting requests hold no KV).
    pub(crate) fn retain_waiting(&mut self, mut keep: impl FnMut(&mut Entry<T>) -> bool) {
        self.waiting.retain_mut(|e| keep(e));
    }

    /// Try to admit the first waiting request: while `max_num_seqs`, a llama.cpp id and blocks
    /// last, keeping one block of headroom per running sequence so that admissions do not cause
    /// preemptions. `below(tokens, hot)` offers a prefix saved below the KV cache, when it covers
    /// more than the `hot` tokens the KV cache has.
    pub(crate) fn admit_next<R>(&mut self, below: impl FnOnce(&[i32], usize) -> Option<R>) -> AdmitStep<R> {
        let mut ops = Vec::new();
        let admitted = self.try_admit(below, &mut ops);
        AdmitStep { ops, admitted }
    }

    fn try_admit<R>(&mut self, below: impl FnOnce(&[i32], usize) -> Option<R>, ops: &mut Vec<KvOp>) -> Option<Admitted<R>> {
        if self.running.len() >= self.config.max_num_seqs {
            return None;
        }
        // Taking an id may evict a parked id's cached blocks, so first ask whether the request
        // could fit even with its whole cached prefix; if not, nothing is evicted for it.
        let front = self.waiting.front()?;
        let cached = self.blocks.match_prefix(&front.tokens, None);
        if !self.fits(front, &cached) || self.sharer_computing(front, cached.tokens) {
            return None;
        }
        // The id before the prefix: finding one may evict cached blocks, which must not be part
        // of the prefix this sequence is about to share. Per sequence, the lowest idle id (its
        // stream's cells are replaced by the allocation, after the match is taken).
        let llama_id = self.free_llama_id(ops)?;
        let front = self.waiting.front()?;
        let mut prefix = self.blocks.match_prefix(&front.tokens, Some(llama_id));
        let (key, total) = (front.key, front.tokens.len());
        // A longer prefix saved below the KV cache is restored into fresh blocks instead.
        let restore = below(&front.tokens, prefix.tokens).filter(|_| self.fits(front, &PrefixMatch::default()));
        if restore.is_some() {
            prefix = PrefixMatch::default();
        } else if !self.fits(front, &prefix) {
            return None;
        }
        ops.extend(self.blocks.allocate(key, llama_id, total, &prefix).ok()?);
        let mut seq = self.waiting.pop_front()?;
        seq.llama_id = Some(llama_id);
        seq.n_past = prefix.tokens;
        self.running.push(seq);
        Some(Admitted { key, llama_id, total, cached: prefix.tokens, restore })
    }

    /// Whether a running sequence is still computing blocks of `front`'s prompt beyond the
    /// `cached` tokens the KV cache already offers it. The front then waits (and the queue behind
    /// it) until that prefill has registered them, and shares them instead of computing them a
    /// second time: a burst of requests with one new long prefix (a RAG app's system prompt and
    /// retrieved chunks, many users at once) computes the prefix once, not once per request.
    /// The wait ends when the sharer's prefill passes the common prefix or it leaves the running
    /// set (preempted or cancelled), so it is never longer than computing the prefix would be.
    fn sharer_computing(&self, front: &Entry<T>, cached: usize) -> bool {
        if !self.config.prefix_caching {
            return false;
        }
        let block_size = self.blocks.block_size();
        // Shareable: whole blocks, and never the last token of the prompt (it must be computed).
        let shareable = &front.tokens[..tail_start(front.tokens.len(), block_size)];
        self.running.iter().any(|s| {
            if s.generated > 0 || s.n_past >= shareable.len() || s.remaining() <= 1 {
                // Past its prompt, or past what the front could share; or recomputing after a
                // preemption, where a slow client can hold it back.
                return false;
            }
            let computed = s.n_past / block_size * block_size;
            common_whole_blocks(&s.tokens, shareable, block_size) > cached.max(computed)
        })
    }

    /// The caller restored the first `n_past` tokens of the just admitted sequence `key` from
    /// below the KV cache (0: nothing; the lookup leaves at least one token to compute); they are
    /// registered so the next request shares them.
    pub(crate) fn restored(&mut self, key: SeqKey, n_past: usize) {
        let Self { running, blocks, .. } = self;
        let Some(seq) = running.iter_mut().find(|s| s.key == key) else { return };
        seq.n_past = n_past;
        blocks.register(key, &seq.tokens, n_past);
    }

    /// Whether `seq`, reusing `prefix`, fits in the blocks available, with one block of headroom
    /// per running sequence (a lone request always tries: nothing else could make room).
    fn fits(&self, seq: &Entry<T>, prefix: &PrefixMatch) -> bool {
        self.blocks.fits(seq.tokens.len(), prefix, self.running.len())
    }

    /// A llama.cpp sequence id that is neither running nor holding cells, evicting the oldest
    /// parked id's cached cells if needed (their ops go to `ops`).
    fn free_llama_id(&mut self, ops: &mut Vec<KvOp>) -> Option<i32> {
        let running = |s: &Self, id: i32| s.running.iter().any(|e| e.llama_id == Some(id));
        if self.blocks.is_per_sequence() {
            return (0..self.config.n_llama_ids).find(|&id| !running(self, id));
        }
        if let Some(id) = (0..self.config.n_llama_ids).find(|&id| !running(self, id) && !self.blocks.is_holding(id)) {
            return Some(id);
        }
        for _ in 0..self.parked.len() {
            let id = self.parked.pop_front()?;
            if running(self, id) {
                continue; // a stale entry: the id was freed by eviction and reused since
            }
            if !self.blocks.is_holding(id) {
                return Some(id);
            }
            match self.blocks.evict_holder(id) {
                Some(evicted) => {
                    ops.extend(evicted);
                    return Some(id);
                }
                None => self.parked.push_back(id), // its cells are shared by a running sequence
            }
        }
        None
    }

    /// Decide what each running sequence computes this step and make room for it in the KV cache:
    /// first one decode token of every decoding sequence, then prompt prefill in [`prefill_order`]
    /// under what the token budget (and, with `max_decode_slowdown`, the pacer) leaves. A
    /// sequence whose state is not `ready` (its client is behind) computes nothing. The planned
    /// tokens count as computed from here on (`n_past` moves to the end of each piece of work).
    pub(crate) fn plan(&mut self, ready: impl Fn(&T) -> bool) -> Plan {
        let mut plan = Plan::default();
        let mut budget = self.config.max_num_batched_tokens;
        let shape = Shape { block_size: self.blocks.block_size(), caching: self.config.prefix_caching, same_step_tails: self.config.same_step_tails };
        let decoding: Vec<SeqKey> = self.running.iter().filter(|s| s.remaining() == 1).map(|s| s.key).collect();
        let prompts: Vec<(SeqKey, usize)> = self.running.iter().filter(|s| s.remaining() > 1).map(|s| (s.key, s.remaining())).collect();
        for key in decoding {
            if budget == 0 {
                break;
            }
            budget -= self.plan_sequence(key, budget, shape, &ready, &mut plan);
        }
        if !prompts.is_empty() && budget > 0 {
            // What prefill may add without stalling the decode tokens planned above too long.
            budget = self.pacer.prefill_budget(plan.work.len(), budget, shape.block_size);
            for turn in prefill_order(&prompts, budget) {
                let available = budget.saturating_sub(turn.held_back);
                if available > 0 {
                    budget -= self.plan_sequence(turn.key, available, shape, &ready, &mut plan);
                }
            }
        }
        plan.work.sort_by_key(|w| w.part); // stable: planning order within a part
        if self.blocks.is_per_sequence() {
            self.order_by_id(&mut plan.work);
        }
        plan
    }

    /// Per sequence, llama.cpp cuts a batch into ubatches of consecutive sequence ids in batch
    /// order (`split_equal`): the work goes in id order (within each part when the parts are
    /// separate batches), so the decode tokens of ids 0..n make one ubatch, not many.
    fn order_by_id(&self, work: &mut [Work]) {
        let id = |key: SeqKey| self.running_llama_id(key).unwrap_or(i32::MAX);
        if self.config.same_step_tails {
            work.sort_by_cached_key(|w| (w.part, id(w.key)));
        } else {
            work.sort_by_cached_key(|w| id(w.key));
        }
    }

    /// Plan one sequence's work within `budget` tokens, growing its blocks (preempting the most
    /// recently admitted unplanned sequence when they run out). Returns the tokens planned.
    fn plan_sequence(&mut self, key: SeqKey, budget: usize, shape: Shape, ready: &impl Fn(&T) -> bool, plan: &mut Plan) -> usize {
        let Some(seq) = self.running.iter().find(|s| s.key == key) else { return 0 };
        if !ready(&seq.state) {
            return 0;
        }
        let work = step_work(seq.n_past, seq.tokens.len(), budget, shape);
        let take: usize = work.iter().map(|w| w.0).sum();
        let start = seq.n_past;
        loop {
            match self.blocks.grow(key, start + take) {
                Ok(ops) => {
                    plan.ops.extend(ops);
                    let mut at = start;
                    for (take, part) in work {
                        plan.work.push(Work { key, start: at, take, part });
                        at += take;
                    }
                    if let Some(seq) = self.running.iter_mut().find(|s| s.key == key) {
                        seq.n_past = at;
                    }
                    return take;
                }
                Err(_) => {
                    let victim = self.running.iter().rposition(|s| s.key != key && !plan.work.iter().any(|p| p.key == s.key));
                    match victim {
                        Some(v) => {
                            let (leaving, ops) = self.preempt(v);
                            plan.preempted.extend(leaving);
                            plan.ops.extend(ops);
                        }
                        None => return 0, // wait for planned sequences to finish
                    }
                }
            }
        }
    }

    /// Preempt `running[index]`: free its blocks (registered ones stay cached) and queue it first
    /// for recomputation.
    fn preempt(&mut self, index: usize) -> (Option<Leaving>, Vec<KvOp>) {
        let mut seq = self.running.remove(index);
        let released = self.release(&seq);
        seq.llama_id = None;
        seq.n_past = 0;
        self.waiting.push_front(seq);
        released
    }

    /// The planned work was computed: register the full blocks of every running sequence in the
    /// prefix cache (before any of them finishes, so a finished sequence's blocks stay cached).
    pub(crate) fn computed(&mut self) {
        for seq in &self.running {
            self.blocks.register(seq.key, &seq.tokens, seq.n_past);
        }
    }

    /// A token was sampled for `running[index]` and goes into its output: keep it, or end the
    /// sequence at its `max_tokens` or where one more token would reach `max_model_len`.
    pub(crate) fn extend(&mut self, index: usize, token: i32) -> Extended {
        let Some(seq) = self.running.get_mut(index) else { return Extended::Length };
        seq.generated = seq.generated.saturating_add(1);
        if seq.generated >= seq.max_tokens || seq.tokens.len() + 1 >= self.config.max_model_len {
            return Extended::Length;
        }
        seq.tokens.push(token);
        Extended::Kept
    }

    /// Take `running[index]` out (finished, or its client gone): its blocks are released
    /// (registered ones stay cached) and its id parked while it holds cached cells.
    /// `None` when there is no such sequence.
    pub(crate) fn remove(&mut self, index: usize) -> Option<Removed<T>> {
        if index >= self.running.len() {
            return None;
        }
        // `remove`, not `swap_remove`: admission order is preemption order.
        let entry = self.running.remove(index);
        let (leaving, ops) = self.release(&entry);
        Some(Removed { entry, leaving, ops })
    }

    fn release(&mut self, seq: &Entry<T>) -> (Option<Leaving>, Vec<KvOp>) {
        let leaving = seq.llama_id.map(|llama_id| Leaving {
            key: seq.key,
            llama_id,
            keep: self.blocks.registered_tokens(seq.key).min(seq.n_past).min(seq.tokens.len()),
        });
        let ops = self.blocks.release(seq.key);
        if let Some(id) = seq.llama_id {
            if self.blocks.is_holding(id) && !self.parked.contains(&id) {
                self.parked.push_back(id);
            }
        }
        (leaving, ops)
    }

    /// Teach the pacer how long a step of `plan` took, in seconds.
    pub(crate) fn record_step(&mut self, plan: &Plan, seconds: f64) {
        self.pacer.record(plan.decoding(), plan.prefilled(), seconds);
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

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
