//! Tests of the scheduler without a model: unit cases for admission, planning, preemption and
//! release, and a property test that drives random arrivals, steps, finishes, departing and slow
//! clients through the scheduler as the engine thread does, against a simulation of llama.cpp's
//! cells, checking the module's invariants after every call, in both KV layouts (the
//! per-sequence layout's own cases are in `policy_stream_tests.rs`).

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

const BS: usize = 4;

fn config(num_blocks: usize, max_num_seqs: usize, n_llama_ids: i32, max_num_batched_tokens: usize) -> SchedulerConfig {
    SchedulerConfig {
        max_num_seqs,
        n_llama_ids,
        max_num_batched_tokens,
        max_model_len: num_blocks * BS,
        num_blocks,
        block_size: BS,
        salt: 7,
        prefix_caching: true,
        prefix_cache_max_tokens: 0,
        same_step_tails: false,
        max_decode_slowdown: 0.0,
        per_sequence: false,
    }
}

/// A request's state here: whether its client is behind (then nothing is computed for it).
#[derive(Debug, Default)]
struct Client {
    behind: bool,
}

/// How a step ended for one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Length,
    Stopped,
    Gone,
}

/// The scheduler driven as the engine thread drives it, over a simulation of llama.cpp's cells:
/// each (sequence id, position) tag points at a cell; a cell without tags is gone. In the
/// per-sequence layout an id's cells are its stream, and a stream copy makes new cells.
struct Sim {
    s: Scheduler<Client>,
    cells: HashMap<(i32, usize), u64>,
    next_cell: u64,
    next_token: i32,
    /// Every request that left, with how.
    done: Vec<(SeqKey, Outcome)>,
}

impl Sim {
    fn new(config: SchedulerConfig) -> Self {
        Self { s: Scheduler::new(config), cells: HashMap::new(), next_cell: 0, next_token: 1_000_000, done: Vec::new() }
    }

    fn push(&mut self, tokens: Vec<i32>, max_tokens: u32) -> SeqKey {
        self.s.push(tokens, max_tokens, Client::default())
    }

    /// Ids neither running nor holding cells, in the scheduler's view.
    fn free_ids(&self) -> HashSet<i32> {
        (0..self.s.config.n_llama_ids).filter(|&id| !self.s.running.iter().any(|e| e.llama_id == Some(id)) && !self.s.blocks.is_holding(id)).collect()
    }

    /// Apply ops returned by a call made when `free_before` were the free ids.
    fn apply(&mut self, ops: &[KvOp], free_before: &HashSet<i32>) {
        let free_after = self.free_ids();
        let free = |id: i32| free_before.contains(&id) && free_after.contains(&id);
        for op in ops {
            match *op {
                KvOp::Share { from, to, p0, p1 } => {
                    assert!(!free(from) && !free(to), "{op:?} names a free id");
                    for pos in p0..p1 {
                        let cell = *self.cells.get(&(from, pos)).unwrap_or_else(|| panic!("{op:?}: {from} has no cell at {pos}"));
                        assert!(self.cells.insert((to, pos), cell).is_none(), "{op:?}: {to} already has a cell at {pos}");
                    }
                }
                KvOp::Untag { seq, p0, p1 } => {
                    assert!(!free(seq), "{op:?} names a free id");
                    for pos in p0..p1 {
                        self.cells.remove(&(seq, pos));
                    }
                }
                KvOp::CopyStream { from, to, keep } => {
                    assert!(self.s.config.per_sequence, "{op:?} in the unified layout");
                    assert!(!free(from) && from != to, "{op:?} names a free id or one stream");
                    self.cells.retain(|&(id, _), _| id != to);
                    for pos in 0..keep {
                        assert!(self.cells.contains_key(&(from, pos)), "{op:?}: {from} has no cell at {pos}");
                        self.next_cell += 1;
                        self.cells.insert((to, pos), self.next_cell);
                    }
                }
            }
        }
    }

    /// Admit while the scheduler admits; the admissions in order.
    fn admit(&mut self) -> Vec<Admitted<()>> {
        let mut admitted = Vec::new();
        loop {
            let before = self.free_ids();
            let step = self.s.admit_next(|_, _| None::<()>);
            self.apply(&step.ops, &before);
            self.check();
            match step.admitted {
                Some(a) => admitted.push(a),
                None => return admitted,
            }
        }
    }

    /// One engine step: admit, plan, save nothing, apply, compute the work, register, then
    /// sample a fresh token for every sequence whose last prompt or output token was computed.
    /// A sampled sequence at a running index in `stops` finishes as if it sampled EOG.
    fn step_with(&mut self, stops: &[usize]) -> Plan {
        self.admit();
        let before = self.free_ids();
        let plan = self.s.plan(|c| !c.behind);
        self.apply(&plan.ops, &before);
        let budget = self.s.config.max_num_batched_tokens;
        assert!(plan.work.iter().map(|w| w.take).sum::<usize>() <= budget, "over max_num_batched_tokens: {:?}", plan.work);
        let mut sampled = HashSet::new();
        for w in &plan.work {
            let seq = self.s.running.iter().find(|e| e.key == w.key).unwrap_or_else(|| panic!("planned {w:?} is not running"));
            let id = seq.llama_id.unwrap_or_else(|| panic!("running {} without id", seq.key));
            assert!(w.start + w.take <= seq.tokens.len() && seq.tokens.len() < self.s.config.max_model_len);
            for pos in w.start..w.start + w.take {
                self.next_cell += 1;
                assert!(self.cells.insert((id, pos), self.next_cell).is_none(), "{id} computes position {pos} twice");
            }
            if w.start + w.take == seq.tokens.len() {
                sampled.insert(w.key);
            }
        }
        self.s.computed();
        self.check();
        let mut i = 0;
        while i < self.s.running.len() {
            let key = self.s.running[i].key;
            if !sampled.contains(&key) {
                i += 1;
                continue;
            }
            self.next_token += 1;
            let outcome = if stops.contains(&i) {
                Outcome::Stopped
            } else {
                match self.s.extend(i, self.next_token) {
                    Extended::Kept => {
                        i += 1;
                        continue;
                    }
                    Extended::Length => Outcome::Length,
                }
            };
            self.remove(i, outcome);
        }
        self.s.record_step(&plan, 0.01);
        plan
    }

    fn step(&mut self) -> Plan {
        self.step_with(&[])
    }

    fn remove(&mut self, index: usize, outcome: Outcome) {
        let before = self.free_ids();
        let removed = self.s.remove(index).unwrap_or_else(|| panic!("no running sequence {index}"));
        if let Some(leaving) = removed.leaving {
            assert_eq!(leaving.key, removed.entry.key);
            assert_eq!(leaving.keep % BS, 0, "only whole registered blocks are saved");
            for pos in 0..leaving.keep {
                assert!(self.cells.contains_key(&(leaving.llama_id, pos)), "the prefix to save lost its cell at {pos}");
            }
        }
        self.apply(&removed.ops, &before);
        self.done.push((removed.entry.key, outcome));
        self.check();
    }

    /// The client of `key` went away.
    fn cancel(&mut self, key: SeqKey) {
        match self.s.running.iter().position(|e| e.key == key) {
            Some(i) => self.remove(i, Outcome::Gone),
            None => {
                self.s.retain_waiting(|e| e.key != key);
                self.done.push((key, Outcome::Gone));
            }
        }
    }

    fn running_keys(&self) -> Vec<SeqKey> {
        self.s.running.iter().map(|e| e.key).collect()
    }

    fn waiting_keys(&self) -> Vec<SeqKey> {
        self.s.waiting.iter().map(|e| e.key).collect()
    }

    fn is_idle(&self) -> bool {
        self.s.running.is_empty() && self.s.waiting.is_empty()
    }

    /// Steps until nothing is left; how many.
    fn run_until_idle(&mut self, limit: usize) -> usize {
        for n in 0..limit {
            if self.is_idle() {
                return n;
            }
            self.step();
        }
        panic!("still busy after {limit} steps: running {:?}, waiting {:?}", self.running_keys(), self.waiting_keys());
    }

    /// The module header's invariants, against the simulated cells.
    fn check(&self) {
        let s = &self.s;
        let mut ids = HashSet::new();
        for e in &s.running {
            let id = e.llama_id.unwrap_or_else(|| panic!("running {} without id", e.key));
            assert!(ids.insert(id), "id {id} runs two sequences");
            assert!(e.n_past <= e.tokens.len());
            for pos in 0..e.n_past {
                assert!(self.cells.contains_key(&(id, pos)), "running {} (id {id}) has no cell at computed position {pos}", e.key);
            }
        }
        for e in &s.waiting {
            assert!(e.llama_id.is_none() && e.n_past == 0, "waiting {} holds KV", e.key);
        }
        let free = self.free_ids();
        for id in 0..s.config.n_llama_ids {
            if !ids.contains(&id) && s.blocks.is_holding(id) {
                assert!(s.parked.contains(&id), "id {id} holds cells but is neither running nor parked");
            }
        }
        for &(id, pos) in self.cells.keys() {
            assert!(!free.contains(&id), "free id {id} has a cell at {pos}");
        }
        let live: HashSet<u64> = self.cells.values().copied().collect();
        assert!(live.len() <= s.config.num_blocks * BS, "{} cells in a cache of {}", live.len(), s.config.num_blocks * BS);
        assert_eq!(s.blocks.active_blocks() + s.blocks.cached_blocks() + s.blocks.free_blocks(), s.config.num_blocks);
        assert!(s.blocks.active_blocks() + s.blocks.cached_blocks() <= s.config.num_blocks);
        if s.config.per_sequence {
            let stream = s.config.num_blocks / s.config.n_llama_ids as usize * BS;
            for &(id, pos) in self.cells.keys() {
                assert!(pos < stream && id < s.config.n_llama_ids, "cell ({id}, {pos}) outside its stream of {stream}");
            }
        }
    }
}

fn prompt(first: i32, len: usize) -> Vec<i32> {
    (first..first + len as i32).collect()
}

#[test]
fn requests_are_admitted_first_come_first_served() {
    let mut sim = Sim::new(config(32, 2, 2, 64));
    let (a, b, c) = (sim.push(prompt(0, 6), 2), sim.push(prompt(100, 6), 2), sim.push(prompt(200, 6), 2));
    let admitted: Vec<SeqKey> = sim.admit().iter().map(|a| a.key).collect();
    assert_eq!(admitted, vec![a, b], "max_num_seqs 2: the first two, in order");
    assert_eq!(sim.waiting_keys(), vec![c]);
    sim.step(); // prompts up to their last full block
    sim.step(); // their tails, first tokens kept
    sim.step(); // second tokens: max_tokens reached
    assert_eq!(sim.done, vec![(a, Outcome::Length), (b, Outcome::Length)]);
    assert_eq!(sim.admit().iter().map(|a| a.key).collect::<Vec<_>>(), vec![c]);
}

#[test]
fn admission_stops_when_blocks_run_out_and_resumes_when_they_come_back() {
    // 8 blocks, caching off so that a finished sequence's blocks are free at once.
    let mut sim = Sim::new(SchedulerConfig { prefix_caching: false, ..config(8, 4, 4, 64) });
    let a = sim.push(prompt(0, 16), 2); // 4 blocks
    let b = sim.push(prompt(100, 16), 2); // 4 blocks, + 1 of headroom for a: more than the 4 left
    let c = sim.push(prompt(200, 4), 2); // 1 block: would fit, but comes after b
    assert_eq!(sim.admit().iter().map(|a| a.key).collect::<Vec<_>>(), vec![a]);
    assert_eq!(sim.waiting_keys(), vec![b, c], "first come first served: c does not pass b");
    sim.step();
    assert_eq!(sim.waiting_keys(), vec![b, c]);
    sim.step(); // a's second token: done, its blocks free
    assert_eq!(sim.done, vec![(a, Outcome::Length)]);
    assert_eq!(sim.admit().iter().map(|a| a.key).collect::<Vec<_>>(), vec![b, c]);
    sim.run_until_idle(10);
    assert_eq!(sim.done.len(), 3);
}

#[test]
fn a_lone_request_is_admitted_even_without_headroom() {
    let mut sim = Sim::new(config(4, 2, 2, 64));
    let a = sim.push(prompt(0, 15), 1);
    assert_eq!(sim.admit().len(), 1, "nothing else could ever make room for {a}");
    sim.run_until_idle(10);
    assert_eq!(sim.done, vec![(a, Outcome::Length)]);
}

#[test]
fn a_cached_prefix_is_tagged_not_recomputed() {
    let mut sim = Sim::new(config(32, 2, 8, 64));
    let a = sim.push(prompt(0, 13), 1);
    sim.run_until_idle(5);
    let a_id = 0;
    assert!(sim.s.blocks.is_holding(a_id) && sim.s.parked.contains(&a_id), "the finished sequence's id keeps its cells");
    // The same 12 tokens (3 blocks), then another question.
    let mut tokens = prompt(0, 12);
    tokens.extend([500, 501, 502]);
    let b = sim.push(tokens, 1);
    let admitted = sim.admit();
    assert_eq!(admitted.len(), 1);
    assert_eq!((admitted[0].key, admitted[0].cached, admitted[0].total), (b, 12, 15));
    assert_ne!(admitted[0].llama_id, a_id, "a free id is taken before a parked one is evicted");
    assert_eq!(sim.s.running[0].n_past, 12);
    let plan = sim.step();
    assert_eq!(plan.work.iter().map(|w| (w.start, w.take)).collect::<Vec<_>>(), vec![(12, 3)], "only the new tokens are computed");
    assert_eq!(sim.done, vec![(a, Outcome::Length), (b, Outcome::Length)]);
    // The shared cells are the very cells a computed.
    let id = admitted[0].llama_id;
    assert!(sim.cells.contains_key(&(a_id, 0)) && !sim.cells.contains_key(&(id, 0)), "b released its tag, a's id still holds");
}

#[test]
fn decode_tokens_are_planned_before_prefill_within_the_token_budget() {
    let mut sim = Sim::new(SchedulerConfig { prefix_caching: false, ..config(32, 4, 4, 8) });
    let long = sim.push(prompt(0, 40), 4);
    let short = sim.push(prompt(100, 3), 4);
    let first = sim.step();
    // Shortest prompt first: the 3-token prompt, then 5 tokens of the long one.
    let pieces = |p: &Plan| p.work.iter().map(|w| (w.key, w.start, w.take, w.part)).collect::<Vec<_>>();
    assert_eq!(pieces(&first), vec![(short, 0, 3, Part::Chunk), (long, 0, 5, Part::Chunk)]);
    let second = sim.step();
    assert_eq!(pieces(&second), vec![(short, 3, 1, Part::Decode), (long, 5, 7, Part::Chunk)], "the decode token first, prefill gets the rest");
    assert_eq!(second.decoding(), 1);
    assert_eq!(second.prefilled(), 7);
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_across_steps_up_to_its_tail() {
    let mut sim = Sim::new(config(32, 1, 4, 8));
    let key = sim.push(prompt(0, 30), 1);
    let mut pieces = Vec::new();
    while !sim.is_idle() {
        pieces.extend(sim.step().work.iter().map(|w| (w.start, w.take, w.part)));
    }
    // Chunks of 8 stop at 28, the end of the last full block, where a cached copy would resume.
    let expected = vec![(0, 8, Part::Chunk), (8, 8, Part::Chunk), (16, 8, Part::Chunk), (24, 4, Part::Chunk), (28, 2, Part::Tail)];
    assert_eq!(pieces, expected);
    assert_eq!(sim.done, vec![(key, Outcome::Length)]);
}

#[test]
fn with_split_batches_a_cold_prompts_tail_follows_its_last_chunk_in_the_same_step() {
    let mut sim = Sim::new(SchedulerConfig { same_step_tails: true, ..config(32, 1, 4, 64) });
    sim.push(prompt(0, 30), 1);
    let plan = sim.step();
    assert_eq!(plan.work.iter().map(|w| (w.start, w.take, w.part)).collect::<Vec<_>>(), vec![(0, 28, Part::Chunk), (28, 2, Part::Tail)]);
}

/// Three sequences on 10 blocks of 4: each prompt of 8 tokens takes 2 blocks, and growth soon
/// needs more than there are.
fn crowded() -> (Sim, [SeqKey; 3]) {
    let mut sim = Sim::new(config(10, 3, 12, 64));
    let keys = [sim.push(prompt(0, 8), 12), sim.push(prompt(100, 8), 12), sim.push(prompt(200, 8), 12)];
    (sim, keys)
}

#[test]
fn preemption_takes_the_most_recently_admitted_and_frees_its_blocks() {
    let (mut sim, [a, b, c]) = crowded();
    let mut preempted = Vec::new();
    for _ in 0..12 {
        let plan = sim.step();
        if !plan.preempted.is_empty() {
            preempted = plan.preempted;
            break;
        }
    }
    assert_eq!(preempted.len(), 1, "one victim is enough");
    let leaving = preempted[0];
    assert_eq!(leaving.key, c, "the most recently admitted goes");
    assert_eq!(sim.running_keys(), vec![a, b]);
    assert_eq!(sim.waiting_keys(), vec![c], "back at the front of the queue");
    let entry = &sim.s.waiting[0];
    assert_eq!((entry.n_past, entry.llama_id), (0, None));
    // Preempted at position 12 (a took the last free block, b found none): 8 prompt tokens and 5
    // generated ones are kept for recomputation.
    assert_eq!(entry.tokens.len(), 13);
    assert_eq!(leaving.keep, 12, "every computed full block is registered and may be saved");
    // Its registered blocks stay in the prefix cache, but for the tail block, evicted first for
    // the growth that needed room.
    assert_eq!(sim.cells.keys().filter(|(id, _)| *id == leaving.llama_id).count(), 8);
    assert_eq!(sim.s.blocks.cached_blocks(), 2);
}

#[test]
fn a_preempted_sequence_is_readmitted_later_from_the_cache_and_finishes() {
    let (mut sim, [a, b, c]) = crowded();
    let mut readmitted = None;
    for _ in 0..60 {
        let was_waiting = sim.waiting_keys().contains(&c);
        sim.step();
        if was_waiting && sim.running_keys().contains(&c) {
            readmitted = sim.s.running.iter().find(|e| e.key == c).map(|e| (e.tokens.len(), e.generated));
        }
        if sim.is_idle() {
            break;
        }
    }
    let (len, generated) = readmitted.unwrap_or_else(|| panic!("{c} was never preempted and readmitted"));
    assert!(generated > 0 && len == 8 + generated as usize, "it resumed where it was: {generated} tokens generated");
    assert!(sim.is_idle());
    assert_eq!(sim.done, vec![(a, Outcome::Length), (b, Outcome::Length), (c, Outcome::Length)]);
}

#[test]
fn a_planned_sequence_is_never_preempted_and_one_without_room_waits_a_step() {
    // 4 blocks, no caching: a (4 tokens) and b (6 tokens) fill them by their third step.
    let mut sim = Sim::new(SchedulerConfig { prefix_caching: false, ..config(4, 2, 2, 64) });
    let (a, b) = (sim.push(prompt(0, 4), 4), sim.push(prompt(100, 6), 6));
    for _ in 0..3 {
        sim.step();
    }
    assert_eq!(sim.s.blocks.available_blocks(), 0);
    // b needs a third block for position 8; the only other sequence, a, is already planned.
    let stuck = sim.step();
    assert_eq!(stuck.work.iter().map(|w| (w.key, w.start)).collect::<Vec<_>>(), vec![(a, 6)]);
    assert!(stuck.preempted.is_empty(), "a planned sequence is not preempted");
    assert_eq!(sim.done, vec![(a, Outcome::Length)], "a reached its max_tokens and freed its blocks");
    assert_eq!(sim.step().work.iter().map(|w| (w.key, w.start)).collect::<Vec<_>>(), vec![(b, 8)], "b grows now");
    sim.run_until_idle(10);
    assert_eq!(sim.done, vec![(a, Outcome::Length), (b, Outcome::Length)]);
}

#[test]
fn a_departed_client_releases_its_blocks_and_its_id() {
    let mut sim = Sim::new(SchedulerConfig { prefix_caching: false, ..config(16, 2, 2, 64) });
    let a = sim.push(prompt(0, 10), 50);
    let b = sim.push(prompt(100, 10), 50);
    let waiting = sim.push(prompt(200, 10), 50);
    sim.step();
    sim.step();
    let a_id = sim.s.running[0].llama_id;
    assert_eq!(sim.s.blocks.active_blocks(), 6);
    sim.cancel(a);
    sim.cancel(waiting);
    assert_eq!(sim.s.blocks.active_blocks(), 3, "a's 3 blocks are free");
    assert!(a_id.is_some_and(|id| sim.free_ids().contains(&id)), "a's id is free");
    assert!(sim.waiting_keys().is_empty());
    sim.cancel(b);
    assert_eq!((sim.s.blocks.active_blocks(), sim.free_ids().len()), (0, 2));
    assert!(sim.cells.is_empty());
}

#[test]
fn a_parked_id_is_reused_only_after_its_cells_are_dropped() {
    // One id: the second request needs the first one's id, which still holds its cached cells.
    let mut sim = Sim::new(config(16, 1, 1, 64));
    sim.push(prompt(0, 9), 1);
    sim.run_until_idle(5);
    assert!(sim.s.blocks.is_holding(0) && sim.cells.keys().any(|&(id, _)| id == 0));
    sim.push(prompt(100, 9), 1);
    let before = sim.free_ids();
    let step = sim.s.admit_next(|_, _| None::<()>);
    let admitted = step.admitted.unwrap_or_else(|| panic!("not admitted"));
    assert_eq!(admitted.llama_id, 0);
    assert_eq!(step.ops, vec![KvOp::Untag { seq: 0, p0: 0, p1: 4 }, KvOp::Untag { seq: 0, p0: 4, p1: 8 }], "its cached cells are dropped first");
    sim.apply(&step.ops, &before);
    assert!(sim.cells.is_empty());
    sim.check();
}

#[test]
fn admission_stops_when_every_id_is_running_or_shared() {
    // Two ids, three sequences allowed: a finishes and parks its id; b shares a's prefix on the
    // other id; c finds no id (a's cells are in use by b) and waits.
    let mut sim = Sim::new(config(32, 3, 2, 64));
    sim.push(prompt(0, 9), 1);
    sim.run_until_idle(5);
    let mut shared = prompt(0, 8);
    shared.push(77);
    let b = sim.push(shared, 3);
    let c = sim.push(prompt(300, 5), 1);
    let admitted = sim.admit();
    assert_eq!(admitted.iter().map(|a| (a.key, a.cached)).collect::<Vec<_>>(), vec![(b, 8)]);
    assert_eq!(sim.waiting_keys(), vec![c]);
    assert!(sim.s.blocks.is_holding(0), "the parked id keeps the cells b shares");
    sim.run_until_idle(10);
    assert_eq!(sim.done.iter().map(|d| d.0).collect::<Vec<_>>(), vec![1, b, c]);
}

#[test]
fn max_model_len_ends_a_sequence() {
    let mut sim = Sim::new(SchedulerConfig { max_model_len: 16, ..config(32, 1, 1, 64) });
    let key = sim.push(prompt(0, 10), 1000);
    let mut steps = 0;
    while !sim.is_idle() {
        sim.step();
        steps += 1;
        assert!(steps < 20);
    }
    // Two steps for the prompt (up to its last full block, then its tail); tokens are kept while
    // one more stays below 16 (the 5 of positions 10..15), and the 6th sample ends it.
    assert_eq!(steps, 7);
    assert_eq!(sim.done, vec![(key, Outcome::Length)]);
}

#[test]
fn max_tokens_ends_a_sequence_and_a_stop_ends_it_early() {
    let mut sim = Sim::new(config(32, 2, 2, 64));
    let (a, b) = (sim.push(prompt(0, 5), 3), sim.push(prompt(100, 5), 3));
    sim.step(); // up to the prompts' last full block
    sim.step_with(&[1]); // their tails, and first samples: b's is its stop token
    assert_eq!(sim.done, vec![(b, Outcome::Stopped)]);
    sim.step();
    assert_eq!(sim.done.len(), 1, "a has 2 of its 3 tokens");
    sim.step();
    assert_eq!(sim.done, vec![(b, Outcome::Stopped), (a, Outcome::Length)]);
}

#[test]
fn a_sequence_whose_client_is_behind_computes_nothing() {
    let mut sim = Sim::new(config(32, 2, 2, 64));
    let (a, b) = (sim.push(prompt(0, 5), 10), sim.push(prompt(100, 5), 10));
    sim.step();
    sim.s.running[0].state.behind = true;
    let plan = sim.step();
    assert_eq!(plan.work.iter().map(|w| w.key).collect::<Vec<_>>(), vec![b]);
    sim.s.running[0].state.behind = false;
    assert_eq!(sim.step().work.iter().map(|w| w.key).collect::<Vec<_>>(), vec![a, b]);
}

#[test]
fn a_paced_step_measures_decoding_alone_first() {
    let mut sim = Sim::new(SchedulerConfig { max_decode_slowdown: 2.0, ..config(64, 2, 2, 64) });
    let a = sim.push(prompt(0, 5), 20);
    sim.step(); // a's prompt: no decoding sequence, not paced
    let b = sim.push(prompt(100, 40), 20);
    let probe = sim.step();
    assert_eq!(probe.work.iter().map(|w| (w.key, w.take)).collect::<Vec<_>>(), vec![(a, 1)], "no decode step measured yet: a probe");
    // The probe's time is known now; the token cost is not: a first guess of one block.
    let paced = sim.step();
    assert_eq!(paced.work.iter().map(|w| (w.key, w.take)).collect::<Vec<_>>(), vec![(a, 1), (b, BS)]);
}

#[test]
fn a_prefix_restored_from_below_is_registered_for_the_next_request() {
    let mut sim = Sim::new(config(32, 2, 4, 64));
    sim.push(prompt(0, 13), 1);
    let before = sim.free_ids();
    let step = sim.s.admit_next(|tokens, hot| (tokens.len() == 13 && hot == 0).then_some("saved 12 tokens"));
    let admitted = step.admitted.unwrap_or_else(|| panic!("not admitted"));
    assert_eq!((admitted.cached, admitted.restore), (0, Some("saved 12 tokens")));
    sim.apply(&step.ops, &before);
    // The caller restores 12 tokens into the id (simulated here) and says so.
    for pos in 0..12 {
        sim.next_cell += 1;
        sim.cells.insert((admitted.llama_id, pos), sim.next_cell);
    }
    sim.s.restored(admitted.key, 12);
    sim.check();
    sim.push(prompt(0, 13), 1);
    let twin = sim.admit();
    assert_eq!(twin.iter().map(|a| a.cached).collect::<Vec<_>>(), vec![12], "the restored blocks are in the hot cache");
}

#[test]
fn a_quarter_of_the_prefix_cache_is_for_blocks_never_reused() {
    assert_eq!(cache_bounds(8192, 16), (512, 128));
    assert_eq!(cache_bounds(100, 16), (7, 2));
    assert_eq!(cache_bounds(0, 16), (usize::MAX, usize::MAX));
}

/// One thing that happens to the engine.
#[derive(Debug, Clone)]
enum Action {
    /// A request: `shared` leading blocks of prompt family `family` (so prompts share cached
    /// prefixes), then `own` tokens of its own.
    Arrive { family: i32, shared: usize, own: usize, max_tokens: u32 },
    /// A step; the sampled sequences at these running indexes stop (EOG).
    Step { stops: Vec<usize> },
    /// The client of the n-th live request goes away.
    Leave(usize),
    /// The client of the n-th running sequence falls behind, or catches up.
    Behind(usize, bool),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0..3i32, 0..5usize, 1..10usize, 1..14u32).prop_map(|(family, shared, own, max_tokens)| Action::Arrive { family, shared, own, max_tokens }),
        6 => prop::collection::vec(0..4usize, 0..2).prop_map(|stops| Action::Step { stops }),
        1 => (0..8usize).prop_map(Action::Leave),
        1 => (0..4usize, any::<bool>()).prop_map(|(i, b)| Action::Behind(i, b)),
    ]
}

fn scheduler_config() -> impl Strategy<Value = SchedulerConfig> {
    (6..24usize, 1..5usize, 0..4usize, 1..40usize, any::<bool>(), any::<bool>(), prop_oneof![Just(0u32), 4..40u32], any::<bool>()).prop_map(
        |(num_blocks, max_num_seqs, extra_ids, batch, caching, split, cache_tokens, per_sequence)| {
            let base = SchedulerConfig {
                prefix_caching: caching,
                same_step_tails: split,
                prefix_cache_max_tokens: cache_tokens,
                ..config(num_blocks, max_num_seqs, (max_num_seqs * (1 + extra_ids)) as i32, batch)
            };
            if per_sequence {
                // As the engine sizes it: a stream per running sequence, each of max_model_len.
                let stream_blocks = (num_blocks / 2).max(2);
                SchedulerConfig { per_sequence, n_llama_ids: max_num_seqs as i32, num_blocks: max_num_seqs * stream_blocks, max_model_len: stream_blocks * BS, ..base }
            } else {
                base
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Random arrivals, steps, finishes, departures and slow clients keep every invariant
    /// (checked inside the simulation after each call: ids in exactly one state, no op on a free
    /// id, cells within the cache, computed tokens in the cache, the token budget kept), and once
    /// arrivals stop and clients read, every request finishes.
    #[test]
    fn random_traffic_keeps_the_invariants_and_everything_finishes(config in scheduler_config(), actions in prop::collection::vec(action(), 1..80)) {
        let mut sim = Sim::new(config);
        let mut live: Vec<SeqKey> = Vec::new();
        let max_prompt = config.max_model_len - 1;
        for action in actions {
            match action {
                Action::Arrive { family, shared, own, max_tokens } => {
                    let mut tokens = prompt(family * 1000, shared * BS);
                    tokens.extend(prompt(10_000 + 100 * live.len() as i32, own));
                    tokens.truncate(max_prompt);
                    live.push(sim.push(tokens, max_tokens));
                }
                Action::Step { stops } => {
                    sim.step_with(&stops);
                }
                Action::Leave(n) => {
                    live.retain(|k| !sim.done.iter().any(|d| d.0 == *k));
                    if let Some(&key) = live.get(n) {
                        sim.cancel(key);
                    }
                }
                Action::Behind(n, behind) => {
                    if let Some(e) = sim.s.running.get_mut(n) {
                        e.state.behind = behind;
                    }
                }
            }
        }
        for e in sim.s.running.iter_mut().chain(sim.s.waiting.iter_mut()) {
            e.state.behind = false;
        }
        sim.run_until_idle(5_000);
        let pushed = sim.s.next_key;
        let mut left: Vec<SeqKey> = sim.done.iter().map(|d| d.0).collect();
        left.sort_unstable();
        prop_assert_eq!(left, (1..=pushed).collect::<Vec<_>>(), "every request left exactly once");
        prop_assert_eq!(sim.s.blocks.active_blocks(), 0);
    }
}

#[path = "policy_stream_tests.rs"]
mod streams;

#[test]
fn a_burst_sharing_a_new_prefix_computes_it_once() {
    let unified = config(64, 3, 3, 8);
    let per_sequence = SchedulerConfig { per_sequence: true, max_model_len: 8 * BS, ..config(24, 3, 3, 8) };
    for cfg in [unified, per_sequence] {
        let layout = if cfg.per_sequence { "per sequence" } else { "unified" };
        let mut sim = Sim::new(cfg);
        // Three requests at once: the same 24-token prefix (6 blocks), 3 tokens of their own.
        let keys: Vec<SeqKey> = (0..3)
            .map(|i| {
                let mut tokens = prompt(0, 24);
                tokens.extend(prompt(500 + 10 * i, 3));
                sim.push(tokens, 1)
            })
            .collect();
        let mut admitted = Vec::new();
        let mut prompt_tokens_computed = 0;
        for _ in 0..20 {
            admitted.extend(sim.admit());
            let plan = sim.step();
            prompt_tokens_computed += plan.work.iter().map(|w| w.take).sum::<usize>();
            if sim.is_idle() {
                break;
            }
        }
        assert!(sim.is_idle(), "{layout}: all three finished");
        let cached: Vec<(SeqKey, usize)> = admitted.iter().map(|a| (a.key, a.cached)).collect();
        assert_eq!(cached, vec![(keys[0], 0), (keys[1], 24), (keys[2], 24)], "{layout}: the later two waited for the prefix and shared it");
        assert_eq!(prompt_tokens_computed, 27 + 3 + 3, "{layout}: the prefix was computed once");
    }
}

#[test]
fn a_request_does_not_wait_for_a_sharer_that_is_decoding_or_shares_less_than_a_block() {
    let mut sim = Sim::new(config(64, 3, 3, 64));
    let a = sim.push(prompt(0, 13), 4);
    sim.step(); // a's prompt computed, a decodes from here
    let mut tokens = prompt(0, 12);
    tokens.extend([700, 701]);
    let b = sim.push(tokens, 1);
    let c = sim.push(prompt(0, 3), 1); // shares 3 tokens: less than a block
    let admitted: Vec<(SeqKey, usize)> = sim.admit().iter().map(|x| (x.key, x.cached)).collect();
    assert_eq!(admitted, vec![(b, 12), (c, 0)]);
    sim.run_until_idle(10);
    assert!(sim.done.iter().any(|&(k, _)| k == a));
}
