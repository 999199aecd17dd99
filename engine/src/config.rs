//! Plain configuration for one model's engine. The daemon fills it from its TOML file; the engine
//! never reads files or environment variables itself.

use std::path::PathBuf;

/// What a model is served for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Text generation: chat and completions.
    Chat,
    /// Sentence embeddings (pooled, L2-normalised).
    Embedding,
}

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvCacheDtype {
    /// 16-bit floats: exact.
    F16,
    /// 8-bit blocks: half the memory, a small loss.
    Q8_0,
}

/// Whether attention uses llama.cpp's flash-attention kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashAttention {
    /// On where the device supports it (llama.cpp decides per device).
    #[default]
    Auto,
    /// Always (context creation fails where unsupported).
    On,
    /// Never.
    Off,
}

/// Whether one step's decode tokens and prefill chunks go to llama.cpp as one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchMixing {
    /// `Mixed` on a GPU, `Split` on the CPU.
    #[default]
    Auto,
    /// One batch: on a GPU the decode tokens ride along with the prefill almost for free, since a
    /// step there is bound by reading the weights once.
    Mixed,
    /// Two batches, decode tokens first. llama.cpp's CPU flash-attention kernel computes a batch
    /// of 64 tokens or more in tiles of 64 query rows, and a tile's work covers every KV cell that
    /// any of its rows may see: decode tokens of many sequences in one tile make it dense over all
    /// their cells, where a batch of decode tokens alone skips each row's foreign cells. On the
    /// CPU a step is compute-bound, so two batches cost nothing extra in weight reads.
    Split,
}

/// How llama.cpp lays out the KV cache of a chat model's sequences (see `kv/streams.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvLayout {
    /// `PerSequence` when the model's layers are on a GPU, `Unified` on the CPU.
    #[default]
    Auto,
    /// One cache shared by every sequence: a cached prefix is shared by tagging its cells into the
    /// new sequence, but every cell in the cache adds to each decode step's attention and mask work.
    Unified,
    /// One stream of `max_model_len` cells (rounded up to 256) per sequence, `max_num_seqs` streams:
    /// a decode step attends to each sequence's own cells only; a cached prefix is shared by
    /// copying its stream (or restoring it from the RAM or disk tier).
    PerSequence,
}

/// The prefix cache's tiers below the KV cache: prefixes of finished requests kept in host RAM and
/// in files, and restored on a hit (see `kv/tiers`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixTierConfig {
    /// Bytes of host RAM for saved prefixes; 0 turns the RAM tier off.
    pub ram_bytes: u64,
    /// Bytes of disk for saved prefixes; 0 turns the disk tier off.
    pub disk_bytes: u64,
    /// The disk tier's directory, one per model; `None` turns the disk tier off.
    pub dir: Option<PathBuf>,
}

/// Everything the engine needs to load and serve one model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The name clients use in the `model` field.
    pub name: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// The GGUF file.
    pub path: PathBuf,
    /// Longest sequence (prompt + output) in tokens; 0 means the model's training context.
    pub max_model_len: u32,
    /// Most sequences decoded together in one step.
    pub max_num_seqs: u32,
    /// Token budget of one step (decode tokens plus prefill chunks).
    pub max_num_batched_tokens: u32,
    /// Requests allowed to wait for admission before new ones are refused.
    pub max_queue: usize,
    /// KV cache capacity in tokens, shared by all sequences; 0 means automatic: sized from GPU
    /// memory by `gpu_memory_utilization` when the model is on a GPU, else `max_model_len`.
    pub kv_cache_tokens: u32,
    /// Tokens per KV block (the unit of admission, sharing and eviction).
    pub block_size: u32,
    /// Reuse the KV of prompt prefixes seen before.
    pub enable_prefix_caching: bool,
    /// Most tokens of finished requests kept in the prefix cache; 0 means as many as the KV cache
    /// holds. Every kept cell adds to each step's attention work (llama.cpp's unified cache).
    pub prefix_cache_max_tokens: u32,
    /// The RAM and disk tiers below the KV cache (off by default; needs `enable_prefix_caching`).
    pub prefix_tiers: PrefixTierConfig,
    /// KV cache element type.
    pub kv_cache_dtype: KvCacheDtype,
    /// CPU threads for llama.cpp; 0 means every available core.
    pub threads: u32,
    /// Layers offloaded to a GPU when one is present.
    pub n_gpu_layers: u32,
    /// Share of each GPU's memory hearth may use (weights, KV cache, buffers), for automatic KV sizing.
    pub gpu_memory_utilization: f32,
    /// Flash attention policy.
    pub flash_attention: FlashAttention,
    /// One llama.cpp batch per step, or decode and prefill apart.
    pub batch_mixing: BatchMixing,
    /// One KV cache for all sequences, or one stream per sequence.
    pub kv_layout: KvLayout,
    /// While sequences decode, a step's prefill is cut so that the step takes at most this many
    /// times a step of decode tokens alone; 0 means no limit but `max_num_batched_tokens`.
    pub max_decode_slowdown: f32,
    /// A sequence whose client has taken no event for this long (its event channel full) is
    /// cancelled and its KV freed; `Duration::ZERO` means never.
    pub stall_timeout: std::time::Duration,
}

impl ModelConfig {
    /// Threads to give llama.cpp: the configured number, or the machine's cores.
    pub(crate) fn effective_threads(&self) -> i32 {
        let n = if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
        } else {
            self.threads
        };
        i32::try_from(n).unwrap_or(1)
    }
}
