//! Importance matrices (llama.cpp's imatrix), the calibration behind `hearth quantize
//! --calibration FILE`: the GPTQ-like path of the quantization recipes.
//!
//! [`Imatrix::collect`] loads a model, runs a calibration text through it in chunks of
//! `chunk_tokens` tokens with llama.cpp's eval callback (`cb_eval`) set, and accumulates for every
//! matrix multiplication by a layer weight (`blk.N.*.weight`) the sum of squares of its input
//! activations per input column, and how many activation rows it saw, as llama.cpp's
//! `tools/imatrix` does. [`Imatrix::quantize`] hands the mean squares to `llama_model_quantize`
//! (`llama_model_quantize_params.imatrix`), which weighs each column's rounding error by them.
//!
//! llama-cpp-2 exposes neither the eval callback nor the imatrix parameter, so the work is done by
//! a small C++ shim (`cpp/imatrix.cpp`, built by `build.rs` against the headers of the llama.cpp
//! tree inside `llama-cpp-sys-2`) through the C API of llama.h/ggml.h only; the symbols resolve
//! against the llama.cpp library `llama-cpp-sys-2` links. The shim catches every C++ exception and
//! returns a status and a message; this module turns them into [`CalibrationError`].
//!
//! [`Imatrix::save`] and [`Imatrix::load`] write and read llama.cpp's GGUF imatrix format (the
//! files `llama-imatrix` writes: `<weight>.in_sum2` and `<weight>.counts` tensors, the calibration
//! texts in `imatrix.datasets`), so a matrix is collected once and reused, or taken from
//! llama.cpp's tools.
//!
//! ggml's backends must be loaded before [`Imatrix::collect`] (hearth's `engine::init_backend`).

use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::ptr::NonNull;

/// Why collecting or quantizing failed.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{0}")]
    Load(String),
    #[error("{0}")]
    Context(String),
    /// The text: too short for one chunk, or not tokenizable.
    #[error("{0}")]
    Text(String),
    #[error("{0}")]
    Decode(String),
    #[error("{0}")]
    Quantize(String),
    #[error("{0}")]
    Invalid(String),
    #[error("internal error in the imatrix shim: {0}")]
    Internal(String),
}

/// How to collect.
#[derive(Debug, Clone, Copy)]
pub struct CollectOptions {
    /// Tokens per chunk (a context of this size, cleared before each chunk; at most the model's
    /// training context); llama.cpp uses 512.
    pub chunk_tokens: u32,
    /// At most this many tokens are run (whole chunks); 0: the whole text.
    pub max_tokens: u64,
    pub threads: i32,
    /// Layers offloaded to a GPU (0: CPU only).
    pub gpu_layers: i32,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions { chunk_tokens: 512, max_tokens: 0, threads: 1, gpu_layers: 0 }
    }
}

/// What a collection covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub chunks: u64,
    /// Tokens run through the model (`chunks * chunk_tokens`).
    pub tokens: u64,
    /// Tokens of the whole calibration text.
    pub text_tokens: u64,
    /// Weight matrices with statistics.
    pub tensors: u64,
}

/// One weight's statistics.
#[derive(Debug, Clone, Copy)]
pub struct TensorStats<'a> {
    /// The weight (`blk.0.attn_q.weight`).
    pub name: &'a str,
    /// Sums of squared activations, `columns` per matrix (one matrix, or one per expert).
    pub sums: &'a [f32],
    /// Activation rows seen, per matrix.
    pub counts: &'a [i64],
}

impl TensorStats<'_> {
    /// Input columns of the weight.
    pub fn columns(&self) -> usize {
        self.sums.len().checked_div(self.counts.len()).unwrap_or(0)
    }
}

#[repr(C)]
struct RawImatrix {
    _private: [u8; 0],
}

#[repr(C)]
struct RawOptions {
    n_ctx: i32,
    max_tokens: i64,
    n_threads: i32,
    n_gpu_layers: i32,
}

#[repr(C)]
#[derive(Default)]
struct RawSummary {
    chunks: i64,
    tokens: i64,
    text_tokens: i64,
    tensors: i64,
}

extern "C" {
    fn hearth_imatrix_collect(
        model_path: *const c_char,
        text: *const c_char,
        text_len: usize,
        opts: *const RawOptions,
        out: *mut *mut RawImatrix,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn hearth_imatrix_summary_of(m: *const RawImatrix, out: *mut RawSummary);
    fn hearth_imatrix_entry(
        m: *const RawImatrix,
        i: usize,
        name: *mut *const c_char,
        sums: *mut *const f32,
        n_values: *mut usize,
        counts: *mut *const i64,
        n_mat: *mut usize,
    ) -> i32;
    fn hearth_imatrix_quantize(
        m: *const RawImatrix,
        input: *const c_char,
        output: *const c_char,
        ftype: i32,
        n_threads: i32,
        allow_requantize: bool,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
    fn hearth_imatrix_save(m: *const RawImatrix, path: *const c_char, dataset: *const c_char, err: *mut c_char, err_len: usize) -> i32;
    fn hearth_imatrix_load(path: *const c_char, out: *mut *mut RawImatrix, err: *mut c_char, err_len: usize) -> i32;
    fn hearth_imatrix_dataset(m: *const RawImatrix, i: usize) -> *const c_char;
    fn hearth_imatrix_free(m: *mut RawImatrix);
}

const ERR_LEN: usize = 1024;

fn error_of(status: i32, buf: &[u8]) -> CalibrationError {
    let msg = CStr::from_bytes_until_nul(buf).map_or_else(|_| String::from_utf8_lossy(buf).into_owned(), |c| c.to_string_lossy().into_owned());
    match status {
        1 => CalibrationError::Load(msg),
        2 => CalibrationError::Context(msg),
        3 => CalibrationError::Text(msg),
        4 => CalibrationError::Decode(msg),
        5 => CalibrationError::Quantize(msg),
        _ => CalibrationError::Internal(format!("status {status}: {msg}")),
    }
}

fn c_path(path: &Path) -> Result<CString, CalibrationError> {
    let s = path.to_str().ok_or_else(|| CalibrationError::Invalid(format!("{} is not UTF-8", path.display())))?;
    CString::new(s).map_err(|_| CalibrationError::Invalid(format!("{} contains a NUL byte", path.display())))
}

/// An importance matrix collected from a model and a text.
#[derive(Debug)]
pub struct Imatrix {
    raw: NonNull<RawImatrix>,
}

// SAFETY: the shim's object is plain data (maps and vectors) with no thread affinity; it is only
// read after collection, and freed once in Drop.
unsafe impl Send for Imatrix {}
// SAFETY: every method takes &self and only reads the object.
unsafe impl Sync for Imatrix {}

impl Imatrix {
    /// Run `text` through the model at `model` and collect the activation statistics.
    pub fn collect(model: &Path, text: &str, opts: &CollectOptions) -> Result<Imatrix, CalibrationError> {
        if opts.chunk_tokens < 16 {
            return Err(CalibrationError::Invalid(format!("chunks of {} tokens are too small; at least 16", opts.chunk_tokens)));
        }
        let c_model = c_path(model)?;
        let raw_opts = RawOptions {
            n_ctx: i32::try_from(opts.chunk_tokens).map_err(|_| CalibrationError::Invalid(format!("chunks of {} tokens", opts.chunk_tokens)))?,
            max_tokens: i64::try_from(opts.max_tokens).unwrap_or(i64::MAX),
            n_threads: opts.threads.max(1),
            n_gpu_layers: opts.gpu_layers,
        };
        let mut err = [0u8; ERR_LEN];
        let mut out: *mut RawImatrix = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the path is NUL-terminated, the text is
        // passed with its length, `out` and `err` are writable (err for ERR_LEN bytes).
        let status = unsafe {
            hearth_imatrix_collect(c_model.as_ptr(), text.as_ptr().cast(), text.len(), &raw_opts, &mut out, err.as_mut_ptr().cast(), ERR_LEN)
        };
        if status != 0 {
            return Err(error_of(status, &err));
        }
        NonNull::new(out).map(|raw| Imatrix { raw }).ok_or_else(|| CalibrationError::Internal("no result and no error".to_owned()))
    }

    /// Read a GGUF imatrix file. Its summary has the chunks and tokens the file records
    /// (`imatrix.chunk_count` and `chunk_size`) and no `text_tokens`.
    pub fn load(path: &Path) -> Result<Imatrix, CalibrationError> {
        let c = c_path(path)?;
        let mut err = [0u8; ERR_LEN];
        let mut out: *mut RawImatrix = std::ptr::null_mut();
        // SAFETY: the path is NUL-terminated; `out` and `err` (ERR_LEN bytes) are writable.
        let status = unsafe { hearth_imatrix_load(c.as_ptr(), &mut out, err.as_mut_ptr().cast(), ERR_LEN) };
        if status != 0 {
            return Err(error_of(status, &err));
        }
        NonNull::new(out).map(|raw| Imatrix { raw }).ok_or_else(|| CalibrationError::Internal("no result and no error".to_owned()))
    }

    /// Write the matrix as a GGUF imatrix file, naming `dataset` (the calibration text) after the
    /// datasets it already names.
    pub fn save(&self, path: &Path, dataset: &str) -> Result<(), CalibrationError> {
        let c = c_path(path)?;
        let d = CString::new(dataset).map_err(|_| CalibrationError::Invalid(format!("dataset name {dataset:?} contains a NUL byte")))?;
        let mut err = [0u8; ERR_LEN];
        // SAFETY: `raw` is live; both strings are NUL-terminated; `err` is writable for ERR_LEN.
        let status = unsafe { hearth_imatrix_save(self.raw.as_ptr(), c.as_ptr(), d.as_ptr(), err.as_mut_ptr().cast(), ERR_LEN) };
        if status != 0 {
            let _ = std::fs::remove_file(path);
            return Err(error_of(status, &err));
        }
        Ok(())
    }

    /// The calibration texts a loaded file names (`imatrix.datasets`); empty for a collected one.
    pub fn datasets(&self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            // SAFETY: `raw` is live; the shim returns NULL past the end, else a string it owns.
            let p = unsafe { hearth_imatrix_dataset(self.raw.as_ptr(), out.len()) };
            if p.is_null() {
                return out;
            }
            // SAFETY: a NUL-terminated string owned by the object, alive as long as `self`.
            out.push(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned());
        }
    }

    /// Chunks, tokens and tensors collected.
    pub fn summary(&self) -> Summary {
        let mut s = RawSummary::default();
        // SAFETY: `raw` is a live object from hearth_imatrix_collect; `s` is writable.
        unsafe { hearth_imatrix_summary_of(self.raw.as_ptr(), &mut s) };
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Summary { chunks: u(s.chunks), tokens: u(s.tokens), text_tokens: u(s.text_tokens), tensors: u(s.tensors) }
    }

    /// Every weight's statistics, in name order.
    pub fn tensors(&self) -> Vec<TensorStats<'_>> {
        let n = usize::try_from(self.summary().tensors).unwrap_or(0);
        (0..n).filter_map(|i| self.entry(i)).collect()
    }

    fn entry(&self, i: usize) -> Option<TensorStats<'_>> {
        let (mut name, mut sums, mut counts) = (std::ptr::null(), std::ptr::null(), std::ptr::null());
        let (mut n_values, mut n_mat) = (0usize, 0usize);
        // SAFETY: `raw` is live; the out-pointers are writable locals.
        let status = unsafe { hearth_imatrix_entry(self.raw.as_ptr(), i, &mut name, &mut sums, &mut n_values, &mut counts, &mut n_mat) };
        if status != 0 || name.is_null() || sums.is_null() || counts.is_null() {
            return None;
        }
        // SAFETY: the shim returns pointers into the object's own strings and vectors (of the
        // lengths it reports), which live, unchanged, as long as `self`.
        unsafe {
            Some(TensorStats {
                name: CStr::from_ptr(name).to_str().ok()?,
                sums: std::slice::from_raw_parts(sums, n_values),
                counts: std::slice::from_raw_parts(counts, n_mat),
            })
        }
    }

    /// Quantize `input` into `output` as llama.cpp's `ftype` (a `llama_ftype`), weighing each
    /// column by its mean squared activation.
    pub fn quantize(&self, input: &Path, output: &Path, ftype: llama_cpp_sys_2::llama_ftype, threads: i32, allow_requantize: bool) -> Result<(), CalibrationError> {
        let (c_in, c_out) = (c_path(input)?, c_path(output)?);
        let ftype = i32::try_from(ftype).map_err(|_| CalibrationError::Invalid(format!("llama_ftype {ftype}")))?;
        let mut err = [0u8; ERR_LEN];
        // SAFETY: `raw` is live; both paths are NUL-terminated; `err` is writable for ERR_LEN.
        let status = unsafe {
            hearth_imatrix_quantize(self.raw.as_ptr(), c_in.as_ptr(), c_out.as_ptr(), ftype, threads.max(1), allow_requantize, err.as_mut_ptr().cast(), ERR_LEN)
        };
        if status != 0 {
            let _ = std::fs::remove_file(output);
            return Err(error_of(status, &err));
        }
        Ok(())
    }
}

impl Drop for Imatrix {
    fn drop(&mut self) {
        // SAFETY: `raw` came from hearth_imatrix_collect and is freed only here.
        unsafe { hearth_imatrix_free(self.raw.as_ptr()) }
    }
}
