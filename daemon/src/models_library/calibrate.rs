//! The calibration text of `hearth quantize --calibration FILE`: read and checked here (a size
//! limit, plain UTF-8 text, not empty, not the evaluation text), then run through the source model
//! by the `calibration` crate, which collects llama.cpp's importance matrix (the sums of squared
//! activations of every layer's matrix multiplications) for the quantizer. `--save-imatrix OUT`
//! keeps the matrix as a GGUF imatrix file; `--imatrix FILE` uses one (hearth's or
//! `llama-imatrix`'s) instead of a text.
//!
//! Budgets: the file may hold at most [`MAX_CALIBRATION_BYTES`]; at most `max_tokens` tokens of it
//! are run, in chunks of [`CHUNK_TOKENS`] (llama.cpp's default), so a large file costs its
//! tokenization and no more.

use std::path::{Path, PathBuf};

use calibration::{CollectOptions, Imatrix};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::LibraryError;

/// The largest calibration file read.
pub const MAX_CALIBRATION_BYTES: u64 = 64 << 20;
/// Tokens per chunk, each decoded from an empty cache.
pub const CHUNK_TOKENS: u32 = 512;

/// A checked calibration text.
#[derive(Debug, Clone)]
pub struct CalibrationText {
    pub path: PathBuf,
    pub text: String,
    pub sha256: String,
}

/// Where the importance matrix came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationInput {
    /// Collected from a calibration text (`--calibration`).
    Text,
    /// Read from a GGUF imatrix file (`--imatrix`).
    Imatrix,
}

/// What the library records of a calibration (in the entry's recipe).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationRecord {
    pub input: CalibrationInput,
    /// The calibration text's (or imatrix file's) name, without its directory.
    pub file: String,
    pub sha256: String,
    /// Tokens run through the model, in `chunks` chunks.
    pub tokens: u64,
    pub chunks: u64,
    /// Weight matrices the importance matrix covers.
    pub tensors: u64,
    /// Seconds the collection (or the reading of the imatrix file) took.
    pub seconds: f64,
    /// The calibration texts an imatrix file names (`imatrix.datasets`); for a text, its name.
    #[serde(default)]
    pub datasets: Vec<String>,
}

/// Read `path` as a calibration text.
pub fn read(path: &Path) -> Result<CalibrationText, LibraryError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| LibraryError::Invalid(format!("--calibration {shown}: cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(LibraryError::Invalid(format!("--calibration {shown}: not a file")));
    }
    if meta.len() > MAX_CALIBRATION_BYTES {
        return Err(LibraryError::Invalid(format!(
            "--calibration {shown}: {} bytes; the limit is {} MiB (a few hundred KB of representative text is plenty: at most --calibration-tokens are used)",
            meta.len(),
            MAX_CALIBRATION_BYTES >> 20
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| LibraryError::Invalid(format!("--calibration {shown}: cannot read it: {e}")))?;
    check_text(&bytes).map_err(|why| LibraryError::Invalid(format!("--calibration {shown}: {why}")))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let text = String::from_utf8(bytes).map_err(|e| LibraryError::Invalid(format!("--calibration {shown}: {e}")))?;
    Ok(CalibrationText { path: path.to_owned(), text, sha256 })
}

/// Plain text: UTF-8, no NUL bytes, not empty.
fn check_text(bytes: &[u8]) -> Result<(), String> {
    if let Some(at) = bytes.iter().position(|b| *b == 0) {
        return Err(format!("binary data (a NUL byte at offset {at}); calibration needs a plain UTF-8 text file"));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(format!("not UTF-8 text (invalid byte at offset {}); calibration needs a plain UTF-8 text file", e.valid_up_to()));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty; calibration needs text representative of what the model will see".to_owned());
    }
    Ok(())
}

/// Collect the importance matrix of the model at `model` over at most `max_tokens` tokens.
pub fn collect(model: &Path, cal: &CalibrationText, max_tokens: u64, threads: i32) -> Result<(Imatrix, CalibrationRecord), LibraryError> {
    let started = std::time::Instant::now();
    let opts = CollectOptions { chunk_tokens: CHUNK_TOKENS, max_tokens, threads, gpu_layers: 0 };
    let imatrix = Imatrix::collect(model, &cal.text, &opts).map_err(|e| match e {
        calibration::CalibrationError::Text(why) => LibraryError::Invalid(format!(
            "--calibration {}: {why}; give a longer text (or a larger --calibration-tokens)",
            cal.path.display()
        )),
        other => LibraryError::Invalid(format!("calibrating {} on {}: {other}", model.display(), cal.path.display())),
    })?;
    let s = imatrix.summary();
    if s.tensors == 0 {
        return Err(LibraryError::Invalid(format!("calibrating {}: no layer weight saw an activation (not a transformer with blk.N weights?)", model.display())));
    }
    let file = cal.path.file_name().map_or_else(|| cal.path.display().to_string(), |f| f.to_string_lossy().into_owned());
    let record = CalibrationRecord {
        input: CalibrationInput::Text,
        file: file.clone(),
        sha256: cal.sha256.clone(),
        tokens: s.tokens,
        chunks: s.chunks,
        tensors: s.tensors,
        seconds: started.elapsed().as_secs_f64(),
        datasets: vec![file],
    };
    Ok((imatrix, record))
}

/// Read a GGUF imatrix file (`--imatrix FILE`).
pub fn load(path: &Path) -> Result<(Imatrix, CalibrationRecord), LibraryError> {
    let started = std::time::Instant::now();
    let shown = path.display();
    if !path.is_file() {
        return Err(LibraryError::Invalid(format!("--imatrix {shown}: no such file")));
    }
    let (_, sha256) = super::hash_file(path)?;
    let imatrix = Imatrix::load(path).map_err(|e| LibraryError::Invalid(format!("--imatrix {shown}: {e}")))?;
    let s = imatrix.summary();
    let file = path.file_name().map_or_else(|| shown.to_string(), |f| f.to_string_lossy().into_owned());
    let record = CalibrationRecord {
        input: CalibrationInput::Imatrix,
        file,
        sha256,
        tokens: s.tokens,
        chunks: s.chunks,
        tensors: s.tensors,
        seconds: started.elapsed().as_secs_f64(),
        datasets: imatrix.datasets(),
    };
    Ok((imatrix, record))
}

/// Write the matrix to `path` (`--save-imatrix`), naming the calibration text.
pub fn save(imatrix: &Imatrix, path: &Path, record: &CalibrationRecord) -> Result<(), LibraryError> {
    imatrix.save(path, &record.file).map_err(|e| LibraryError::Invalid(format!("--save-imatrix {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_empty_and_missing_files_are_refused() {
        assert!(check_text(b"Some calibration text.\n").is_ok());
        assert!(check_text(b"abc\0def").is_err_and(|e| e.contains("NUL byte at offset 3")));
        assert!(check_text(&[b'a', 0xff, 0xfe]).is_err_and(|e| e.contains("not UTF-8") && e.contains("offset 1")));
        assert!(check_text(b" \n\t\n").is_err_and(|e| e.contains("empty")));
        assert!(check_text(b"").is_err_and(|e| e.contains("empty")));
        let e = read(Path::new("/nonexistent/cal.txt")).map(|_| ()).map_err(|e| e.to_string());
        assert!(e.as_ref().is_err_and(|e| e.contains("/nonexistent/cal.txt") && e.contains("cannot read")), "{e:?}");
    }
}
