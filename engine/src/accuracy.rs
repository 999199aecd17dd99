//! Accuracy of a quantized model against its source, measured with the model files alone (no
//! engine thread): `hearth quantize` runs these after quantizing.
//!
//! - [`perplexity`]: llama.cpp's `llama-perplexity` method. The text is tokenized once and cut into
//!   chunks of `n_ctx` tokens; each chunk is decoded from an empty cache and the negative
//!   log-likelihood of its second half's next tokens is averaged (the first half is context, so
//!   every scored token sees at least `n_ctx / 2` tokens). Perplexity is `exp` of the mean.
//! - [`embed`]: mean-pooled, L2-normalised embeddings, one text a sequence, as the embedding
//!   engine computes them, so the cosine of a quantized model's vector to the source's and the
//!   overlap of their top-10 neighbours can be compared.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::quantize::QuantizeError;

/// A perplexity measurement.
#[derive(Debug, Clone, Copy)]
pub struct Perplexity {
    pub value: f64,
    /// Tokens scored.
    pub tokens: usize,
    pub chunks: usize,
}

fn load(path: &Path) -> Result<LlamaModel, QuantizeError> {
    let backend = crate::backend::backend().map_err(|e| measure(path, e.to_string()))?;
    LlamaModel::load_from_file(backend, path, &LlamaModelParams::default().with_n_gpu_layers(0))
        .map_err(|e| measure(path, format!("cannot load the model: {e}")))
}

fn measure(path: &Path, reason: String) -> QuantizeError {
    QuantizeError::Measure { path: PathBuf::from(path), reason }
}

/// Perplexity of the model at `path` on `text`, over at most `max_chunks` chunks of `n_ctx` tokens.
pub fn perplexity(path: &Path, text: &str, n_ctx: u32, max_chunks: usize, threads: i32) -> Result<Perplexity, QuantizeError> {
    let model = load(path)?;
    let n_ctx = n_ctx.clamp(16, model.n_ctx_train().max(16));
    let tokens = model.vocab().tokenize(text.as_bytes(), true, false);
    let chunk = n_ctx as usize;
    let chunks = (tokens.len() / chunk).min(max_chunks);
    if chunks == 0 {
        return Err(measure(path, format!("the text has {} tokens; at least {chunk} are needed for one chunk", tokens.len())));
    }
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let backend = crate::backend::backend().map_err(|e| measure(path, e.to_string()))?;
    let mut ctx = model.new_context(backend, params).map_err(|e| measure(path, e.to_string()))?;
    let mut batch = LlamaBatch::new(chunk, 1);
    let n_vocab = usize::try_from(model.n_vocab()).unwrap_or(0);
    let first_scored = chunk / 2;
    let mut nll = 0.0f64;
    let mut scored = 0usize;
    for c in 0..chunks {
        let part = &tokens[c * chunk..(c + 1) * chunk];
        batch.clear();
        for (pos, &t) in part.iter().enumerate() {
            batch.add(t, pos as i32, &[0], pos >= first_scored - 1).map_err(|e| measure(path, e.to_string()))?;
        }
        ctx.clear_kv_cache();
        ctx.decode(&mut batch).map_err(|e| measure(path, e.to_string()))?;
        for pos in first_scored - 1..chunk - 1 {
            let logits = ctx.get_logits_ith(pos as i32);
            if logits.len() < n_vocab {
                return Err(measure(path, "the context returned fewer logits than the vocabulary".into()));
            }
            let LlamaToken(next) = part[pos + 1];
            nll += negative_log_likelihood(&logits[..n_vocab], usize::try_from(next).unwrap_or(0));
            scored += 1;
        }
    }
    Ok(Perplexity { value: (nll / scored as f64).exp(), tokens: scored, chunks })
}

/// `-log softmax(logits)[target]`, computed stably.
fn negative_log_likelihood(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let at = logits.get(target).copied().unwrap_or(f32::NEG_INFINITY) as f64;
    -(at - max - sum.ln())
}

/// Mean-pooled, L2-normalised embeddings of `texts` (each truncated to the model's context).
pub fn embed(path: &Path, texts: &[String], threads: i32) -> Result<Vec<Vec<f32>>, QuantizeError> {
    let model = load(path)?;
    let n_ctx = model.n_ctx_train().clamp(16, 2048);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_embeddings(true)
        .with_pooling_type(LlamaPoolingType::Mean)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let backend = crate::backend::backend().map_err(|e| measure(path, e.to_string()))?;
    let mut ctx = model.new_context(backend, params).map_err(|e| measure(path, e.to_string()))?;
    let mut batch = LlamaBatch::new(n_ctx as usize, 1);
    let mut out = Vec::with_capacity(texts.len());
    for text in texts {
        let mut tokens = model.vocab().tokenize(text.as_bytes(), true, false);
        tokens.truncate(n_ctx as usize);
        batch.clear();
        for (pos, &t) in tokens.iter().enumerate() {
            batch.add(t, pos as i32, &[0], true).map_err(|e| measure(path, e.to_string()))?;
        }
        ctx.clear_kv_cache();
        ctx.decode(&mut batch).map_err(|e| measure(path, e.to_string()))?;
        let v = ctx.embeddings_seq_ith(0).map_err(|e| measure(path, e.to_string()))?;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        out.push(v.iter().map(|x| x / norm).collect());
    }
    Ok(out)
}

/// Cosine of two L2-normalised vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

/// Indices of the `k` passages closest to `query` (all normalised), best first.
pub fn top_k(query: &[f32], passages: &[Vec<f32>], k: usize) -> Vec<usize> {
    let mut scored: Vec<(usize, f64)> = passages.iter().enumerate().map(|(i, p)| (i, cosine(query, p))).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.into_iter().take(k).map(|(i, _)| i).collect()
}

/// Of `expected`, the share found in `got`.
pub fn recall(expected: &[usize], got: &[usize]) -> f64 {
    if expected.is_empty() {
        return 1.0;
    }
    expected.iter().filter(|e| got.contains(e)).count() as f64 / expected.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_of_a_uniform_distribution_is_log_n() {
        let logits = vec![0.5f32; 8];
        assert!((negative_log_likelihood(&logits, 3) - 8f64.ln()).abs() < 1e-9);
        let sharp = [0.0f32, 100.0, 0.0];
        assert!(negative_log_likelihood(&sharp, 1) < 1e-9);
        assert!(negative_log_likelihood(&sharp, 0) > 99.0);
    }

    #[test]
    fn neighbours_and_recall() {
        let passages = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.6, 0.8]];
        assert_eq!(top_k(&[1.0, 0.0], &passages, 2), vec![0, 2]);
        assert_eq!(recall(&[0, 2], &[2, 1]), 0.5);
        assert!((cosine(&[0.6, 0.8], &[0.6, 0.8]) - 1.0).abs() < 1e-6);
    }
}
