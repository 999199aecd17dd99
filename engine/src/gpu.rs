//! Sizing the KV cache from GPU memory, as vLLM's `gpu_memory_utilization` does.
//!
//! After the weights are on the GPU, hearth may use `utilization × total` of each card; what the
//! card already holds (the weights, other processes, the CUDA context) counts against it, a fixed
//! reserve is kept for llama.cpp's compute buffers, and the rest becomes KV cache:
//! `tokens = (free − total × (1 − utilization) − reserve) / bytes_per_token`.
//!
//! Free memory comes from the CUDA driver API through cudarc (loaded at run time; where
//! `libcuda.so.1` is absent [`cuda_memory`] returns `None` instead of panicking), summed over the
//! visible devices, since llama.cpp splits layers, and their KV, across all of them.

use llama_cpp_2::model::LlamaModel;

use crate::KvCacheDtype;

/// GPU memory kept free for llama.cpp's compute buffers (activations of one micro-batch, the
/// flash-attention scratch). About 0.3 GiB was seen for a 1.1B model at 512-token micro-batches.
pub const COMPUTE_RESERVE_BYTES: u64 = 1 << 30;

/// Free and total memory of the visible CUDA devices, summed; `None` without a CUDA driver or
/// device.
pub fn cuda_memory() -> Option<(u64, u64)> {
    // SAFETY: only tries to dlopen libcuda; no CUDA call is made when it is absent.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return None;
    }
    let count = cudarc::driver::CudaContext::device_count().ok()?;
    let mut sum = (0u64, 0u64);
    for ordinal in 0..usize::try_from(count).ok()? {
        let ctx = cudarc::driver::CudaContext::new(ordinal).ok()?;
        let (free, total) = ctx.mem_get_info().ok()?;
        sum = (sum.0 + free as u64, sum.1 + total as u64);
    }
    (count > 0).then_some(sum)
}

/// Bytes of K plus V for one token across all layers.
/// The same arithmetic as the fit before load ([`crate::fit::kv_bytes_per_token`]), on the loaded model.
pub(crate) fn kv_bytes_per_token(model: &LlamaModel, dtype: KvCacheDtype) -> u64 {
    crate::fit::kv_bytes_per_token(
        u64::from(model.n_layer()),
        u64::try_from(model.n_embd()).unwrap_or(0),
        u64::from(model.n_head().max(1)),
        u64::from(model.n_head_kv()),
        dtype == KvCacheDtype::Q8_0, // 32 int8 values and one f16 scale per block
    )
}

/// KV tokens that fit the budget, or 0 when nothing does.
pub(crate) fn kv_tokens_for_memory(free: u64, total: u64, utilization: f32, bytes_per_token: u64) -> u64 {
    let kept_free = (total as f64 * (1.0 - f64::from(utilization.clamp(0.0, 1.0)))) as u64;
    let budget = free.saturating_sub(kept_free).saturating_sub(COMPUTE_RESERVE_BYTES);
    budget.checked_div(bytes_per_token).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_budget_is_what_utilization_leaves_after_what_is_in_use() {
        // 80 GiB card, 2 GiB of weights loaded: 78 free; at 0.9, 8 GiB stay free, 1 GiB reserve.
        let tokens = kv_tokens_for_memory(78 * GIB, 80 * GIB, 0.9, 22_528);
        assert_eq!(tokens, 69 * GIB / 22_528);
    }

    #[test]
    fn a_full_card_gives_nothing() {
        assert_eq!(kv_tokens_for_memory(5 * GIB, 80 * GIB, 0.9, 1024), 0);
        assert_eq!(kv_tokens_for_memory(80 * GIB, 80 * GIB, 0.9, 0), 0);
    }

    #[test]
    fn utilization_is_clamped() {
        assert_eq!(kv_tokens_for_memory(10 * GIB, 10 * GIB, 7.0, GIB), 9);
    }
}
