//! The KV layout's bookkeeping behind one interface: [`Blocks`] is the block manager of the
//! unified layout ([`BlockManager`], sharing by tagging cells) or of the per-sequence layout
//! ([`StreamManager`], sharing by copying a stream). The scheduler asks it every question about
//! what is shared and applies the [`KvOp`]s it answers with, whatever the layout.
//!
//! Which layout (`[engine] kv_layout`, resolved at start-up): `auto` is per-sequence when the
//! model's layers are on a GPU and unified on the CPU. On an H100 a unified decode step at 64
//! streams attends to every cell of the cache, 64 prompts' worth: hearth's engine ran 1.5× faster
//! with a stream per sequence at 64 streams (7.1 against 10.2 ms a step), llama.cpp's own kernels
//! 2.6× at 128 (BENCHMARKS.md, "KV layout"). On the shared 2-core CPU box the two could not be told
//! apart, and there the unified cache keeps sharing free (a tag, not a copy of a whole stream) and
//! the cache no bigger than `max_model_len`.
//!
//! Sizing the per-sequence layout ([`stream_sizing`]): `max_num_seqs` streams of `max_model_len`
//! cells rounded up to 256 (llama.cpp pads a stream to 256 cells), so every running sequence can
//! reach `max_model_len` and none is ever preempted for space; a finished sequence's stream is its
//! prompt's hot cache until the id is taken again, and the RAM and disk tiers hold the rest.

use super::block_manager::{BlockManager, KvOp, NoSpace, PrefixMatch, SeqKey};
use super::streams::StreamManager;

/// llama.cpp pads each stream of the per-sequence layout to a multiple of this many cells.
pub(crate) const STREAM_PAD: u32 = 256;

/// The per-sequence layout's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamSizing {
    /// Streams, one per llama.cpp sequence id.
    pub streams: u32,
    /// Cells of each stream.
    pub cells: u32,
}

impl StreamSizing {
    /// Cells of the whole cache (llama.cpp's `n_ctx`).
    pub(crate) fn total(&self) -> u64 {
        u64::from(self.streams) * u64::from(self.cells)
    }
}

/// The per-sequence layout for `max_num_seqs` sequences of up to `max_model_len` tokens, within
/// `kv_cache_tokens` (0: no bound given). The error says what does not fit and what to change.
pub(crate) fn stream_sizing(max_model_len: u32, max_num_seqs: u32, kv_cache_tokens: u32) -> Result<StreamSizing, String> {
    let cells = max_model_len.max(1).div_ceil(STREAM_PAD) * STREAM_PAD;
    let sizing = StreamSizing { streams: max_num_seqs.max(1), cells };
    // The KV budget may stop short of the padding (it is sized from max_model_len), not of the
    // sequences themselves.
    let least = u64::from(sizing.streams) * u64::from(max_model_len);
    if kv_cache_tokens != 0 && u64::from(kv_cache_tokens) < least {
        return Err(format!(
            "kv_layout = \"per_sequence\" gives each of max_num_seqs {} sequences its own KV stream of max_model_len {max_model_len} \
             cells ({cells} with llama.cpp's padding), {} tokens in all, but the KV cache holds {kv_cache_tokens}: \
             lower max_num_seqs or max_model_len, give the cache more (kv_cache_tokens, gpu_memory_utilization), \
             or use kv_layout = \"unified\"",
            sizing.streams,
            sizing.total()
        ));
    }
    Ok(sizing)
}

/// The block manager of the layout in use.
#[derive(Debug)]
pub(crate) enum Blocks {
    Unified(BlockManager),
    PerSequence(StreamManager),
}

impl Blocks {
    pub(crate) fn is_per_sequence(&self) -> bool {
        matches!(self, Blocks::PerSequence(_))
    }

    pub(crate) fn block_size(&self) -> usize {
        match self {
            Blocks::Unified(b) => b.block_size(),
            Blocks::PerSequence(s) => s.block_size(),
        }
    }

    pub(crate) fn blocks_for(&self, tokens: usize) -> usize {
        match self {
            Blocks::Unified(b) => b.blocks_for(tokens),
            Blocks::PerSequence(s) => s.blocks_for(tokens),
        }
    }

    /// Blocks in use by running sequences.
    pub(crate) fn active_blocks(&self) -> usize {
        match self {
            Blocks::Unified(b) => b.active_blocks(),
            Blocks::PerSequence(s) => s.active_blocks(),
        }
    }

    /// Blocks with no cells.
    pub(crate) fn free_blocks(&self) -> usize {
        match self {
            Blocks::Unified(b) => b.free_blocks(),
            Blocks::PerSequence(s) => s.free_blocks(),
        }
    }

    /// Unreferenced blocks kept as the hot prefix cache.
    pub(crate) fn cached_blocks(&self) -> usize {
        match self {
            Blocks::Unified(b) => b.cached_blocks(),
            Blocks::PerSequence(s) => s.cached_blocks(),
        }
    }

    /// Blocks that can be handed out now (free plus cached).
    #[cfg(test)]
    pub(crate) fn available_blocks(&self) -> usize {
        self.free_blocks() + self.cached_blocks()
    }

    pub(crate) fn registered_tokens(&self, key: SeqKey) -> usize {
        match self {
            Blocks::Unified(b) => b.registered_tokens(key),
            Blocks::PerSequence(s) => s.registered_tokens(key),
        }
    }

    pub(crate) fn is_holding(&self, llama_id: i32) -> bool {
        match self {
            Blocks::Unified(b) => b.is_holding(llama_id),
            Blocks::PerSequence(s) => s.is_holding(llama_id),
        }
    }

    /// The longest cached prefix of `tokens` (for a sequence that will run as `target`, if known).
    pub(crate) fn match_prefix(&self, tokens: &[i32], target: Option<i32>) -> PrefixMatch {
        match self {
            Blocks::Unified(b) => b.match_prefix(tokens),
            Blocks::PerSequence(s) => s.match_prefix(tokens, target),
        }
    }

    /// Whether a sequence of `total_tokens` reusing `prefix` may be admitted beside `running`
    /// others: unified, with one block of headroom per running sequence (a lone request always
    /// tries); per sequence, when it fits a stream (the caller finds the idle id).
    pub(crate) fn fits(&self, total_tokens: usize, prefix: &PrefixMatch, running: usize) -> bool {
        match self {
            Blocks::Unified(b) => running == 0 || b.blocks_to_admit(total_tokens, prefix) + running <= b.available_blocks(),
            Blocks::PerSequence(s) => s.fits(total_tokens),
        }
    }

    pub(crate) fn allocate(&mut self, key: SeqKey, llama_id: i32, total_tokens: usize, prefix: &PrefixMatch) -> Result<Vec<KvOp>, NoSpace> {
        match self {
            Blocks::Unified(b) => b.allocate(key, llama_id, total_tokens, prefix),
            Blocks::PerSequence(s) => s.allocate(key, llama_id, total_tokens, prefix),
        }
    }

    pub(crate) fn grow(&mut self, key: SeqKey, total_tokens: usize) -> Result<Vec<KvOp>, NoSpace> {
        match self {
            Blocks::Unified(b) => b.grow(key, total_tokens),
            Blocks::PerSequence(s) => s.grow(key, total_tokens),
        }
    }

    pub(crate) fn register(&mut self, key: SeqKey, tokens: &[i32], computed: usize) {
        match self {
            Blocks::Unified(b) => b.register(key, tokens, computed),
            Blocks::PerSequence(s) => s.register(key, tokens, computed),
        }
    }

    pub(crate) fn release(&mut self, key: SeqKey) -> Vec<KvOp> {
        match self {
            Blocks::Unified(b) => b.release(key),
            Blocks::PerSequence(s) => s.release(key),
        }
    }

    pub(crate) fn evict_holder(&mut self, llama_id: i32) -> Option<Vec<KvOp>> {
        match self {
            Blocks::Unified(b) => b.evict_holder(llama_id),
            Blocks::PerSequence(s) => s.evict_holder(llama_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sequence_gets_a_padded_stream_of_max_model_len() {
        assert_eq!(stream_sizing(2048, 64, 0), Ok(StreamSizing { streams: 64, cells: 2048 }));
        let odd = stream_sizing(1000, 8, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((odd.cells, odd.total()), (1024, 8192));
        // A budget sized from max_model_len (GPU memory, capped) fits without the padding.
        assert!(stream_sizing(1000, 8, 8000).is_ok());
    }

    #[test]
    fn a_cache_too_small_for_every_sequence_is_a_clear_error() {
        let e = stream_sizing(4096, 64, 65_536).err().unwrap_or_default();
        assert!(e.contains("max_num_seqs 64") && e.contains("max_model_len 4096") && e.contains("262144 tokens"), "{e}");
        assert!(e.contains("holds 65536") && e.contains("kv_layout = \"unified\""), "{e}");
    }
}
