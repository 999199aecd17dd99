//! The pool of cached blocks that no sequence uses: a segmented LRU (SLRU, as in 2Q caches).
//!
//! A block computed once and never served from the prefix cache waits in *probation*; a block the
//! cache has served at least once (a shared system prompt, an earlier turn of a chat) is
//! *protected*. Eviction takes the oldest probation block first, and probation holds only the last
//! finished sequence's blocks (its caller evicts the rest first), within its own, smaller bound,
//! which shrinks by the blocks running sequences use: a lone user's last chat turn stays, one-off
//! prompts in a stream of them do not linger, and they cannot push reused prefixes out. That
//! matters more here than in vLLM: in llama.cpp's unified KV cache every cell in use adds to each
//! step's attention work, and new prompts placed between lingering cells make prefill attention
//! denser, so never-reused cells slow every request down.
//!
//! Entries are keyed by a stamp from one clock, so "oldest" is least recently released.

use std::collections::BTreeMap;

use super::block_manager::BlockId;

/// Unreferenced cached blocks, in two LRU segments.
#[derive(Debug)]
pub(crate) struct Evictable {
    probation: BTreeMap<u64, BlockId>,
    protected: BTreeMap<u64, BlockId>,
    clock: u64,
    /// Most blocks in both segments together.
    max_total: usize,
    /// Most blocks in probation.
    max_probation: usize,
}

/// Where an evictable block sits, kept by its block so it can be taken out again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    stamp: u64,
    protected: bool,
}

impl Evictable {
    /// An unbounded pool.
    pub(crate) fn new() -> Self {
        Self { probation: BTreeMap::new(), protected: BTreeMap::new(), clock: 0, max_total: usize::MAX, max_probation: usize::MAX }
    }

    /// Bound the pool to `max_total` blocks, of which at most `max_probation` never reused.
    pub(crate) fn bound(&mut self, max_total: usize, max_probation: usize) {
        self.max_total = max_total;
        self.max_probation = max_probation.min(max_total);
    }

    pub(crate) fn len(&self) -> usize {
        self.probation.len() + self.protected.len()
    }

    /// Add `block`, released just now; `reused` puts it in the protected segment.
    pub(crate) fn push(&mut self, block: BlockId, reused: bool) -> Slot {
        self.clock += 1;
        let segment = if reused { &mut self.protected } else { &mut self.probation };
        segment.insert(self.clock, block);
        Slot { stamp: self.clock, protected: reused }
    }

    /// Take out the block at `slot` (it is being reused or evicted).
    pub(crate) fn remove(&mut self, slot: Slot) {
        let segment = if slot.protected { &mut self.protected } else { &mut self.probation };
        segment.remove(&slot.stamp);
    }

    /// The oldest block in probation.
    pub(crate) fn oldest_in_probation(&self) -> Option<BlockId> {
        self.probation.values().next().copied()
    }

    /// The block to evict first: the oldest in probation, else the oldest protected one.
    pub(crate) fn oldest(&self) -> Option<BlockId> {
        self.probation.values().next().or_else(|| self.protected.values().next()).copied()
    }

    /// The block to evict to get back within the bounds, if the pool is over one, while running
    /// sequences use `in_use` blocks.
    pub(crate) fn over_bound(&self, in_use: usize) -> Option<BlockId> {
        if self.probation.len() > self.max_probation.saturating_sub(in_use) {
            return self.probation.values().next().copied();
        }
        (self.len() > self.max_total).then(|| self.oldest()).flatten()
    }

    /// Every block in the pool (for invariant checks).
    #[cfg(test)]
    pub(crate) fn blocks(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.probation.values().chain(self.protected.values()).copied()
    }

    #[cfg(test)]
    pub(crate) fn segment_lens(&self) -> (usize, usize) {
        (self.probation.len(), self.protected.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probation_is_evicted_first_and_kept_to_its_own_bound() {
        let mut pool = Evictable::new();
        pool.bound(4, 2);
        let shared = pool.push(1, true);
        for b in 2..=4 {
            pool.push(b, false);
        }
        // Three never-reused blocks against a probation bound of two: the oldest of them goes.
        assert_eq!(pool.over_bound(0), Some(2));
        pool.remove(Slot { stamp: 2, protected: false });
        assert_eq!(pool.over_bound(0), None);
        // Running sequences using a block leave room for one.
        assert_eq!(pool.over_bound(1), Some(3));
        // The protected block is older than every probation block, and still evicted last.
        assert_eq!(pool.oldest(), Some(3));
        pool.remove(Slot { stamp: 3, protected: false });
        pool.remove(Slot { stamp: 4, protected: false });
        assert_eq!(pool.oldest(), Some(1));
        pool.remove(shared);
        assert_eq!((pool.len(), pool.oldest()), (0, None));
    }

    #[test]
    fn the_total_bound_evicts_protected_blocks_oldest_first() {
        let mut pool = Evictable::new();
        pool.bound(2, 1);
        pool.push(7, true);
        pool.push(8, true);
        assert_eq!(pool.over_bound(0), None);
        pool.push(9, true);
        assert_eq!(pool.over_bound(0), Some(7));
        // Load does not shrink the protected segment.
        assert_eq!(pool.segment_lens(), (0, 3));
        pool.remove(Slot { stamp: 1, protected: true });
        assert_eq!(pool.over_bound(100), None);
    }
}
