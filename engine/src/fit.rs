//! Fit before load: whether a model's weights and its KV cache fit the memory there is now, and
//! where its layers go — all of them on the GPU, some (the rest on the CPU), or none — or a refusal
//! that gives the numbers, decided before llama.cpp allocates anything.
//!
//! Pure arithmetic on plain numbers (no llama.cpp, no device calls), so it is tested without a
//! model; the caller reads the numbers from the GGUF header and the devices. The model is taken as
//! `n_layers` equal repeating layers: each layer holds `weights_bytes / n_layers` of the weights and
//! `kv_bytes_per_token / n_layers × kv_tokens` of the KV cache, and an offloaded layer keeps both on
//! the GPU (llama.cpp puts a layer's KV where the layer is). The GPU also keeps
//! [`FitInput::gpu_reserve_bytes`] free for compute buffers; the CPU side needs the rest in RAM that
//! is available (`MemAvailable`: free memory plus what the kernel can reclaim). The decision is the
//! most layers (up to the configured `n_gpu_layers`) that fit the GPU, provided the rest fits the RAM.

use std::fmt;

/// What the decision needs, all in bytes except the counts.
#[derive(Debug, Clone, PartialEq)]
pub struct FitInput {
    /// The model's repeating layers (`<arch>.block_count`).
    pub n_layers: u32,
    /// The weights (the GGUF file's size is a close upper bound).
    pub weights_bytes: u64,
    /// K plus V for one token over all layers ([`kv_bytes_per_token`]).
    pub kv_bytes_per_token: u64,
    /// KV cells the context will hold.
    pub kv_tokens: u64,
    /// `n_gpu_layers` as configured (999: all).
    pub requested_gpu_layers: u32,
    /// Free memory of the GPU(s) and their name (`CUDA0`), or `None` without a GPU.
    pub gpu_free: Option<(u64, String)>,
    /// Kept free on the GPU for llama.cpp's compute buffers.
    pub gpu_reserve_bytes: u64,
    /// RAM available now (`MemAvailable`), or `None` when unknown (then it is not checked).
    pub ram_available: Option<u64>,
    /// How the KV size came about, for the message (`max_model_len 8192 × 4 sequences`).
    pub kv_reason: String,
}

/// Where the layers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `layers` of `of` on the GPU (all of them when equal), the rest on the CPU.
    Gpu { layers: u32, of: u32 },
    /// Everything on the CPU.
    Cpu,
}

/// A model that fits: where, and how much memory each side gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    pub placement: Placement,
    /// Weights and KV on the GPU.
    pub gpu_bytes: u64,
    /// Weights and KV in RAM.
    pub ram_bytes: u64,
    /// The GPU's name, when there is one.
    pub device: Option<String>,
    /// True when fewer layers than configured go to the GPU because no more fit.
    pub reduced: bool,
}

impl Fit {
    /// Layers to offload (llama.cpp's `n_gpu_layers`).
    pub fn gpu_layers(&self) -> u32 {
        match self.placement {
            Placement::Gpu { layers, .. } => layers,
            Placement::Cpu => 0,
        }
    }
}

impl fmt::Display for Fit {
    /// `fits: 22 of 22 layers on CUDA0`, `fits: 10 of 22 layers on CUDA0, 12 on the CPU (no more fit)`, `fits: CPU`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.placement, &self.device) {
            (Placement::Gpu { layers, of }, Some(device)) if layers == of => write!(f, "fits: {layers} of {of} layers on {device}"),
            (Placement::Gpu { layers, of }, device) => {
                write!(f, "fits: {layers} of {of} layers on {}, {} on the CPU", device.as_deref().unwrap_or("the GPU"), of - layers)?;
                if self.reduced {
                    f.write_str(" (no more fit the GPU's free memory)")?;
                }
                Ok(())
            }
            (Placement::Cpu, _) => write!(f, "fits: CPU ({} in RAM)", gib(self.ram_bytes)),
        }
    }
}

/// The model cannot fit: the numbers, for the refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoesNotFit {
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    pub kv_reason: String,
    pub gpu_free: Option<(u64, String)>,
    pub gpu_reserve_bytes: u64,
    pub ram_available: u64,
}

impl std::error::Error for DoesNotFit {}

impl fmt::Display for DoesNotFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "does not fit: needs {} for weights and {} for KV at {}; ", gib(self.weights_bytes), gib(self.kv_bytes), self.kv_reason)?;
        if let Some((free, name)) = &self.gpu_free {
            write!(f, "{} free on {name} and ", gib(*free))?;
        }
        write!(f, "{} of RAM available", gib(self.ram_available))?;
        if self.gpu_free.is_some() {
            write!(f, " ({} of the GPU kept for compute buffers)", gib(self.gpu_reserve_bytes))?;
        }
        f.write_str(": lower max_model_len, max_num_seqs or kv_cache_tokens, use kv_cache_dtype = \"q8_0\", or a smaller quantization")
    }
}

/// Bytes as GiB with one decimal (`9.1 GiB`), or MiB below one GiB.
pub fn gib(bytes: u64) -> String {
    let gib = bytes as f64 / f64::from(1u32 << 30);
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else {
        format!("{:.0} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

/// Bytes of K plus V for one token over all layers: `2 × n_layer × n_head_kv × head_dim` elements
/// of `bytes_per_element` each (f16: 2; q8_0: 34 bytes a block of 32).
pub fn kv_bytes_per_token(n_layer: u64, n_embd: u64, n_head: u64, n_head_kv: u64, q8_0: bool) -> u64 {
    let head_dim = n_embd / n_head.max(1);
    let elements = n_layer * 2 * n_head_kv * head_dim;
    if q8_0 {
        elements * 34 / 32
    } else {
        elements * 2
    }
}

/// Decide where the model goes, or refuse with the numbers.
pub fn fit(input: &FitInput) -> Result<Fit, DoesNotFit> {
    let n = u64::from(input.n_layers.max(1));
    let kv_bytes = input.kv_bytes_per_token.saturating_mul(input.kv_tokens);
    let total = input.weights_bytes.saturating_add(kv_bytes);
    let per_layer = total.div_ceil(n);
    let ram_fits = |bytes: u64| input.ram_available.is_none_or(|ram| bytes <= ram);
    let refuse = || DoesNotFit {
        weights_bytes: input.weights_bytes,
        kv_bytes,
        kv_reason: input.kv_reason.clone(),
        gpu_free: input.gpu_free.clone(),
        gpu_reserve_bytes: input.gpu_reserve_bytes,
        ram_available: input.ram_available.unwrap_or(0),
    };
    let wanted = u64::from(input.requested_gpu_layers).min(n);
    let Some((free, device)) = input.gpu_free.as_ref().filter(|_| wanted > 0) else {
        return if ram_fits(total) {
            Ok(Fit { placement: Placement::Cpu, gpu_bytes: 0, ram_bytes: total, device: None, reduced: false })
        } else {
            Err(refuse())
        };
    };
    let room = free.saturating_sub(input.gpu_reserve_bytes);
    let layers = (room / per_layer.max(1)).min(wanted);
    let gpu_bytes = (per_layer * layers).min(total);
    let ram_bytes = total - gpu_bytes;
    if !ram_fits(ram_bytes) {
        return Err(refuse());
    }
    let placement = if layers == 0 { Placement::Cpu } else { Placement::Gpu { layers: layers as u32, of: n as u32 } };
    Ok(Fit { placement, gpu_bytes, ram_bytes, device: Some(device.clone()), reduced: layers < wanted })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn input(weights: u64, kv_per_token: u64, tokens: u64, gpu: Option<u64>, ram: u64) -> FitInput {
        FitInput {
            n_layers: 22,
            weights_bytes: weights,
            kv_bytes_per_token: kv_per_token,
            kv_tokens: tokens,
            requested_gpu_layers: 999,
            gpu_free: gpu.map(|g| (g, "CUDA0".to_owned())),
            gpu_reserve_bytes: GIB,
            ram_available: Some(ram),
            kv_reason: "max_model_len 8192 × 4 sequences".into(),
        }
    }

    #[test]
    fn everything_on_a_gpu_with_room() {
        let fit = fit(&input(2 * GIB, 22_528, 8192, Some(20 * GIB), 8 * GIB)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fit.placement, Placement::Gpu { layers: 22, of: 22 });
        assert_eq!((fit.gpu_layers(), fit.ram_bytes, fit.reduced), (22, 0, false));
        assert_eq!(fit.to_string(), "fits: 22 of 22 layers on CUDA0");
    }

    #[test]
    fn a_small_gpu_takes_the_layers_that_fit_and_the_cpu_the_rest() {
        // 9 GiB of weights and 2 GiB of KV: 22 layers of 0.5 GiB; 6 GiB free less 1 GiB reserve: 10 layers.
        let fit = fit(&input(9 * GIB, GIB / 4096, 8192, Some(6 * GIB), 64 * GIB)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fit.placement, Placement::Gpu { layers: 10, of: 22 });
        assert!(fit.reduced);
        assert_eq!((fit.gpu_bytes, fit.ram_bytes), (5 * GIB, 6 * GIB));
        assert_eq!(fit.to_string(), "fits: 10 of 22 layers on CUDA0, 12 on the CPU (no more fit the GPU's free memory)");
    }

    #[test]
    fn the_configured_layer_count_is_a_ceiling() {
        let mut i = input(2 * GIB, 1024, 1024, Some(40 * GIB), 8 * GIB);
        i.requested_gpu_layers = 5;
        let fit = fit(&i).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((fit.placement, fit.reduced), (Placement::Gpu { layers: 5, of: 22 }, false));
        i.requested_gpu_layers = 0;
        assert_eq!(super::fit(&i).map(|f| f.placement), Ok(Placement::Cpu));
    }

    #[test]
    fn the_cpu_path_refuses_a_kv_cache_larger_than_the_ram_with_the_numbers() {
        // 100 MiB of weights; 22.5 KiB a token × 32768 × 256 sequences = 176 GiB of KV; 3 GiB of RAM.
        let mut i = input(100 << 20, 23_040, 32_768 * 256, None, 3 * GIB);
        i.kv_reason = "max_model_len 32768 × 256 sequences".into();
        let err = fit(&i).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            err,
            "does not fit: needs 100 MiB for weights and 180.0 GiB for KV at max_model_len 32768 × 256 sequences; 3.0 GiB of RAM available: \
             lower max_model_len, max_num_seqs or kv_cache_tokens, use kv_cache_dtype = \"q8_0\", or a smaller quantization"
        );
        // The same model at a sane context fits the CPU.
        let sane = input(100 << 20, 23_040, 8192, None, 3 * GIB);
        assert_eq!(fit(&sane).map(|f| f.placement), Ok(Placement::Cpu));
    }

    #[test]
    fn a_gpu_too_small_and_ram_too_small_refuses_naming_both() {
        let err = fit(&input(9 * GIB, 0, 0, Some(6 * GIB + GIB / 5), 3 * GIB)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("does not fit: needs 9.0 GiB for weights and 0 MiB for KV at max_model_len 8192 × 4 sequences; 6.2 GiB free on CUDA0 and 3.0 GiB of RAM available (1.0 GiB of the GPU kept"), "{err}");
    }

    #[test]
    fn unknown_ram_is_not_checked_and_a_full_gpu_falls_back_to_the_cpu() {
        let mut i = input(GIB, 0, 0, Some(GIB / 2), 0);
        i.ram_available = None;
        let fit = fit(&i).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((fit.placement, fit.reduced), (Placement::Cpu, true));
    }

    #[test]
    fn kv_bytes_follow_the_attention_shape() {
        // SmolLM2-135M: 30 layers, 576 wide, 9 heads, 3 KV heads: 64-wide heads.
        assert_eq!(kv_bytes_per_token(30, 576, 9, 3, false), 30 * 2 * 3 * 64 * 2);
        assert_eq!(kv_bytes_per_token(30, 576, 9, 3, true), 30 * 2 * 3 * 64 * 34 / 32);
    }
}
