//! Quantize a GGUF with llama.cpp's own `llama_model_quantize` (the function behind
//! `llama-quantize`), through hearth's build of llama.cpp. `hearth quantize` and the
//! `quantize` example (used by the GPU benchmark scripts) both call [`quantize`].
//!
//! GGUF types are weight-only: llama.cpp stores the weights quantized and computes activations in
//! F32/F16 (on a CPU the matrix multiplications quantize activations to Q8 blocks on the fly for
//! the dot products, which is not a stored or calibrated activation format). The target types
//! named here are the ones hearth's recipes map to.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why a quantization or an accuracy measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("quantizing {path}: {reason}")]
    Quantize { path: PathBuf, reason: String },
    #[error("measuring {path}: {reason}")]
    Measure { path: PathBuf, reason: String },
}

/// A target GGUF file type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetType {
    F16,
    Q8_0,
    Q6K,
    Q5KM,
    Q4KM,
    Q4KS,
    Q4_0,
    /// Low-bit k-quants: llama.cpp recommends an importance matrix for them.
    Q3KS,
    Q2K,
}

impl TargetType {
    /// llama.cpp's name (`Q4_K_M`).
    pub fn name(self) -> &'static str {
        match self {
            TargetType::F16 => "F16",
            TargetType::Q8_0 => "Q8_0",
            TargetType::Q6K => "Q6_K",
            TargetType::Q5KM => "Q5_K_M",
            TargetType::Q4KM => "Q4_K_M",
            TargetType::Q4KS => "Q4_K_S",
            TargetType::Q4_0 => "Q4_0",
            TargetType::Q3KS => "Q3_K_S",
            TargetType::Q2K => "Q2_K",
        }
    }

    /// Parse llama.cpp's name, case-insensitively.
    pub fn parse(s: &str) -> Option<TargetType> {
        let all = [
            TargetType::F16,
            TargetType::Q8_0,
            TargetType::Q6K,
            TargetType::Q5KM,
            TargetType::Q4KM,
            TargetType::Q4KS,
            TargetType::Q4_0,
            TargetType::Q3KS,
            TargetType::Q2K,
        ];
        all.into_iter().find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// llama.cpp's file type (`llama_ftype`), for quantizers outside this module (calibration).
    pub fn ftype(self) -> llama_cpp_sys_2::llama_ftype {
        match self {
            TargetType::F16 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_F16,
            TargetType::Q8_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q8_0,
            TargetType::Q6K => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q6_K,
            TargetType::Q5KM => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q5_K_M,
            TargetType::Q4KM => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_K_M,
            TargetType::Q4KS => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_K_S,
            TargetType::Q4_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_0,
            TargetType::Q3KS => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q3_K_S,
            TargetType::Q2K => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q2_K,
        }
    }
}

/// One quantization.
#[derive(Debug, Clone)]
pub struct QuantizeJob {
    pub input: PathBuf,
    pub output: PathBuf,
    pub target: TargetType,
    /// Threads; 0: every available core.
    pub threads: u32,
    /// Quantize an already quantized model (llama.cpp's `allow_requantize`): its quality is bounded
    /// by the source's quantization.
    pub allow_requantize: bool,
}

/// What a quantization did.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub seconds: f64,
    pub input_bytes: u64,
    pub output_bytes: u64,
}

/// Run llama.cpp's quantizer; the backend must be initialized ([`crate::init_backend`]).
pub fn quantize(job: &QuantizeJob) -> Result<Quantized, QuantizeError> {
    let fail = |reason: String| QuantizeError::Quantize { path: job.input.clone(), reason };
    let c_in = c_path(&job.input).map_err(fail)?;
    let c_out = c_path(&job.output).map_err(fail)?;
    let input_bytes = std::fs::metadata(&job.input).map_err(|e| fail(e.to_string()))?.len();
    let threads = match job.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    let started = Instant::now();
    // SAFETY: the default parameters come from llama.cpp; both paths are NUL-terminated strings
    // that outlive the call, and no imatrix or override pointers are set.
    let status = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = job.target.ftype();
        params.nthread = i32::try_from(threads).unwrap_or(1);
        params.allow_requantize = job.allow_requantize;
        llama_cpp_sys_2::llama_model_quantize(c_in.as_ptr(), c_out.as_ptr(), &params)
    };
    if status != 0 {
        let _ = std::fs::remove_file(&job.output);
        let hint = if job.allow_requantize { "" } else { " (an already quantized source needs allow_requantize)" };
        return Err(fail(format!("llama_model_quantize failed with status {status}{hint}")));
    }
    let output_bytes = std::fs::metadata(&job.output).map_err(|e| fail(e.to_string()))?.len();
    Ok(Quantized { seconds: started.elapsed().as_secs_f64(), input_bytes, output_bytes })
}

fn c_path(path: &Path) -> Result<CString, String> {
    let s = path.to_str().ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    CString::new(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in [TargetType::F16, TargetType::Q8_0, TargetType::Q4KM, TargetType::Q4_0, TargetType::Q6K] {
            assert_eq!(TargetType::parse(t.name()), Some(t));
        }
        assert_eq!(TargetType::parse("q4_k_m"), Some(TargetType::Q4KM));
        assert_eq!(TargetType::parse("iq2_xxs"), None);
    }
}
