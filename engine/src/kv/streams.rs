//! KV bookkeeping for llama.cpp's per-sequence layout (`kv_unified = false`): one stream of cells
//! per sequence id, in pure Rust so it can be proven without a model.
//!
//! What llama.cpp does in that layout (llama-context.cpp, llama-kv-cache.cpp, llama-batch.cpp):
//! - the context has `n_seq_max` streams of `n_ctx_seq = n_ctx / n_seq_max` cells (rounded up to
//!   256); sequence id `s` lives in stream `s` and can never hold more than its stream's cells, so
//!   a sequence's `max_model_len` must fit one stream;
//! - a decode step attends, for each sequence, to its own stream only (its used cells, padded to
//!   256), not to every cell of the cache: cached prefixes of other sequences cost a step nothing.
//!   This is why the layout is faster on a GPU at many streams (BENCHMARKS.md);
//! - `seq_cp` between two streams copies the whole stream buffer (all layers), replaces the
//!   destination's cells, and aborts the process unless the range is the whole stream
//!   (`p0 <= 0`, `p1 < 0`). The buffer copy is deferred to the next decode (before its batch), so
//!   until then the source's buffer must not be overwritten (a restore into it) and the
//!   destination's must not be read (a save from it); the engine thread keeps both rules;
//! - a batch is cut into ubatches by `split_equal(sequential)`: each ubatch takes the same number of
//!   tokens from sequences whose ids are consecutive in batch order. Decode tokens of ids 0..63 in
//!   that order make one ubatch; scattered ids make many (each a pass over the weights). So new
//!   sequences take the lowest idle id, and the scheduler orders a step's work by id.
//! - the state of one sequence (`llama_state_seq_get_data`) starts with the context's stream count
//!   and restores into any sequence's stream, but not into a context of another stream count: the
//!   tiers' fingerprint includes the layout and the stream count.
//!
//! So sharing is copying. A stream's *registered* tokens are the leading full blocks of its
//! sequence whose KV is computed; they stay after the sequence finishes (the stream is then the
//! hot cache of that prompt) until the id is taken again. A new sequence takes the lowest idle id;
//! [`StreamManager::match_prefix`] finds the stream with the longest registered prefix of its
//! prompt (preferring the new id itself, which needs no copy), and [`StreamManager::allocate`]
//! turns that into ops: truncate the id's own stream past the match, or copy the source's stream
//! into it and truncate ([`KvOp::CopyStream`]), or drop the id's old cells.
//!
//! Invariants (checked in the tests): a sequence key runs in exactly one stream; a stream runs at
//! most one sequence and never holds more blocks than it has; registered tokens are whole blocks
//! and cover only computed positions; `active + cached + free` blocks equal the streams' blocks.

use std::collections::HashMap;

use super::block_manager::{KvOp, NoSpace, PrefixMatch, SeqKey};
use super::common_whole_blocks;

#[derive(Debug, Clone, Default)]
struct Stream {
    /// The sequence running in this stream.
    running: Option<SeqKey>,
    /// Blocks the running sequence may fill (its prompt and output so far).
    blocks: usize,
    /// Leading tokens whose KV the stream holds, whole blocks, offered as a cached prefix.
    registered: Vec<i32>,
}

/// The per-sequence KV bookkeeping of one engine.
#[derive(Debug)]
pub(crate) struct StreamManager {
    block_size: usize,
    /// Blocks of one stream (its cells / `block_size`).
    stream_blocks: usize,
    caching: bool,
    streams: Vec<Stream>,
    /// The stream of each running sequence.
    seqs: HashMap<SeqKey, i32>,
}

impl StreamManager {
    /// `n_streams` streams of `stream_blocks` blocks of `block_size` tokens.
    pub(crate) fn new(n_streams: usize, stream_blocks: usize, block_size: usize, caching: bool) -> Self {
        Self { block_size: block_size.max(1), stream_blocks, caching, streams: vec![Stream::default(); n_streams], seqs: HashMap::new() }
    }

    pub(crate) fn block_size(&self) -> usize {
        self.block_size
    }

    /// Token positions of one stream.
    pub(crate) fn stream_tokens(&self) -> usize {
        self.stream_blocks * self.block_size
    }

    pub(crate) fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Blocks in use by running sequences.
    pub(crate) fn active_blocks(&self) -> usize {
        self.streams.iter().map(|s| s.blocks).sum()
    }

    /// Blocks of idle streams that hold a cached prefix.
    pub(crate) fn cached_blocks(&self) -> usize {
        self.streams.iter().filter(|s| s.running.is_none()).map(|s| s.registered.len() / self.block_size).sum()
    }

    /// Blocks neither running nor cached.
    pub(crate) fn free_blocks(&self) -> usize {
        self.streams.len() * self.stream_blocks - self.active_blocks() - self.cached_blocks()
    }

    /// Tokens of `key`'s registered prefix.
    pub(crate) fn registered_tokens(&self, key: SeqKey) -> usize {
        self.seqs.get(&key).map_or(0, |&id| self.streams[id as usize].registered.len())
    }

    /// Whether idle stream `id` still holds cells of a cached prefix.
    pub(crate) fn is_holding(&self, id: i32) -> bool {
        self.stream(id).is_some_and(|s| s.running.is_none() && !s.registered.is_empty())
    }

    /// Whether a sequence of `total_tokens` fits a stream.
    pub(crate) fn fits(&self, total_tokens: usize) -> bool {
        self.blocks_for(total_tokens) <= self.stream_blocks
    }

    /// The longest registered prefix of `tokens` in any stream, in whole blocks, leaving at least
    /// one token to compute; on a tie `target`'s own stream (no copy), then the lowest id.
    pub(crate) fn match_prefix(&self, tokens: &[i32], target: Option<i32>) -> PrefixMatch {
        if !self.caching || tokens.is_empty() {
            return PrefixMatch::default();
        }
        let limit = (tokens.len() - 1) / self.block_size * self.block_size;
        let common = |s: &Stream| common_whole_blocks(&s.registered, &tokens[..limit], self.block_size);
        let mut best = (0, -1);
        if let Some(own) = target.and_then(|t| self.stream(t).map(|s| (common(s), t))) {
            best = own;
        }
        for (id, s) in self.streams.iter().enumerate() {
            let n = common(s);
            if n > best.0 {
                best = (n, id as i32);
            }
        }
        if best.0 == 0 {
            return PrefixMatch::default();
        }
        PrefixMatch::in_stream(best.1, best.0)
    }

    /// Run sequence `key` in stream `id` (idle) for `total_tokens`, starting from `prefix` (a
    /// match from [`Self::match_prefix`], or none). The ops keep the id's own cells up to the
    /// match, or replace them with a copy of the source stream cut at the match, or drop them.
    pub(crate) fn allocate(&mut self, key: SeqKey, id: i32, total_tokens: usize, prefix: &PrefixMatch) -> Result<Vec<KvOp>, NoSpace> {
        let cap = self.stream_tokens();
        if !self.fits(total_tokens) || self.stream(id).is_none_or(|s| s.running.is_some()) {
            return Err(NoSpace);
        }
        let keep = prefix.tokens / self.block_size * self.block_size;
        let mut ops = Vec::new();
        let registered = match prefix.source {
            Some(src) if src == id && keep > 0 => {
                ops.push(KvOp::Untag { seq: id, p0: keep, p1: cap });
                let mut own = std::mem::take(&mut self.streams[id as usize].registered);
                own.truncate(keep);
                own
            }
            Some(src) if keep > 0 && self.stream(src).is_some_and(|s| s.registered.len() >= keep) => {
                ops.push(KvOp::CopyStream { from: src, to: id, keep });
                self.streams[src as usize].registered[..keep].to_vec()
            }
            _ => {
                if !self.streams[id as usize].registered.is_empty() {
                    ops.push(KvOp::Untag { seq: id, p0: 0, p1: cap });
                }
                Vec::new()
            }
        };
        let blocks = self.blocks_for(total_tokens);
        self.streams[id as usize] = Stream { running: Some(key), blocks, registered };
        self.seqs.insert(key, id);
        Ok(ops)
    }

    /// Room for `total_tokens` positions of `key` (decode growth): within its stream or not at all.
    pub(crate) fn grow(&mut self, key: SeqKey, total_tokens: usize) -> Result<Vec<KvOp>, NoSpace> {
        let Some(&id) = self.seqs.get(&key) else { return Ok(Vec::new()) };
        if !self.fits(total_tokens) {
            return Err(NoSpace);
        }
        let blocks = self.blocks_for(total_tokens);
        let stream = &mut self.streams[id as usize];
        stream.blocks = stream.blocks.max(blocks);
        Ok(Vec::new())
    }

    /// Register `key`'s full blocks among the first `computed` of `tokens` as its stream's prefix.
    pub(crate) fn register(&mut self, key: SeqKey, tokens: &[i32], computed: usize) {
        if !self.caching {
            return;
        }
        let Some(&id) = self.seqs.get(&key) else { return };
        let full = computed.min(tokens.len()) / self.block_size * self.block_size;
        let registered = &mut self.streams[id as usize].registered;
        if registered.len() < full {
            let from = registered.len();
            registered.extend_from_slice(&tokens[from..full]);
        }
    }

    /// `key` leaves its stream: the registered prefix stays as the stream's cached prefix (with
    /// caching), the cells past it are dropped.
    pub(crate) fn release(&mut self, key: SeqKey) -> Vec<KvOp> {
        let Some(id) = self.seqs.remove(&key) else { return Vec::new() };
        let cap = self.stream_tokens();
        let stream = &mut self.streams[id as usize];
        stream.running = None;
        stream.blocks = 0;
        if !self.caching {
            stream.registered.clear();
        }
        vec![KvOp::Untag { seq: id, p0: stream.registered.len(), p1: cap }]
    }

    /// Drop idle stream `id`'s cached prefix, so the id holds nothing; `None` while it runs.
    pub(crate) fn evict_holder(&mut self, id: i32) -> Option<Vec<KvOp>> {
        let cap = self.stream_tokens();
        let stream = self.streams.get_mut(usize::try_from(id).ok()?)?;
        if stream.running.is_some() {
            return None;
        }
        let held = !stream.registered.is_empty();
        stream.registered.clear();
        Some(if held { vec![KvOp::Untag { seq: id, p0: 0, p1: cap }] } else { Vec::new() })
    }

    fn stream(&self, id: i32) -> Option<&Stream> {
        usize::try_from(id).ok().and_then(|i| self.streams.get(i))
    }
}

#[cfg(test)]
#[path = "streams_tests.rs"]
mod tests;
