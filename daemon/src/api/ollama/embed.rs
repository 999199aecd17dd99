//! `POST /api/embed` (`input`: a string or strings) and the legacy `POST /api/embeddings` (one
//! `prompt`): the OpenAI embeddings service ([`embed::embeddings`]) with Ollama's field names and
//! answers. Vectors are L2-normalised, as Ollama's are. Ollama truncates a long input by default;
//! hearth refuses it with a 400 that says so (`truncate` is accepted).

use std::time::Instant;

use actix_web::{web, HttpResponse};
use serde_json::Value;

use super::types::{EmbedRequest, EmbedResponse, EmbeddingResponse, EmbeddingsRequest};
use super::{resolve, OllamaError};
use crate::api::{parse_json, Body};
use crate::error::ApiError;
use crate::service::embed::{self, EmbeddingInput, EmbeddingsRequest as OpenAiRequest};
use crate::state::AppState;

pub(super) async fn embed(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, OllamaError> {
    let arrived = Instant::now();
    let request: EmbedRequest = parse_json(body, &state)?;
    let input = match request.input {
        Value::String(text) => EmbeddingInput::Texts(vec![text]),
        Value::Array(items) => EmbeddingInput::Texts(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(text) => Ok(text),
                    other => Err(ApiError::invalid(&format!("input[{i}]"), format!("input[{i}] must be a string, got {other}"))),
                })
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(ApiError::invalid("input", format!("input must be a string or a list of strings, got {other}")).into()),
    };
    let (vectors, prompt_tokens) = run(&state, &request.model, input, request.dimensions).await?;
    Ok(HttpResponse::Ok().json(EmbedResponse {
        model: request.model,
        embeddings: vectors,
        total_duration: super::nanos(arrived.elapsed()),
        load_duration: 0,
        prompt_eval_count: prompt_tokens,
    }))
}

pub(super) async fn embeddings(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, OllamaError> {
    let request: EmbeddingsRequest = parse_json(body, &state)?;
    let (mut vectors, _) = run(&state, &request.model, EmbeddingInput::Text(request.prompt), None).await?;
    Ok(HttpResponse::Ok().json(EmbeddingResponse { embedding: vectors.pop().unwrap_or_default() }))
}

/// Embed through the OpenAI service; the vectors and the prompt tokens.
async fn run(state: &AppState, model: &str, input: EmbeddingInput, dimensions: Option<i64>) -> Result<(Vec<Vec<f32>>, u64), ApiError> {
    let backend = resolve(state, model)?;
    let request = OpenAiRequest { model: backend.name().to_owned(), input, encoding_format: None, dimensions, user: None };
    let answer = embed::embeddings(state, request).await?;
    Ok((answer.vectors, answer.prompt_tokens as u64))
}
