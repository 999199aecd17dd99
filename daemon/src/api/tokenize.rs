//! `POST /tokenize`: a model's token ids for a text, in the shape llama.cpp's server and vLLM
//! answer (`{"tokens": [...], "count": N}`), so load generators such as `hearth bench` can size
//! prompts exactly. The text is `content` (llama.cpp) or `prompt` (vLLM); `add_special` (or
//! `add_special_tokens`) adds the model's BOS; `model` defaults to the first configured model.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{parse_json, Body};
use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::post("/tokenize", Scope::Infer, BodyKind::Json), tokenize);
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct TokenizeRequest {
    model: Option<String>,
    content: Option<String>,
    prompt: Option<String>,
    add_special: Option<bool>,
    add_special_tokens: Option<bool>,
}

async fn tokenize(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let request: TokenizeRequest = parse_json(body, &state)?;
    let models = state.models()?;
    let backend = match &request.model {
        Some(name) => models.get(name)?,
        None => models.all().first().ok_or_else(|| ApiError::ModelNotFound(String::new()))?,
    };
    let engine = backend.as_local().ok_or_else(|| {
        ApiError::invalid("model", format!("`{}` is a remote model; ask its upstream to tokenize", backend.name()))
    })?;
    let text = request.content.or(request.prompt).ok_or_else(|| ApiError::invalid("content", "`content` (or `prompt`) is required"))?;
    let add_special = request.add_special.or(request.add_special_tokens).unwrap_or(false);
    let tokens = engine.tokenize(&text, add_special);
    Ok(HttpResponse::Ok().json(json!({"count": tokens.len(), "tokens": tokens, "max_model_len": engine.info().max_model_len})))
}
