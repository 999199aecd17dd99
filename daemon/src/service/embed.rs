//! Embeddings: validating OpenAI's input forms, tokenizing, and encoding the vectors as floats or
//! base64 (little-endian f32, what the openai SDK asks for by default).

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::AppState;

/// The body of `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    pub encoding_format: Option<String>,
    pub dimensions: Option<i64>,
    pub user: Option<String>,
}

/// `input`: a string, strings, a token list or token lists.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

/// Compute embeddings and build OpenAI's response body.
pub async fn embeddings(state: &AppState, request: EmbeddingsRequest) -> Result<Value, ApiError> {
    let arrived = std::time::Instant::now();
    let engine = state.models()?.get(&request.model)?.clone();
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid("encoding_format", format!("encoding_format must be \"float\" or \"base64\", got {other:?}")))
        }
    };
    let n_embd = engine.info().n_embd;
    if let Some(d) = request.dimensions {
        if d != i64::from(n_embd) {
            return Err(ApiError::invalid("dimensions", format!("this model returns {n_embd} dimensions and cannot return {d}")));
        }
    }
    let n_vocab = i64::from(engine.info().n_vocab);
    let to_ids = |tokens: Vec<i64>| -> Result<Vec<i32>, ApiError> {
        tokens
            .into_iter()
            .map(|t| {
                if (0..n_vocab).contains(&t) {
                    Ok(t as i32)
                } else {
                    Err(ApiError::invalid("input", format!("token id {t} is outside the vocabulary 0..{n_vocab}")))
                }
            })
            .collect()
    };
    let inputs: Vec<Vec<i32>> = match request.input {
        EmbeddingInput::Text(text) => vec![tokenize_text(&engine, 0, &text)?],
        EmbeddingInput::Texts(texts) => {
            texts.iter().enumerate().map(|(i, t)| tokenize_text(&engine, i, t)).collect::<Result<_, _>>()?
        }
        EmbeddingInput::Tokens(tokens) => vec![to_ids(tokens)?],
        EmbeddingInput::TokenLists(lists) => lists.into_iter().map(to_ids).collect::<Result<_, _>>()?,
    };
    let limit = state.settings().limits.max_embedding_inputs;
    if inputs.is_empty() {
        return Err(ApiError::invalid("input", "input must not be empty"));
    }
    if inputs.len() > limit {
        return Err(ApiError::invalid("input", format!("at most {limit} inputs per request, got {}", inputs.len())));
    }
    if let Some(i) = inputs.iter().position(Vec::is_empty) {
        return Err(ApiError::invalid("input", format!("input[{i}] has no tokens")));
    }
    let prompt_tokens: usize = inputs.iter().map(Vec::len).sum();
    let span = tracing::info_span!("embeddings", model = %request.model, inputs = inputs.len());
    let vectors = engine.embed(inputs).instrument(span).await?;
    state.metrics().embedding(&request.model, prompt_tokens, arrived.elapsed());
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 { Value::String(encode_base64(v)) } else { json!(v) };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
}

fn tokenize_text(engine: &engine::Engine, index: usize, text: &str) -> Result<Vec<i32>, ApiError> {
    if text.is_empty() {
        return Err(ApiError::invalid("input", format!("input[{index}] is an empty string")));
    }
    Ok(engine.tokenize(text, true))
}

fn encode_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
