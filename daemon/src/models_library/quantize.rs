//! `hearth quantize SOURCE --recipe RECIPE`: quantize a library model (or a GGUF file) with a
//! recipe ([`super::recipes`]) into a new library entry that records the recipe, then measure the
//! new model against its source ([`AccuracyReport`]):
//!
//! - chat models: perplexity of both on a held-out text (`--eval-text FILE`; by default the README
//!   compiled into this binary), llama.cpp's method ([`engine::accuracy::perplexity`]);
//! - embedding models: the cosine of each text's embedding to the source's (mean and minimum), and
//!   recall@10: for each query, the share of the source model's 10 nearest passages that the
//!   quantized model also ranks in its top 10. Passages are the text's paragraphs, queries its
//!   headings (or the first sentence of every fourth paragraph when it has none).
//!
//! Calibration (`--calibration FILE`, the GPTQ-like path): the source model is run over the text
//! ([`super::calibrate`]) to collect llama.cpp's importance matrix, and the quantizer weighs each
//! weight column's rounding error by its mean squared activation. The entry's recipe records the
//! calibration file (name, sha256, tokens). `--save-imatrix OUT` keeps the matrix as llama.cpp's
//! GGUF imatrix file, and `--imatrix FILE` quantizes with such a file instead of collecting one
//! (it must be made for this model's tensors). The report then also quantizes the same recipe without
//! the matrix (a scratch file, not published) and shows three perplexities on the held-out text,
//! source, without and with the matrix (for embedding models: cosine and recall@10 of both), so
//! the gain is visible; the calibration text must differ
//! from the evaluation text, or the report would measure on the data it was calibrated with.

use std::path::{Path, PathBuf};

use engine::accuracy;
use engine::quantize::{QuantizeJob, TargetType};
use serde::Serialize;

use super::calibrate::{self, CalibrationText};
use super::recipes::Recipe;
use super::{gguf, Draft, Entry, Library, LibraryError, RecipeRecord};

/// The default held-out text: this release's README.
const DEFAULT_EVAL_TEXT: &str = include_str!("../../../README.md");

/// One quantization request.
#[derive(Debug, Clone)]
pub struct QuantizeRequest {
    /// A library name, or a GGUF file.
    pub source: String,
    pub recipe: Recipe,
    /// The new entry's name; default `<source>.<recipe>`.
    pub name: Option<String>,
    pub calibration: Option<PathBuf>,
    /// Tokens of the calibration text run through the model, at most.
    pub calibration_tokens: u64,
    /// A GGUF imatrix file to quantize with (instead of a calibration text).
    pub imatrix: Option<PathBuf>,
    /// Where to write the collected matrix (with a calibration text).
    pub save_imatrix: Option<PathBuf>,
    /// Quantize an already quantized source.
    pub allow_requantize: bool,
    /// Held-out text for the report; default: the README compiled in.
    pub eval_text: Option<PathBuf>,
    /// Perplexity chunks of 512 tokens at most.
    pub max_chunks: usize,
    /// Skip the accuracy report.
    pub no_report: bool,
    pub threads: u32,
}

/// Which measurement applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Chat,
    Embedding,
}

/// The accuracy of the new model against its source.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyReport {
    pub kind: ModelKind,
    pub eval_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<PerplexityReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerplexityReport {
    pub source: f64,
    /// The new model (with the importance matrix when calibrated).
    pub quantized: f64,
    /// (quantized - source) / source, in percent.
    pub change_percent: f64,
    /// Calibrated only: the same recipe quantized without the importance matrix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_imatrix: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_imatrix_change_percent: Option<f64>,
    pub chunks: usize,
    pub tokens: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingReport {
    pub mean_cosine: f64,
    pub min_cosine: f64,
    pub recall_at_10: f64,
    pub queries: usize,
    pub passages: usize,
    /// Calibrated only: the same recipe quantized without the importance matrix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_imatrix: Option<EmbeddingScores>,
}

/// Cosine and recall@10 of one quantized embedding model against its source.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EmbeddingScores {
    pub mean_cosine: f64,
    pub min_cosine: f64,
    pub recall_at_10: f64,
}

/// What `hearth quantize` prints.
#[derive(Debug, Clone, Serialize)]
pub struct QuantizeOutcome {
    pub entry: Entry,
    pub source: String,
    pub source_quantization: String,
    pub source_bytes: u64,
    pub seconds: f64,
    /// Quantization seconds per GB (10^9 bytes) of source.
    pub seconds_per_gb: f64,
    pub report: Option<AccuracyReport>,
}

/// Quantize, publish, measure.
pub fn run(library: &Library, req: &QuantizeRequest) -> Result<QuantizeOutcome, LibraryError> {
    if req.calibration.is_some() && req.imatrix.is_some() {
        return Err(LibraryError::Invalid("--calibration and --imatrix both give an importance matrix; pass one".to_owned()));
    }
    if req.save_imatrix.is_some() && req.calibration.is_none() {
        return Err(LibraryError::Invalid("--save-imatrix needs --calibration FILE (the text to collect the matrix from)".to_owned()));
    }
    let calibration = req.calibration.as_deref().map(calibrate::read).transpose()?;
    let (source_path, source_label) = match library.get(&req.source) {
        Ok(entry) => (library.model_path(&entry), entry.name),
        Err(LibraryError::NotFound(_)) if Path::new(&req.source).is_file() => (PathBuf::from(&req.source), req.source.clone()),
        Err(LibraryError::NotFound(n)) => {
            return Err(LibraryError::Invalid(format!("{n:?} is neither a library model nor a file")));
        }
        Err(e) => return Err(e),
    };
    let header = gguf::read(&source_path).map_err(|e| LibraryError::Invalid(e.to_string()))?;
    if header.split_count() > 1 {
        return Err(LibraryError::Invalid(format!("{source_label} is a split model; quantizing split models is not supported")));
    }
    let source_quant = header.quantization();
    let float_source = matches!(source_quant.as_str(), "F32" | "F16" | "BF16");
    if !float_source && !req.allow_requantize {
        return Err(LibraryError::Invalid(format!(
            "{source_label} is already quantized ({source_quant}); quantizing it again compounds the loss. Quantize its F16/F32 source, or pass --allow-requantize"
        )));
    }
    let kind = model_kind(&header);
    let text = match &req.eval_text {
        Some(p) => std::fs::read_to_string(p).map_err(LibraryError::io(format!("cannot read the evaluation text {}", p.display())))?,
        None => DEFAULT_EVAL_TEXT.to_owned(),
    };
    let eval_label = req.eval_text.as_ref().map_or_else(|| "README.md of this release (built in)".to_owned(), |p| p.display().to_string());
    if let Some(cal) = &calibration {
        if !req.no_report && cal.text == text {
            return Err(LibraryError::Invalid(format!(
                "--calibration {} is the evaluation text ({eval_label}); the report would measure on the text the model was calibrated with. Pass a different --eval-text (or --no-report)",
                cal.path.display()
            )));
        }
    }
    let threads = i32::try_from(if req.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get() as u32) } else { req.threads }).unwrap_or(1);
    let suffix = req.recipe.name.clone();
    let default_name = format!("{}.{suffix}", super::name_from_file(source_label.rsplit('/').next().unwrap_or(&source_label)));
    let name = req.name.clone().unwrap_or_else(|| default_name.chars().take(64).collect());
    super::check_name(&name)?;
    if library.list()?.iter().any(|e| e.name == name) {
        return Err(LibraryError::Exists(name));
    }

    let lock = library.lock()?;
    library.sweep(&lock);
    let staging = library.staging(&lock)?;
    let file = format!("{name}.gguf");
    let job = QuantizeJob {
        input: source_path.clone(),
        output: staging.path().join(&file),
        target: req.recipe.target,
        threads: req.threads,
        allow_requantize: !float_source,
    };
    let (done, calibrated) = match (&calibration, &req.imatrix) {
        (Some(cal), _) => {
            let (done, record) = quantize_calibrated(&job, Matrix::Text(cal), req, threads)?;
            (done, Some(record))
        }
        (None, Some(file)) => {
            let (done, record) = quantize_calibrated(&job, Matrix::File(file), req, threads)?;
            (done, Some(record))
        }
        (None, None) => (engine::quantize::quantize(&job).map_err(|e| LibraryError::Invalid(e.to_string()))?, None),
    };
    let recipe = RecipeRecord {
        name: req.recipe.name.clone(),
        ggml_type: req.recipe.target.name().to_owned(),
        source: source_label.clone(),
        requantized: !float_source,
        calibration: calibrated.clone(),
        seconds: done.seconds,
    };
    let draft = Draft { name, source: format!("quantize:{source_label}"), primary: file.clone(), files: vec![file], expect_sha256: None, recipe: Some(recipe) };
    let entry = library.publish(&lock, staging, draft)?;
    drop(lock);
    // The comparison model (the recipe without the matrix) is a scratch file, removed when
    // `scratch` drops.
    let scratch = if calibrated.is_some() && !req.no_report { Some(library.scratch()?) } else { None };
    let report = if req.no_report {
        None
    } else {
        let comparison = match &scratch {
            Some(dir) => {
                let plain = QuantizeJob { output: dir.path().join("without-imatrix.gguf"), ..job.clone() };
                engine::quantize::quantize(&plain).map_err(|e| LibraryError::Invalid(e.to_string()))?;
                Some(plain.output)
            }
            None => None,
        };
        let models = Models { source: &source_path, quantized: &library.model_path(&entry), without_imatrix: comparison.as_deref() };
        Some(measure(kind, &models, &text, eval_label, req.max_chunks, threads)?)
    };
    Ok(QuantizeOutcome {
        entry,
        source: source_label,
        source_quantization: source_quant,
        source_bytes: done.input_bytes,
        seconds: done.seconds,
        seconds_per_gb: done.seconds / (done.input_bytes as f64 / 1e9).max(1e-9),
        report,
    })
}

/// Where the importance matrix comes from.
enum Matrix<'a> {
    Text(&'a CalibrationText),
    File(&'a Path),
}

/// Collect the importance matrix over the calibration text (or read it), then quantize with it.
fn quantize_calibrated(job: &QuantizeJob, matrix: Matrix<'_>, req: &QuantizeRequest, threads: i32) -> Result<(engine::quantize::Quantized, calibrate::CalibrationRecord), LibraryError> {
    let started = std::time::Instant::now();
    let (imatrix, record) = match matrix {
        Matrix::Text(cal) => calibrate::collect(&job.input, cal, req.calibration_tokens, threads)?,
        Matrix::File(file) => calibrate::load(file)?,
    };
    tracing::info!(file = %record.file, tokens = record.tokens, chunks = record.chunks, tensors = record.tensors, seconds = record.seconds, "importance matrix ready");
    if let Some(out) = &req.save_imatrix {
        calibrate::save(&imatrix, out, &record)?;
    }
    let fail = |reason: String| LibraryError::Invalid(format!("quantizing {} with the importance matrix: {reason}", job.input.display()));
    let input_bytes = std::fs::metadata(&job.input).map_err(|e| fail(e.to_string()))?.len();
    imatrix.quantize(&job.input, &job.output, job.target.ftype(), threads, job.allow_requantize).map_err(|e| {
        fail(format!("{e}; an imatrix made for another model has other tensors, and llama.cpp's log above names the one that did not fit"))
    })?;
    let output_bytes = std::fs::metadata(&job.output).map_err(|e| fail(e.to_string()))?.len();
    let done = engine::quantize::Quantized { seconds: started.elapsed().as_secs_f64(), input_bytes, output_bytes };
    Ok((done, record))
}

/// Embedding models have a pooling type (or are BERT-family encoders); the rest generate.
pub fn model_kind(header: &gguf::Header) -> ModelKind {
    let arch = header.architecture().unwrap_or_default();
    let pooling = header.metadata.contains_key(&format!("{arch}.pooling_type"));
    if pooling || matches!(arch, "bert" | "nomic-bert" | "jina-bert-v2" | "t5encoder" | "modern-bert") {
        ModelKind::Embedding
    } else {
        ModelKind::Chat
    }
}

/// The models an accuracy report measures.
struct Models<'a> {
    source: &'a Path,
    quantized: &'a Path,
    /// The recipe without the importance matrix, when the new model was calibrated.
    without_imatrix: Option<&'a Path>,
}

fn measure(kind: ModelKind, models: &Models<'_>, text: &str, eval_text: String, max_chunks: usize, threads: i32) -> Result<AccuracyReport, LibraryError> {
    let err = |e: engine::quantize::QuantizeError| LibraryError::Invalid(e.to_string());
    match kind {
        ModelKind::Chat => {
            let a = accuracy::perplexity(models.source, text, 512, max_chunks, threads).map_err(err)?;
            let b = accuracy::perplexity(models.quantized, text, 512, max_chunks, threads).map_err(err)?;
            let c = models.without_imatrix.map(|p| accuracy::perplexity(p, text, 512, max_chunks, threads)).transpose().map_err(err)?;
            let perplexity = PerplexityReport {
                source: a.value,
                quantized: b.value,
                change_percent: (b.value - a.value) / a.value * 100.0,
                without_imatrix: c.map(|c| c.value),
                without_imatrix_change_percent: c.map(|c| (c.value - a.value) / a.value * 100.0),
                chunks: a.chunks,
                tokens: a.tokens,
            };
            Ok(AccuracyReport { kind, eval_text, perplexity: Some(perplexity), embedding: None })
        }
        ModelKind::Embedding => {
            let (passages, queries) = passages_and_queries(text);
            if passages.len() < 10 || queries.is_empty() {
                return Err(LibraryError::Invalid(format!(
                    "the evaluation text has {} paragraphs and {} queries; recall@10 needs at least 10 paragraphs and one query",
                    passages.len(),
                    queries.len()
                )));
            }
            let all: Vec<String> = passages.iter().chain(&queries).cloned().collect();
            let a = accuracy::embed(models.source, &all, threads).map_err(err)?;
            let b = accuracy::embed(models.quantized, &all, threads).map_err(err)?;
            let scores = embedding_scores(&a, &b, passages.len());
            let without_imatrix = match models.without_imatrix {
                Some(p) => Some(embedding_scores(&a, &accuracy::embed(p, &all, threads).map_err(err)?, passages.len())),
                None => None,
            };
            let embedding = EmbeddingReport {
                mean_cosine: scores.mean_cosine,
                min_cosine: scores.min_cosine,
                recall_at_10: scores.recall_at_10,
                queries: queries.len(),
                passages: passages.len(),
                without_imatrix,
            };
            Ok(AccuracyReport { kind, eval_text, perplexity: None, embedding: Some(embedding) })
        }
    }
}

/// Cosines of `b`'s embeddings to `a`'s, and recall@10 of `b`'s queries (the vectors after the
/// first `passages`) against `a`'s.
fn embedding_scores(a: &[Vec<f32>], b: &[Vec<f32>], passages: usize) -> EmbeddingScores {
    let cosines: Vec<f64> = a.iter().zip(b).map(|(x, y)| accuracy::cosine(x, y)).collect();
    let (pa, qa) = a.split_at(passages.min(a.len()));
    let (pb, qb) = b.split_at(passages.min(b.len()));
    let recall = qa.iter().zip(qb).map(|(q_src, q_new)| accuracy::recall(&accuracy::top_k(q_src, pa, 10), &accuracy::top_k(q_new, pb, 10))).sum::<f64>()
        / qa.len().max(1) as f64;
    EmbeddingScores {
        mean_cosine: cosines.iter().sum::<f64>() / cosines.len().max(1) as f64,
        min_cosine: cosines.iter().copied().fold(f64::INFINITY, f64::min),
        recall_at_10: recall,
    }
}

/// Paragraphs (at least 80 characters, at most 300 of them) and queries (headings, or the first
/// sentence of every fourth paragraph).
pub fn passages_and_queries(text: &str) -> (Vec<String>, Vec<String>) {
    let mut passages = Vec::new();
    let mut headings = Vec::new();
    for block in text.split("\n\n") {
        let block = block.trim();
        if let Some(h) = block.lines().next().filter(|l| l.starts_with('#')) {
            let h = h.trim_start_matches('#').trim();
            if h.len() >= 8 {
                headings.push(h.to_owned());
            }
            continue;
        }
        if block.len() >= 80 && passages.len() < 300 {
            passages.push(block.to_owned());
        }
    }
    let queries = if headings.is_empty() {
        passages.iter().step_by(4).filter_map(|p| p.split(". ").next().map(str::to_owned)).collect()
    } else {
        headings
    };
    (passages, queries)
}

/// The report as a table.
pub fn table(o: &QuantizeOutcome) -> String {
    let mut s = format!(
        "{:<34} {:<10} {:>12}\n{:<34} {:<10} {:>12}\n{:<34} {:<10} {:>12}\n",
        "model",
        "type",
        "bytes",
        o.source,
        o.source_quantization,
        o.source_bytes,
        o.entry.name,
        o.entry.quantization,
        o.entry.size
    );
    s += &format!("quantized in {:.1} s ({:.1} s per GB of source)\n", o.seconds, o.seconds_per_gb);
    if let Some(c) = o.entry.recipe.as_ref().and_then(|r| r.calibration.as_ref()) {
        let what = match c.input {
            calibrate::CalibrationInput::Text => "calibrated on",
            calibrate::CalibrationInput::Imatrix => "importance matrix from",
        };
        s += &format!("{what} {} (sha256 {}): {} tokens in {} chunks, {} weight matrices, {:.1} s\n", c.file, c.sha256, c.tokens, c.chunks, c.tensors, c.seconds);
    }
    if let Some(r) = &o.report {
        s += &format!("evaluation text: {}\n", r.eval_text);
        if let Some(p) = &r.perplexity {
            s += &format!("{:<22} {:>10} {:>9}\n{:<22} {:>10.3}\n", "perplexity", "value", "change", "source", p.source);
            if let (Some(w), Some(c)) = (p.without_imatrix, p.without_imatrix_change_percent) {
                s += &format!("{:<22} {:>10.3} {:>+8.2}%\n", "quantized, no imatrix", w, c);
                s += &format!("{:<22} {:>10.3} {:>+8.2}%\n", "quantized, imatrix", p.quantized, p.change_percent);
            } else {
                s += &format!("{:<22} {:>10.3} {:>+8.2}%\n", "quantized", p.quantized, p.change_percent);
            }
            s += &format!("({} chunks of 512 tokens, {} tokens scored)\n", p.chunks, p.tokens);
        }
        if let Some(e) = &r.embedding {
            match &e.without_imatrix {
                None => {
                    s += &format!(
                        "{:<22} {:>8}\n{:<22} {:>8.4}\n{:<22} {:>8.4}\n{:<22} {:>8.3}\n",
                        "embedding", "value", "mean cosine", e.mean_cosine, "min cosine", e.min_cosine, "recall@10", e.recall_at_10
                    );
                }
                Some(w) => {
                    s += &format!(
                        "{:<22} {:>10} {:>10}\n{:<22} {:>10.4} {:>10.4}\n{:<22} {:>10.4} {:>10.4}\n{:<22} {:>10.3} {:>10.3}\n",
                        "embedding",
                        "no imatrix",
                        "imatrix",
                        "mean cosine",
                        w.mean_cosine,
                        e.mean_cosine,
                        "min cosine",
                        w.min_cosine,
                        e.min_cosine,
                        "recall@10",
                        w.recall_at_10,
                        e.recall_at_10
                    );
                }
            }
            s += &format!("({} passages, {} queries)\n", e.passages, e.queries);
        }
    }
    s
}

/// Every target type, for `--help`.
pub fn target_names() -> Vec<&'static str> {
    [TargetType::F16, TargetType::Q8_0, TargetType::Q6K, TargetType::Q5KM, TargetType::Q4KM, TargetType::Q4KS, TargetType::Q4_0, TargetType::Q3KS, TargetType::Q2K]
        .iter()
        .map(|t| t.name())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_gives_passages_and_queries() {
        let (p, q) = passages_and_queries(DEFAULT_EVAL_TEXT);
        assert!(p.len() >= 50, "{} passages", p.len());
        assert!(q.len() >= 10, "{} queries", q.len());
        let (p, q) = passages_and_queries(&"A sentence that is long enough to count as a paragraph here. Another one follows it.\n\n".repeat(8));
        assert_eq!((p.len(), q.len()), (8, 2));
    }
}
