//! Paged KV block manager with automatic prefix caching (after vLLM v1's `KVCacheManager` and
//! mistral.rs's `block_pool.rs`).
//!
//! Blocks are `block_size` token positions. Each allocated block has one *holder*, the llama.cpp
//! sequence id whose tag keeps its cells alive; other running sequences that share it (a cached
//! prefix) tag the same cells too, and hold a reference. Every block is in exactly one state:
//! - free: no holder, no references, no cells;
//! - active: referenced by at least one sequence;
//! - evictable: unreferenced but full and registered in the prefix cache; its cells stay tagged by
//!   its holder until the block is needed again. The pool is a segmented LRU ([`Evictable`]):
//!   blocks never served from the cache are evicted first and kept to a smaller bound.
//!
//! Allocation is O(1) from the free list, falling back to evicting the oldest evictable block.
//! When a sequence is released its blocks are queued tail first, so a chain's tail is evicted
//! before its head and a cached prefix stays reachable for as long as possible.
//! The evictable pool may be bounded (`with_cache_limit`): beyond a bound blocks are evicted as soon
//! as they are released. With llama.cpp's unified KV cache every cell in use adds
//! to each decode step's attention and mask work, so unbounded caching slows every step down.
//! Invariants (checked by `check_invariants` in the tests): reference counts equal the number of
//! sequence tables containing a block; `held[id]` equals the number of blocks held by `id`; the
//! cache map only points at registered blocks with that hash.

use std::collections::HashMap;

use super::evictable::{Evictable, Slot};
use super::hash::block_hash;

/// Index of a block.
pub(crate) type BlockId = u32;
/// The engine's key for a request's sequence.
pub(crate) type SeqKey = u64;

/// A llama.cpp KV operation the engine must apply, in order, to match the bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvOp {
    /// Tag the cells of `from` at positions `p0..p1` with `to` too (reuse a cached prefix).
    Share { from: i32, to: i32, p0: usize, p1: usize },
    /// Remove `seq`'s tag from its cells at positions `p0..p1`.
    Untag { seq: i32, p0: usize, p1: usize },
    /// Per-sequence layout only: replace `to`'s stream with a copy of `from`'s, then drop the
    /// copy's cells from position `keep` on (llama.cpp copies streams whole; see `streams.rs`).
    CopyStream { from: i32, to: i32, keep: usize },
}

/// Not enough free or evictable blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoSpace;

/// The longest cached prefix of a prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PrefixMatch {
    blocks: Vec<BlockId>,
    /// Prompt tokens covered.
    pub tokens: usize,
    /// Per-sequence layout: the stream that holds the prefix (`None` in the unified layout).
    pub source: Option<i32>,
}

impl PrefixMatch {
    /// A prefix of `tokens` held by stream `source` (per-sequence layout).
    pub(crate) fn in_stream(source: i32, tokens: usize) -> Self {
        Self { blocks: Vec::new(), tokens, source: Some(source) }
    }
}

#[derive(Debug, Clone, Default)]
struct Block {
    /// Sequences whose table contains this block.
    ref_count: u32,
    /// The llama.cpp sequence whose tag keeps the cells; `None` when free.
    holder: Option<i32>,
    /// Position of the block in its sequence: token positions `index*bs .. (index+1)*bs`.
    index: usize,
    /// Prefix-cache hash, set once the block is full, computed and registered.
    hash: Option<u64>,
    /// The block's tokens, kept while registered, to rule out hash collisions.
    tokens: Vec<i32>,
    /// Where the block sits in the evictable pool, while it is there.
    slot: Slot,
    /// Served from the prefix cache at least once since it was computed.
    reused: bool,
}

#[derive(Debug)]
struct SeqTable {
    llama_id: i32,
    blocks: Vec<BlockId>,
    /// Leading blocks already registered in (or served from) the prefix cache.
    registered: usize,
    /// Hash of the last registered block.
    parent: Option<u64>,
}

/// The block manager of one engine.
#[derive(Debug)]
pub(crate) struct BlockManager {
    block_size: usize,
    salt: u64,
    caching: bool,
    blocks: Vec<Block>,
    free: Vec<BlockId>,
    cached: HashMap<u64, BlockId>,
    evictable: Evictable,
    seqs: HashMap<SeqKey, SeqTable>,
    held: HashMap<i32, usize>,
}

impl BlockManager {
    /// `num_blocks` blocks of `block_size` tokens; `salt` identifies the model and KV type.
    pub(crate) fn new(num_blocks: usize, block_size: usize, salt: u64, caching: bool) -> Self {
        Self {
            block_size: block_size.max(1),
            salt,
            caching,
            blocks: vec![Block::default(); num_blocks],
            free: (0..num_blocks as BlockId).rev().collect(),
            cached: HashMap::new(),
            evictable: Evictable::new(),
            seqs: HashMap::new(),
            held: HashMap::new(),
        }
    }

    /// Keep at most `blocks` unreferenced cached blocks (the rest of the cache stays free), of which
    /// at most `probation` were never served from the cache.
    pub(crate) fn with_cache_limit(mut self, blocks: usize, probation: usize) -> Self {
        self.evictable.bound(blocks, probation);
        self
    }

    /// Tokens per block.
    pub(crate) fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in use by running sequences (not counting evictable cached ones).
    pub(crate) fn active_blocks(&self) -> usize {
        self.blocks.len() - self.free.len() - self.evictable.len()
    }

    /// Blocks with no cells at all (not counting evictable ones).
    pub(crate) fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Unreferenced blocks kept in the prefix cache (the hot tier).
    pub(crate) fn cached_blocks(&self) -> usize {
        self.evictable.len()
    }

    /// Tokens of `key`'s leading blocks registered in (or served from) the prefix cache: whole
    /// blocks whose cells hold computed KV, which the tiers below may save.
    pub(crate) fn registered_tokens(&self, key: SeqKey) -> usize {
        self.seqs.get(&key).map_or(0, |t| t.registered * self.block_size)
    }

    /// Blocks that can be handed out now (free plus evictable).
    pub(crate) fn available_blocks(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    /// Blocks needed to hold `tokens` positions.
    pub(crate) fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Whether `llama_id` still holds cells of cached or shared blocks.
    pub(crate) fn is_holding(&self, llama_id: i32) -> bool {
        self.held.get(&llama_id).is_some_and(|&n| n > 0)
    }

    /// The longest cached prefix of `tokens`, leaving at least one token to compute.
    pub(crate) fn match_prefix(&self, tokens: &[i32]) -> PrefixMatch {
        let mut found = PrefixMatch::default();
        if !self.caching || tokens.is_empty() {
            return found;
        }
        let mut parent = None;
        for chunk in tokens[..tokens.len() - 1].chunks_exact(self.block_size) {
            let h = block_hash(self.salt, parent, chunk);
            match self.cached.get(&h) {
                Some(&b) if self.blocks[b as usize].tokens == chunk => found.blocks.push(b),
                _ => break,
            }
            parent = Some(h);
        }
        found.tokens = found.blocks.len() * self.block_size;
        found
    }

    /// Blocks an admission would take from the free and evictable pools.
    pub(crate) fn blocks_to_admit(&self, total_tokens: usize, prefix: &PrefixMatch) -> usize {
        let reused_evictable = prefix.blocks.iter().filter(|&&b| self.blocks[b as usize].ref_count == 0).count();
        self.blocks_for(total_tokens).saturating_sub(prefix.blocks.len()) + reused_evictable
    }

    /// Give sequence `key` (llama.cpp id `llama_id`) blocks for `total_tokens`, reusing `prefix`.
    pub(crate) fn allocate(&mut self, key: SeqKey, llama_id: i32, total_tokens: usize, prefix: &PrefixMatch) -> Result<Vec<KvOp>, NoSpace> {
        if self.blocks_to_admit(total_tokens, prefix) > self.available_blocks() {
            return Err(NoSpace);
        }
        let mut ops = Vec::new();
        let mut table = SeqTable { llama_id, blocks: Vec::with_capacity(self.blocks_for(total_tokens)), registered: 0, parent: None };
        for &b in &prefix.blocks {
            let block = &mut self.blocks[b as usize];
            if block.ref_count == 0 {
                self.evictable.remove(block.slot);
            }
            block.ref_count += 1;
            block.reused = true;
            let holder = block.holder.unwrap_or(llama_id);
            let (p0, p1) = (block.index * self.block_size, (block.index + 1) * self.block_size);
            ops.push(KvOp::Share { from: holder, to: llama_id, p0, p1 });
            table.parent = block.hash;
            table.blocks.push(b);
        }
        table.registered = table.blocks.len();
        for index in table.blocks.len()..self.blocks_for(total_tokens) {
            let b = self.take_block(llama_id, index, &mut ops);
            table.blocks.push(b);
        }
        self.seqs.insert(key, table);
        self.trim(&mut ops);
        Ok(ops)
    }

    /// Make room for `total_tokens` positions in `key`'s table (decode growth).
    pub(crate) fn grow(&mut self, key: SeqKey, total_tokens: usize) -> Result<Vec<KvOp>, NoSpace> {
        let Some(table) = self.seqs.get(&key) else { return Ok(Vec::new()) };
        let (have, llama_id) = (table.blocks.len(), table.llama_id);
        let need = self.blocks_for(total_tokens).saturating_sub(have);
        if need > self.available_blocks() {
            return Err(NoSpace);
        }
        let mut ops = Vec::new();
        for index in have..have + need {
            let b = self.take_block(llama_id, index, &mut ops);
            if let Some(t) = self.seqs.get_mut(&key) {
                t.blocks.push(b);
            }
        }
        Ok(ops)
    }

    /// Register `key`'s full blocks among the first `computed` of `tokens` in the prefix cache.
    pub(crate) fn register(&mut self, key: SeqKey, tokens: &[i32], computed: usize) {
        if !self.caching {
            return;
        }
        let Some(table) = self.seqs.get_mut(&key) else { return };
        let full = (computed.min(tokens.len()) / self.block_size).min(table.blocks.len());
        while table.registered < full {
            let i = table.registered;
            let chunk = &tokens[i * self.block_size..(i + 1) * self.block_size];
            let h = block_hash(self.salt, table.parent, chunk);
            let b = table.blocks[i];
            if let std::collections::hash_map::Entry::Vacant(slot) = self.cached.entry(h) {
                slot.insert(b);
                let block = &mut self.blocks[b as usize];
                block.hash = Some(h);
                block.tokens = chunk.to_vec();
            }
            table.parent = Some(h);
            table.registered += 1;
        }
    }

    /// Drop `key`'s table. Registered blocks stay cached (evictable), replacing the never-reused
    /// blocks of the sequence released before; the rest are freed.
    pub(crate) fn release(&mut self, key: SeqKey) -> Vec<KvOp> {
        let mut ops = Vec::new();
        let Some(table) = self.seqs.remove(&key) else { return ops };
        // Probation keeps only the last finished sequence's never-reused blocks.
        while let Some(b) = self.evictable.oldest_in_probation() {
            self.discard(b, &mut ops);
        }
        for &b in table.blocks.iter().rev() {
            let bs = self.block_size;
            let block = &mut self.blocks[b as usize];
            let (p0, p1) = (block.index * bs, (block.index + 1) * bs);
            block.ref_count -= 1;
            if block.holder != Some(table.llama_id) {
                ops.push(KvOp::Untag { seq: table.llama_id, p0, p1 });
            }
            if block.ref_count > 0 {
                continue;
            }
            if block.hash.is_some() {
                block.slot = self.evictable.push(b, block.reused);
            } else {
                if let Some(holder) = block.holder.take() {
                    ops.push(KvOp::Untag { seq: holder, p0, p1 });
                    self.unhold(holder);
                }
                self.free.push(b);
            }
        }
        self.trim(&mut ops);
        ops
    }

    /// Evict what the pool's bounds no longer allow (probation shrinks as running sequences grow).
    fn trim(&mut self, ops: &mut Vec<KvOp>) {
        while let Some(b) = self.evictable.over_bound(self.active_blocks()) {
            self.discard(b, ops);
        }
    }

    /// Evict every block `llama_id` holds, if none is in use, so the id can be reused.
    pub(crate) fn evict_holder(&mut self, llama_id: i32) -> Option<Vec<KvOp>> {
        let held: Vec<BlockId> = (0..self.blocks.len() as BlockId).filter(|&b| self.blocks[b as usize].holder == Some(llama_id)).collect();
        if held.iter().any(|&b| self.blocks[b as usize].ref_count > 0) {
            return None;
        }
        let mut ops = Vec::new();
        for b in held {
            self.discard(b, &mut ops);
        }
        Some(ops)
    }

    /// A block for position `index` of `llama_id`: a free one, else the oldest evictable one.
    fn take_block(&mut self, llama_id: i32, index: usize, ops: &mut Vec<KvOp>) -> BlockId {
        let b = match self.free.pop() {
            Some(b) => b,
            None => match self.evictable.oldest() {
                Some(b) => {
                    self.evict(b, ops);
                    b
                }
                // Callers check `available_blocks` first; reaching here is a bookkeeping bug.
                None => unreachable!("take_block without available blocks"),
            },
        };
        let block = &mut self.blocks[b as usize];
        *block = Block { ref_count: 1, holder: Some(llama_id), index, ..Block::default() };
        *self.held.entry(llama_id).or_default() += 1;
        b
    }

    /// Evict a block and put it on the free list.
    fn discard(&mut self, b: BlockId, ops: &mut Vec<KvOp>) {
        self.evict(b, ops);
        self.free.push(b);
    }

    /// Turn an evictable block into a free one (the caller pushes or reuses it).
    fn evict(&mut self, b: BlockId, ops: &mut Vec<KvOp>) {
        let bs = self.block_size;
        let block = &mut self.blocks[b as usize];
        self.evictable.remove(block.slot);
        if let Some(h) = block.hash.take() {
            if self.cached.get(&h) == Some(&b) {
                self.cached.remove(&h);
            }
        }
        block.tokens.clear();
        if let Some(holder) = block.holder.take() {
            ops.push(KvOp::Untag { seq: holder, p0: block.index * bs, p1: (block.index + 1) * bs });
            self.unhold(holder);
        }
    }

    fn unhold(&mut self, llama_id: i32) {
        if let Some(n) = self.held.get_mut(&llama_id) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&llama_id);
            }
        }
    }
}

#[cfg(test)]
#[path = "block_manager_tests.rs"]
mod tests;
