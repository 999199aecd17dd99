//! Embeddings: validating OpenAI's input forms and `encoding_format`, and computing them on the
//! model's backend (local: tokenized and embedded here; remote: forwarded). The answer is the
//! domain [`Embeddings`]; the HTTP edge writes the vectors as floats or base64
//! (`api::types::embeddings`).

use serde::Deserialize;
use tracing::Instrument;

use crate::fault::ServiceError;
use crate::provider::EmbedInput;
use crate::state::AppState;

/// The body of `POST /v1/embeddings`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[schema(pattern = "^(float|base64)$")]
    pub encoding_format: Option<String>,
    pub dimensions: Option<i64>,
    pub user: Option<String>,
}

/// `input`: a string, strings, a token list or token lists.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

/// Computed embeddings, one vector per input in input order, and how the client asked for them
/// to be written (the HTTP edge encodes them: `api::types::EmbeddingList`).
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
    pub encoding: Encoding,
}

/// `encoding_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A list of numbers (the default).
    Float,
    /// Little-endian f32 bytes as base64, what the openai SDK asks for by default.
    Base64,
}

/// Compute embeddings.
pub async fn embeddings(state: &AppState, request: EmbeddingsRequest) -> Result<Embeddings, ServiceError> {
    let arrived = std::time::Instant::now();
    let backend = state.models()?.acquire(&request.model).await?;
    let encoding = match request.encoding_format.as_deref() {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(ServiceError::invalid("encoding_format", format!("encoding_format must be \"float\" or \"base64\", got {other:?}")))
        }
    };
    let input = checked_input(request.input, state.settings().limits.max_embedding_inputs)?;
    let input = crate::library::embed_limits::tokenized(&backend, input, state.settings().limits.max_embedding_tokens_per_request).await?;
    let _api_share = api_permit(state, &request.model)?;
    let span = tracing::info_span!("embeddings", model = %request.model, provider = backend.provider(), inputs = input.len());
    let embedded = backend.embed(input, request.dimensions).instrument(span).await?;
    state.metrics().embedding(&request.model, embedded.prompt_tokens, arrived.elapsed());
    Ok(Embeddings { model: request.model, vectors: embedded.vectors, prompt_tokens: embedded.prompt_tokens, encoding })
}

/// OpenAI's four input forms as texts or token lists: at least one input and at most `limit`,
/// none empty, token ids non-negative.
fn checked_input(input: EmbeddingInput, limit: usize) -> Result<EmbedInput, ServiceError> {
    let input = match input {
        EmbeddingInput::Text(text) => EmbedInput::Texts(vec![text]),
        EmbeddingInput::Texts(texts) => EmbedInput::Texts(texts),
        EmbeddingInput::Tokens(tokens) => EmbedInput::Tokens(vec![tokens]),
        EmbeddingInput::TokenLists(lists) => EmbedInput::Tokens(lists),
    };
    if input.is_empty() {
        return Err(ServiceError::invalid("input", "input must not be empty"));
    }
    if input.len() > limit {
        return Err(ServiceError::invalid("input", format!("at most {limit} inputs per request (limits.max_embedding_inputs), got {}", input.len())));
    }
    match &input {
        EmbedInput::Texts(texts) => {
            if let Some(i) = texts.iter().position(String::is_empty) {
                return Err(ServiceError::invalid("input", format!("input[{i}] is an empty string")));
            }
        }
        EmbedInput::Tokens(lists) => {
            if let Some(i) = lists.iter().position(Vec::is_empty) {
                return Err(ServiceError::invalid("input", format!("input[{i}] has no tokens")));
            }
            if let Some(t) = lists.iter().flatten().find(|&&t| t < 0) {
                return Err(ServiceError::invalid("input", format!("token id {t} is negative")));
            }
        }
    }
    Ok(input)
}

/// A permit within the API's share of `model`'s admission (`Busy`, a 429, when it is used up),
/// held until the request is answered; `None` before the store has opened or for a model without
/// a pool.
fn api_permit(state: &AppState, model: &str) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ServiceError> {
    match state.library() {
        Ok(library) => library.api_embed_permit(model),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_form_is_checked_the_same_way() {
        let texts = |t: &[&str]| EmbeddingInput::Texts(t.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(checked_input(EmbeddingInput::Text("a".into()), 4).ok(), Some(EmbedInput::Texts(vec!["a".into()])));
        assert!(checked_input(texts(&[]), 4).is_err_and(|e| e.to_string().contains("must not be empty")));
        assert!(checked_input(texts(&["a", "b", "c"]), 2).is_err_and(|e| e.to_string().contains("at most 2")));
        assert!(checked_input(texts(&["a", ""]), 4).is_err_and(|e| e.to_string().contains("input[1] is an empty string")));
        assert!(checked_input(EmbeddingInput::TokenLists(vec![vec![1], vec![]]), 4).is_err_and(|e| e.to_string().contains("input[1]")));
        assert!(checked_input(EmbeddingInput::Tokens(vec![3, -1]), 4).is_err_and(|e| e.to_string().contains("negative")));
    }
}
