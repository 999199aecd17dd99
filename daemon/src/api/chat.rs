//! `POST /v1/chat/completions`, streamed or not.

use actix_web::{web, HttpResponse};
use engine::ChatMessage;
use serde::Deserialize;
use serde_json::json;

use super::logprobs::LogprobShape;
use super::sse::{self, ChunkShape};
use super::{fields, held, parse_body, Body};
use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use crate::error::ApiError;
use crate::service::generate::{self, usage_json, GenerationParams, Prompt};
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::post("/v1/chat/completions", Scope::Infer, BodyKind::Json), create);
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ChatRequest {
    #[schema(min_items = 1)]
    messages: Vec<MessageIn>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ChatMessage)]
struct MessageIn {
    #[schema(pattern = "^(system|developer|user|assistant|tool)$")]
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = ChatContent)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ChatContentPart)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

const CHUNKS: ChunkShape = ChunkShape {
    object: "chat.completion.chunk",
    opening: Some(|| json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})),
    choice: |text, finish| {
        let delta = text.map_or_else(|| json!({}), |t| json!({"content": t}));
        json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
    },
    logprobs: LogprobShape::Chat,
};

async fn create(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let body = parse_body(body, &state)?;
    let request: ChatRequest = fields(&body)?;
    let params: GenerationParams = fields(&body)?;
    let messages = to_messages(request.messages)?;
    let generation = generate::start(&state, &params, Prompt::Chat(messages), "chatcmpl").await?;
    if generation.stream {
        return Ok(sse::respond(generation, CHUNKS));
    }
    let (id, created, model, logprobs) = (generation.id.clone(), generation.created, generation.model.clone(), generation.logprobs);
    Ok(held::json_when_done(async move {
        let done = generation.collect().await?;
        Ok(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": done.text},
                "logprobs": LogprobShape::Chat.answer(logprobs, &done.logprobs),
                "finish_reason": done.reason.as_str(),
            }],
            "usage": usage_json(&done.usage),
        }))
    })
    .await)
}

fn to_messages(messages: Vec<MessageIn>) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must contain at least one message"));
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" | "assistant" | "tool" => m.role.as_str(),
                other => {
                    return Err(ApiError::invalid(
                        &format!("messages[{i}].role"),
                        format!("messages[{i}].role {other:?} is not one of system, developer, user, assistant, tool"),
                    ))
                }
            }
            .to_owned();
            Ok(ChatMessage { role, content: content_text(i, m.content)? })
        })
        .collect()
}

fn content_text(i: usize, content: Option<Content>) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(text)) => Ok(text),
        Some(Content::Parts(parts)) => parts
            .into_iter()
            .enumerate()
            .map(|(j, part)| match (part.kind.as_str(), part.text) {
                ("text", Some(text)) => Ok(text),
                (kind, _) => Err(ApiError::invalid(
                    &format!("messages[{i}].content[{j}]"),
                    format!("messages[{i}].content[{j}] is a {kind:?} part; only text parts with a `text` field are supported"),
                )),
            })
            .collect::<Result<Vec<String>, _>>()
            .map(|texts| texts.join("\n")),
    }
}

