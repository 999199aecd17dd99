//! The chat engine's side of the tiered prefix cache (`kv/tiers`): saving a finished sequence's
//! registered blocks before the block manager lets them go, and restoring a saved prefix into a
//! newly admitted sequence when it covers more of the prompt than the hot cache does.
//!
//! Save: at release the sequence's llama.cpp id tags exactly the cells of its positions
//! `0..n_past` (its own blocks and the shared ones). Its cells past the registered blocks are
//! untagged first (those blocks are its alone and freed by the release anyway), so
//! `llama_state_seq_get_data_ext` serializes just the registered prefix. Nothing is saved when an
//! entry already holds that prefix.
//!
//! Restore: the sequence is admitted without sharing (fresh blocks for the whole prompt), the
//! entry's state is loaded into its still empty llama.cpp id, and the cells past the matched
//! blocks are dropped; the sequence then starts at the match, like a hot-cache hit, and its
//! blocks are registered so the next request shares them in the hot cache. The KV restored is
//! byte for byte what a cold run computed, and the prompt's tail is computed in the same shape as
//! after a hot hit (see `prefill_chunk`), so greedy output is the same.

use std::time::{Duration, Instant};

use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;

use super::policy::Leaving;
use super::ChatWorker;
use crate::kv::{fingerprint, Found, PrefixTiers, Tier};
use crate::telemetry::{CacheTier, Telemetry};
use crate::{ModelConfig, PrefixTierConfig};

/// Open the tiers of a chat model (`None` when off or when its fingerprint cannot be taken).
/// `layout` names the KV layout as it shapes a saved state (llama.cpp writes the stream count into
/// it and refuses another at restore).
pub(super) fn open_tiers(config: &ModelConfig, model: &LlamaModel, block_size: usize, salt: u64, layout: &str) -> Option<PrefixTiers> {
    let tiers: &PrefixTierConfig = &config.prefix_tiers;
    if !config.enable_prefix_caching || (tiers.ram_bytes == 0 && tiers.disk_bytes == 0) {
        return None;
    }
    // Everything besides the file that changes what a sequence's KV state holds or how it is laid out.
    let settings = format!(
        "n_params={} n_layer={} n_embd={} n_head={} n_head_kv={} type_k=type_v={:?} flash_attention={:?} {layout} block_size={block_size}",
        model.n_params(),
        model.n_layer(),
        model.n_embd(),
        model.n_head(),
        model.n_head_kv(),
        config.kv_cache_dtype,
        config.flash_attention,
    );
    match fingerprint(&config.path, &settings) {
        Ok(fp) => PrefixTiers::open(tiers, block_size, salt, fp),
        Err(e) => {
            tracing::warn!(model = %config.name, error = %e, "Prefix cache: cannot fingerprint the model file; RAM and disk tiers are off.");
            None
        }
    }
}

/// A saved prefix of `tokens` longer than the `hot` tokens the KV cache has, if any (the
/// scheduler's lookup below the KV cache at admission).
pub(super) fn candidate(tiers: &mut Option<PrefixTiers>, block_size: usize, tokens: &[i32], hot: usize) -> Option<Found> {
    tiers.as_mut()?.lookup(tokens).filter(|f| f.blocks * block_size > hot)
}

/// Save the registered prefix of a sequence leaving the running set (`leaving`; its `tokens`) to
/// the tiers, before the ops that release its blocks are applied; when not `allowed` (the save
/// budget is spent), count the save the tiers wanted as skipped instead. Returns the time spent.
pub(super) fn save_prefix(
    tiers: Option<&mut PrefixTiers>,
    ctx: &mut LlamaContext<'_>,
    telemetry: &Telemetry,
    model: &str,
    leaving: &Leaving,
    tokens: &[i32],
    allowed: bool,
) -> Duration {
    let Some(tiers) = tiers else { return Duration::ZERO };
    let (llama_id, keep) = (leaving.llama_id, leaving.keep.min(tokens.len()));
    if !tiers.wants(&tokens[..keep]) {
        return Duration::ZERO;
    }
    if !allowed {
        telemetry.tier_save_skipped();
        return Duration::ZERO;
    }
    let started = Instant::now();
    if !matches!(ctx.clear_kv_cache_seq(Some(llama_id as u32), Some(keep as u32), None), Ok(true)) {
        return started.elapsed();
    }
    let flags = LlamaStateSeqFlags::empty();
    let size = ctx.state_seq_get_size_ext(llama_id, flags);
    let mut payload = vec![0u8; size];
    // SAFETY: `payload` holds the `size` bytes llama.cpp just reported for this sequence's state,
    // and nothing changes the context between the two calls.
    let written = unsafe { ctx.state_seq_get_data_ext(payload.as_mut_ptr(), llama_id, flags) };
    if written != size {
        tracing::warn!(%model, size, written, "Prefix cache: llama.cpp wrote a state of another size; not saved.");
        return started.elapsed();
    }
    tiers.save(tokens[..keep].to_vec(), payload);
    let took = started.elapsed();
    telemetry.tier_saved(took);
    took
}

impl ChatWorker<'_> {
    /// Restore `found` into `llama_id` (admitted with fresh blocks for `total` tokens, no cells
    /// yet); returns the tokens now in the cache, 0 when the restore did not happen. Counts the
    /// try; the admission counts the hit.
    pub(super) fn restore_prefix(&mut self, llama_id: i32, total: usize, found: &Found) -> usize {
        if self.copy_pending_from(llama_id) {
            return 0; // its buffer is still to be copied out: the prompt is computed instead
        }
        let blocks = self.scheduler.blocks();
        let bs = blocks.block_size();
        // The restore places the whole entry before truncating: it needs that many free cells.
        if found.entry_tokens > (blocks.blocks_for(total) + blocks.free_blocks()) * bs {
            return 0;
        }
        let Some(tiers) = self.tiers.as_mut() else { return 0 };
        let tier = if found.tier == Tier::Disk { CacheTier::Disk } else { CacheTier::Ram };
        self.telemetry.tier_restore(tier);
        let Some(payload) = tiers.load(found) else { return 0 };
        // SAFETY: the bytes were produced by llama_state_seq_get_data_ext of a context whose model
        // file and KV settings have the same fingerprint (checked in the file header), a file's
        // checksum was verified when it was read, and llama.cpp validates the state's shape while
        // reading it, failing with 0 (and its cells cleared) on a mismatch.
        let restored = unsafe { self.ctx.state_seq_set_data_ext(&payload, llama_id, LlamaStateSeqFlags::empty()) };
        let keep = found.blocks * bs;
        let truncated = restored && self.ctx.clear_kv_cache_seq(Some(llama_id as u32), Some(keep as u32), None).is_ok();
        if !truncated {
            tracing::warn!(model = %self.config.name, tokens = found.entry_tokens, "Prefix cache: llama.cpp refused a saved prefix; it is dropped and the prompt computed.");
            tiers.refused(found);
            let _ = self.ctx.clear_kv_cache_seq(Some(llama_id as u32), None, None);
            return 0;
        }
        keep
    }

    /// Publish what each tier holds.
    pub(super) fn publish_tiers(&self) {
        let blocks = self.scheduler.blocks();
        let hot = (blocks.cached_blocks() * blocks.block_size()) as u64 * self.kv_bytes_per_token;
        let usage = self.tiers.as_ref().map(PrefixTiers::usage).unwrap_or_default();
        self.telemetry.tier_bytes(hot, usage.ram_bytes, usage.disk_bytes);
    }
}
