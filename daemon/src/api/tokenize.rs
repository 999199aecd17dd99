//! `POST /tokenize` and `POST /detokenize`, in the shapes llama.cpp's server and vLLM answer.
//!
//! `/tokenize`: a model's token ids for a text (`{"tokens": [...], "count": N}`), so load
//! generators such as `hearth bench` can size prompts exactly. The text is `content` (llama.cpp)
//! or `prompt` (vLLM); `add_special` (or `add_special_tokens`) adds the model's BOS.
//!
//! `/detokenize`: the text of token ids (`{"tokens": [...]}` → `{"content": "..."}`), special
//! tokens written as their text, as llama.cpp's server does; an id outside the vocabulary is a
//! 400 that names its index. Both take `model` (default: the first configured model), which must
//! be local: a remote model's vocabulary is its upstream's.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::{parse_json, Body};
use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use super::types::tokens::{Detokenized, Tokens};
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::post("/tokenize", Scope::Infer, BodyKind::Json), tokenize);
    r.add(Route::post("/detokenize", Scope::Infer, BodyKind::Json), detokenize);
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct TokenizeRequest {
    model: Option<String>,
    content: Option<String>,
    prompt: Option<String>,
    add_special: Option<bool>,
    add_special_tokens: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct DetokenizeRequest {
    model: Option<String>,
    /// Token ids of the model's vocabulary.
    tokens: Vec<i64>,
}

/// The engine of `model` (or of the first configured model), which must be local.
/// A model that is not loaded loads first (as for a generation).
async fn local_engine(state: &AppState, model: Option<&str>, verb: &str) -> Result<engine::Engine, ApiError> {
    let models = state.models()?;
    let name = match model {
        Some(name) => name,
        None => models.all().first().ok_or_else(|| ApiError::ModelNotFound(String::new()))?.name(),
    };
    let backend = models.acquire(name).await?;
    backend.as_local().cloned().ok_or_else(|| {
        ApiError::invalid("model", format!("`{}` is a remote model; ask its upstream to {verb}", backend.name()))
    })
}

async fn tokenize(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let request: TokenizeRequest = parse_json(body, &state)?;
    let engine = local_engine(&state, request.model.as_deref(), "tokenize").await?;
    let text = request.content.or(request.prompt).ok_or_else(|| ApiError::invalid("content", "`content` (or `prompt`) is required"))?;
    let add_special = request.add_special.or(request.add_special_tokens).unwrap_or(false);
    let tokens = engine.tokenize(&text, add_special);
    Ok(HttpResponse::Ok().json(Tokens { count: tokens.len(), tokens, max_model_len: engine.info().max_model_len }))
}

async fn detokenize(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let request: DetokenizeRequest = parse_json(body, &state)?;
    let engine = local_engine(&state, request.model.as_deref(), "detokenize").await?;
    let n_vocab = engine.info().n_vocab;
    let out_of_vocabulary = |index: usize| {
        let token = request.tokens.get(index).copied().unwrap_or_default();
        ApiError::invalid(&format!("tokens[{index}]"), format!("tokens[{index}] = {token} is outside the vocabulary 0..{n_vocab}"))
    };
    let ids = request
        .tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| i32::try_from(t).map_err(|_| out_of_vocabulary(i)))
        .collect::<Result<Vec<i32>, _>>()?;
    let content = engine.detokenize(&ids).map_err(out_of_vocabulary)?;
    Ok(HttpResponse::Ok().json(Detokenized { content }))
}
