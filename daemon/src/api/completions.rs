//! `POST /v1/completions` (the legacy text API), streamed or not.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::logprobs::LogprobShape;
use super::sse::{self, ChunkShape};
use super::{accepted, fields, held, parse_body, Body};
use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use crate::error::ApiError;
use super::types::completions::{self as answer, ChunkChoice, TextChoice, TextChunkChoice, TextCompletion, Usage};
use crate::service::generate::{self, GenerationParams, Prompt};
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::post("/v1/completions", Scope::Infer, BodyKind::Json), create);
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct CompletionRequest {
    prompt: PromptIn,
}

/// `prompt`: a string, a one-string list, or token ids.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = Prompt)]
enum PromptIn {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i64>),
}

const CHUNKS: ChunkShape = ChunkShape {
    object: "text_completion",
    opening: None,
    choice: |text, finish| {
        ChunkChoice::Text(TextChunkChoice { index: 0, text: text.unwrap_or("").to_owned(), logprobs: Value::Null, finish_reason: finish.map(str::to_owned) })
    },
    logprobs: LogprobShape::Completion,
    tool_call: None,
};

async fn create(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let body = parse_body(body, &state)?;
    accepted::check(&body, accepted::Endpoint::Completions)?;
    let request: CompletionRequest = fields(&body)?;
    let params = GenerationParams::from_body(&body)?;
    let prompt = to_prompt(request.prompt)?;
    let generation = generate::start(&state, &params, prompt, "cmpl").await?;
    if generation.stream {
        return Ok(sse::respond(generation, CHUNKS));
    }
    let (id, created, model, logprobs) = (generation.id.clone(), generation.created, generation.model.clone(), generation.logprobs);
    Ok(held::json_when_done(async move {
        let done = generation.collect().await?;
        let choice = TextChoice { index: 0, text: done.text, logprobs: LogprobShape::Completion.answer(logprobs, &done.logprobs), finish_reason: done.reason.as_str() };
        answer::to_json(&TextCompletion { id, object: "text_completion", created, model, choices: vec![choice], usage: Usage::from(&done.usage) })
    })
    .await)
}

fn to_prompt(prompt: PromptIn) -> Result<Prompt, ApiError> {
    let empty = || ApiError::invalid("prompt", "prompt must not be empty");
    match prompt {
        PromptIn::Text(text) if text.is_empty() => Err(empty()),
        PromptIn::Text(text) => Ok(Prompt::Text(text)),
        PromptIn::Texts(mut texts) => match texts.len() {
            1 if !texts[0].is_empty() => Ok(Prompt::Text(texts.remove(0))),
            0 | 1 => Err(empty()),
            n => Err(ApiError::invalid("prompt", format!("one prompt per request is supported, got {n}"))),
        },
        PromptIn::Tokens(tokens) if tokens.is_empty() => Err(empty()),
        PromptIn::Tokens(tokens) => tokens
            .into_iter()
            .map(|t| i32::try_from(t).map_err(|_| ApiError::invalid("prompt", format!("token id {t} is out of range"))))
            .collect::<Result<_, _>>()
            .map(Prompt::Tokens),
    }
}
