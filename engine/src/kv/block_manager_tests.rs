//! Tests of the block manager: unit cases, and a property test that applies random admissions,
//! growth, registration, releases and holder evictions while simulating llama.cpp's cell tags, then
//! checks that nothing leaks, nothing is freed twice, and every counter adds up.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

const BS: usize = 4;

impl BlockManager {
    /// Every invariant in the module header, against a simulated llama.cpp tag table.
    fn check_invariants(&self, tags: &HashMap<(i32, usize), BlockId>) {
        let free: HashSet<BlockId> = self.free.iter().copied().collect();
        assert_eq!(free.len(), self.free.len(), "a block is free twice");
        let evictable: HashSet<BlockId> = self.evictable.blocks().collect();
        let mut refs = vec![0u32; self.blocks.len()];
        for t in self.seqs.values() {
            for &b in &t.blocks {
                refs[b as usize] += 1;
            }
        }
        let mut held: HashMap<i32, usize> = HashMap::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let b = i as BlockId;
            assert_eq!(block.ref_count, refs[i], "ref count of block {b}");
            let states = [free.contains(&b), evictable.contains(&b), block.ref_count > 0];
            assert_eq!(states.iter().filter(|&&s| s).count(), 1, "block {b} in states {states:?}");
            if free.contains(&b) {
                assert!(block.holder.is_none() && block.hash.is_none());
                assert!(!tags.values().any(|&t| t == b), "free block {b} still has cells");
            } else {
                let holder = block.holder.unwrap_or_else(|| panic!("allocated block {b} without holder"));
                *held.entry(holder).or_default() += 1;
                assert_eq!(tags.get(&(holder, block.index)), Some(&b), "holder tag of block {b}");
            }
            if evictable.contains(&b) {
                assert!(block.hash.is_some(), "evictable block {b} is not cached");
            }
        }
        assert_eq!(held, self.held, "held counts");
        for (h, &b) in &self.cached {
            assert_eq!(self.blocks[b as usize].hash, Some(*h));
        }
        // Every running sequence has a tag on each of its blocks, and no tag is stray.
        let mut expected: HashMap<(i32, usize), BlockId> = HashMap::new();
        for t in self.seqs.values() {
            for &b in &t.blocks {
                expected.insert((t.llama_id, self.blocks[b as usize].index), b);
            }
        }
        for (i, block) in self.blocks.iter().enumerate() {
            if let Some(h) = block.holder {
                expected.insert((h, block.index), i as BlockId);
            }
        }
        assert_eq!(&expected, tags, "simulated llama.cpp tags");
    }
}

impl BlockManager {
    /// llama.cpp creates a sequence's cells when its tokens are computed: tag every block that a
    /// sequence holds itself, as if its tokens had been decoded.
    fn materialize(&self, tags: &mut HashMap<(i32, usize), BlockId>) {
        for t in self.seqs.values() {
            for &b in &t.blocks {
                let block = &self.blocks[b as usize];
                if block.holder == Some(t.llama_id) {
                    tags.entry((t.llama_id, block.index)).or_insert(b);
                }
            }
        }
    }
}

/// Apply ops to the simulated tag table: (llama id, block index) -> block.
fn apply(tags: &mut HashMap<(i32, usize), BlockId>, ops: &[KvOp]) {
    for op in ops {
        match *op {
            KvOp::Share { from, to, p0, p1 } => {
                assert_eq!(p1 - p0, BS);
                let b = *tags.get(&(from, p0 / BS)).unwrap_or_else(|| panic!("share from untagged {from}@{p0}"));
                assert!(tags.insert((to, p0 / BS), b).is_none(), "{to}@{p0} tagged twice");
            }
            KvOp::Untag { seq, p0, .. } => {
                assert!(tags.remove(&(seq, p0 / BS)).is_some(), "untag of missing {seq}@{p0}");
            }
            KvOp::CopyStream { .. } => panic!("{op:?}: a stream copy in the unified layout"),
        }
    }
}

/// Admit `tokens` as sequence `key` on llama id `id` with no cached prefix, compute and register
/// them (the engine's path for a cold prompt).
fn admit_cold(m: &mut BlockManager, tags: &mut HashMap<(i32, usize), BlockId>, key: SeqKey, id: i32, tokens: &[i32]) {
    apply(tags, &m.allocate(key, id, tokens.len(), &PrefixMatch::default()).unwrap_or_else(|_| panic!("no space for {key}")));
    m.materialize(tags);
    m.register(key, tokens, tokens.len());
}

#[test]
fn allocate_and_release_without_cache_frees_everything() {
    let mut m = BlockManager::new(8, BS, 0, false);
    let mut tags = HashMap::new();
    apply(&mut tags, &m.allocate(1, 0, 10, &PrefixMatch::default()).unwrap_or_default());
    m.materialize(&mut tags);
    assert_eq!(m.active_blocks(), 3);
    m.check_invariants(&tags);
    apply(&mut tags, &m.release(1));
    assert_eq!((m.active_blocks(), m.available_blocks()), (0, 8));
    assert!(tags.is_empty());
}

#[test]
fn cached_prefix_is_shared_not_recomputed() {
    let mut m = BlockManager::new(8, BS, 7, true);
    let mut tags = HashMap::new();
    let prompt: Vec<i32> = (0..10).collect();
    apply(&mut tags, &m.allocate(1, 0, prompt.len(), &m.match_prefix(&prompt)).unwrap_or_default());
    m.materialize(&mut tags);
    m.register(1, &prompt, prompt.len());
    apply(&mut tags, &m.release(1));
    assert!(m.is_holding(0), "the finished sequence's id keeps the cached cells");
    let mut second = prompt.clone();
    second.extend([99, 98]);
    let hit = m.match_prefix(&second);
    assert_eq!(hit.tokens, 8);
    let ops = m.allocate(2, 1, second.len(), &hit).unwrap_or_default();
    assert!(ops.contains(&KvOp::Share { from: 0, to: 1, p0: 0, p1: 4 }));
    apply(&mut tags, &ops);
    m.materialize(&mut tags);
    m.check_invariants(&tags);
}

#[test]
fn prefix_match_leaves_a_token_to_compute() {
    let mut m = BlockManager::new(8, BS, 7, true);
    let prompt: Vec<i32> = (0..8).collect();
    let _ = m.allocate(1, 0, 8, &PrefixMatch::default());
    m.register(1, &prompt, 8);
    assert_eq!(m.match_prefix(&prompt).tokens, 4);
}

#[test]
fn eviction_takes_the_oldest_tail_first() {
    let mut m = BlockManager::new(3, BS, 1, true);
    let mut tags = HashMap::new();
    let prompt: Vec<i32> = (0..12).collect();
    apply(&mut tags, &m.allocate(1, 0, 12, &PrefixMatch::default()).unwrap_or_default());
    m.materialize(&mut tags);
    m.register(1, &prompt, 12);
    apply(&mut tags, &m.release(1));
    // Needing one block evicts the chain's tail; the head stays reachable.
    apply(&mut tags, &m.allocate(2, 1, 4, &PrefixMatch::default()).unwrap_or_default());
    m.materialize(&mut tags);
    assert_eq!(m.match_prefix(&prompt).tokens, 8);
    m.check_invariants(&tags);
}

#[test]
fn a_bounded_cache_evicts_the_oldest_on_release() {
    let mut m = BlockManager::new(8, BS, 1, true).with_cache_limit(2, 2);
    let mut tags = HashMap::new();
    let (a, b): (Vec<i32>, Vec<i32>) = ((0..8).collect(), (50..58).collect());
    for (key, id, tokens) in [(1, 0, &a), (2, 1, &b)] {
        admit_cold(&mut m, &mut tags, key, id, tokens);
        if key == 1 {
            apply(&mut tags, &m.release(1));
            assert_eq!(m.evictable.len(), 2, "both blocks of the first sequence stay cached");
        }
    }
    apply(&mut tags, &m.release(2));
    m.check_invariants(&tags);
    assert_eq!(m.evictable.len(), 2);
    // The first sequence's blocks were the oldest: gone, with their cells; the second's stay.
    assert_eq!(m.match_prefix(&[a.clone(), vec![99]].concat()).tokens, 0);
    assert_eq!(m.match_prefix(&[b.clone(), vec![99]].concat()).tokens, 8);
    assert!(!m.is_holding(0) && m.is_holding(1));
}

#[test]
fn one_off_prompts_cycle_through_probation_and_leave_a_reused_prefix_cached() {
    // Room for 2 cached blocks, 1 of them never reused.
    let mut m = BlockManager::new(16, BS, 1, true).with_cache_limit(2, 1);
    let mut tags = HashMap::new();
    let system: Vec<i32> = (0..4).collect();
    let mut next = (0, 0);
    let mut run = |m: &mut BlockManager, tags: &mut HashMap<(i32, usize), BlockId>, prompt: Vec<i32>| {
        let hit = m.match_prefix(&prompt);
        apply(tags, &m.allocate(next.0, next.1, prompt.len(), &hit).unwrap_or_else(|_| panic!("space")));
        m.materialize(tags);
        m.register(next.0, &prompt, prompt.len());
        apply(tags, &m.release(next.0));
        next = (next.0 + 1, next.1 + 1);
        hit.tokens
    };
    // The shared prefix is computed, then served once: it is now protected.
    assert_eq!(run(&mut m, &mut tags, [system.clone(), vec![50]].concat()), 0);
    assert_eq!(run(&mut m, &mut tags, [system.clone(), vec![51]].concat()), 4);
    // A stream of one-off prompts (two blocks each) passes through probation.
    for k in 0..5 {
        let one_off: Vec<i32> = (0..9).map(|t| 1000 * (k + 1) + t).collect();
        assert_eq!(run(&mut m, &mut tags, one_off), 0);
        assert_eq!(m.evictable.segment_lens(), (1, 1), "one probation block, the protected prefix");
        m.check_invariants(&tags);
    }
    assert_eq!(m.match_prefix(&[system.clone(), vec![52]].concat()).tokens, 4, "the reused prefix survived");
}

#[test]
fn running_sequences_push_one_off_blocks_out_but_not_reused_ones() {
    let mut m = BlockManager::new(16, BS, 1, true).with_cache_limit(8, 4);
    let mut tags = HashMap::new();
    let one_off: Vec<i32> = (0..12).collect();
    admit_cold(&mut m, &mut tags, 1, 0, &one_off);
    apply(&mut tags, &m.release(1));
    assert_eq!(m.evictable.segment_lens(), (3, 0), "idle: a one-off prompt stays in probation");
    // A running sequence of 2 blocks leaves probation room for 2.
    admit_cold(&mut m, &mut tags, 2, 1, &[70; 8]);
    assert_eq!(m.evictable.segment_lens(), (2, 0));
    assert_eq!(m.match_prefix(&[one_off.clone(), vec![7]].concat()).tokens, 8, "the head of the chain stays");
    m.check_invariants(&tags);
}

#[test]
fn probation_keeps_only_the_last_finished_sequence() {
    let mut m = BlockManager::new(16, BS, 1, true).with_cache_limit(8, 8);
    let mut tags = HashMap::new();
    let (a, b): (Vec<i32>, Vec<i32>) = ((0..9).collect(), (50..59).collect());
    for (key, id, tokens) in [(1, 0, &a), (2, 1, &b)] {
        admit_cold(&mut m, &mut tags, key, id, tokens);
        apply(&mut tags, &m.release(key));
    }
    assert_eq!(m.evictable.segment_lens(), (2, 0));
    assert_eq!(m.match_prefix(&a).tokens, 0, "the earlier one-off prompt is gone");
    assert_eq!(m.match_prefix(&b).tokens, 8, "the last one stays for a next turn");
    m.check_invariants(&tags);
}

#[test]
fn no_space_changes_nothing() {
    let mut m = BlockManager::new(2, BS, 1, true);
    assert_eq!(m.allocate(1, 0, 9, &PrefixMatch::default()), Err(NoSpace));
    assert_eq!(m.available_blocks(), 2);
    let _ = m.allocate(1, 0, 8, &PrefixMatch::default());
    assert_eq!(m.grow(1, 9), Err(NoSpace));
    let mut tags = HashMap::new();
    m.materialize(&mut tags);
    m.check_invariants(&tags);
}

#[test]
fn holder_in_use_cannot_be_evicted() {
    let mut m = BlockManager::new(4, BS, 1, true);
    let prompt: Vec<i32> = (0..9).collect();
    let _ = m.allocate(1, 0, 9, &PrefixMatch::default());
    m.register(1, &prompt, 9);
    let _ = m.release(1);
    let hit = m.match_prefix(&prompt);
    let _ = m.allocate(2, 1, 9, &hit);
    assert!(m.evict_holder(0).is_none(), "sequence 2 still uses id 0's cells");
    let _ = m.release(2);
    assert!(m.evict_holder(0).is_some());
    assert!(!m.is_holding(0));
}

#[derive(Debug, Clone)]
enum Action {
    Admit { prompt_family: u8, len: usize },
    Grow { which: usize, by: usize },
    Release { which: usize },
    EvictHolder { id: i32 },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (0u8..3, 1usize..20).prop_map(|(prompt_family, len)| Action::Admit { prompt_family, len }),
        (0usize..8, 1usize..6).prop_map(|(which, by)| Action::Grow { which, by }),
        (0usize..8).prop_map(|which| Action::Release { which }),
        (0i32..12).prop_map(|id| Action::EvictHolder { id }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn random_workloads_keep_every_invariant(actions in prop::collection::vec(action(), 1..60), blocks in 2usize..16, limit in prop::option::of(0usize..6), probation in 0usize..6) {
        let mut m = BlockManager::new(blocks, BS, 3, true);
        if let Some(limit) = limit {
            m = m.with_cache_limit(limit, probation);
        }
        let mut tags = HashMap::new();
        // running: (key, llama id, tokens)
        let mut running: Vec<(SeqKey, i32, Vec<i32>)> = Vec::new();
        let mut next_key = 0;
        for a in actions {
            match a {
                Action::Admit { prompt_family, len } => {
                    let free_id = (0..12).find(|id| !m.is_holding(*id) && running.iter().all(|r| r.1 != *id));
                    let Some(id) = free_id else { continue };
                    let tokens: Vec<i32> = (0..len as i32).map(|t| t + 100 * i32::from(prompt_family)).collect();
                    let hit = m.match_prefix(&tokens);
                    prop_assert!(hit.tokens < tokens.len());
                    if let Ok(ops) = m.allocate(next_key, id, len, &hit) {
                        apply(&mut tags, &ops);
                        m.materialize(&mut tags);
                        m.register(next_key, &tokens, len);
                        running.push((next_key, id, tokens));
                    }
                    next_key += 1;
                }
                Action::Grow { which, by } => {
                    if let Some(r) = running.get_mut(which) {
                        let target = r.2.len() + by;
                        if let Ok(ops) = m.grow(r.0, target) {
                            apply(&mut tags, &ops);
                            m.materialize(&mut tags);
                            r.2.extend((0..by as i32).map(|t| 1000 + t));
                            m.register(r.0, &r.2, target);
                        }
                    }
                }
                Action::Release { which } => {
                    if which < running.len() {
                        let r = running.remove(which);
                        apply(&mut tags, &m.release(r.0));
                        if limit.is_some() {
                            // After a release, probation fits in the room running sequences leave.
                            prop_assert!(m.evictable.segment_lens().0 <= probation.saturating_sub(m.active_blocks()));
                        }
                    }
                }
                Action::EvictHolder { id } => {
                    if running.iter().all(|r| r.1 != id) {
                        if let Some(ops) = m.evict_holder(id) {
                            apply(&mut tags, &ops);
                        }
                    }
                }
            }
            m.check_invariants(&tags);
            prop_assert!(m.evictable.len() <= limit.unwrap_or(usize::MAX));
            if limit.is_some() {
                prop_assert!(m.evictable.segment_lens().0 <= probation, "probation over its bound");
            }
        }
        for r in running.drain(..) {
            apply(&mut tags, &m.release(r.0));
        }
        m.check_invariants(&tags);
        prop_assert_eq!(m.active_blocks(), 0);
    }
}
