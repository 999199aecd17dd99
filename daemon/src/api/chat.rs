//! `POST /v1/chat/completions`, streamed or not.

use actix_web::{web, HttpResponse};
use engine::ChatMessage;
use serde::Deserialize;
use serde_json::Value;

use super::logprobs::LogprobShape;
use super::sse::{self, ChunkShape, ToolDelta};
use super::{accepted, fields, held, parse_body, Body};
use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use crate::error::ApiError;
use super::types::completions::{self as answer, AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletion, ChatDelta, ChunkChoice, FunctionDelta, ToolCallDelta, Usage};
use crate::service::generate::{self, GenerationParams, Prompt};
use crate::service::tool_parser;
use crate::service::tools::{ChatTools, History, ToolCall, Tools};
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::post("/v1/chat/completions", Scope::Infer, BodyKind::Json), create);
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ChatRequest {
    #[schema(min_items = 1)]
    messages: Vec<MessageIn>,
    /// Function tools: `[{"type": "function", "function": {"name", "description", "parameters"}}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<serde_json::Value>,
    /// `auto`, `none`, `required` or `{"type": "function", "function": {"name"}}`.
    #[schema(value_type = Option<Object>)]
    tool_choice: Option<serde_json::Value>,
    #[schema(value_type = Option<bool>)]
    parallel_tool_calls: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ChatMessage)]
struct MessageIn {
    #[schema(pattern = "^(system|developer|user|assistant|tool)$")]
    role: String,
    #[serde(default)]
    content: Option<Content>,
    /// An assistant message's calls.
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallIn>>,
    /// A `tool` message: the call it answers.
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ChatToolCall)]
struct ToolCallIn {
    id: String,
    function: FunctionCallIn,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ChatFunctionCall)]
struct FunctionCallIn {
    name: String,
    /// JSON text.
    arguments: String,
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
    opening: Some(|| chat_choice(ChatDelta { role: Some("assistant"), content: Some(String::new()), tool_calls: None }, None)),
    choice: |text, finish| chat_choice(ChatDelta { content: text.map(str::to_owned), ..ChatDelta::default() }, finish),
    logprobs: LogprobShape::Chat,
    tool_call: Some(|index, piece| {
        let call = match piece {
            ToolDelta::Start(call) => ToolCallDelta {
                index,
                id: Some(call.id.clone()),
                kind: Some("function"),
                function: FunctionDelta { name: Some(call.name.clone()), arguments: String::new() },
            },
            ToolDelta::Arguments(fragment) => ToolCallDelta { index, id: None, kind: None, function: FunctionDelta { name: None, arguments: fragment.to_owned() } },
        };
        chat_choice(ChatDelta { tool_calls: Some(vec![call]), ..ChatDelta::default() }, None)
    }),
};

/// The one choice of a chat chunk.
fn chat_choice(delta: ChatDelta, finish: Option<&str>) -> ChunkChoice {
    ChunkChoice::Chat(ChatChunkChoice { index: 0, delta, logprobs: Value::Null, finish_reason: finish.map(str::to_owned) })
}

async fn create(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let body = parse_body(body, &state)?;
    accepted::check(&body, accepted::Endpoint::Chat)?;
    let request: ChatRequest = fields(&body)?;
    let params = GenerationParams::from_body(&body)?;
    let offered = Tools::from_chat(request.tools.as_ref(), request.tool_choice.as_ref(), request.parallel_tool_calls.as_ref())?;
    let (messages, history) = to_messages(request.messages)?;
    let tools = ChatTools { tools: offered, history };
    let generation = generate::start_with_tools(&state, &params, Prompt::Chat(messages), tools, "chatcmpl").await?;
    if generation.stream {
        return Ok(sse::respond(generation, CHUNKS));
    }
    let reader = generation.tools.clone();
    let (id, created, model, logprobs) = (generation.id.clone(), generation.created, generation.model.clone(), generation.logprobs);
    Ok(held::json_when_done(async move {
        let done = generation.collect().await?;
        let text = |content| AssistantMessage { role: "assistant", content: Some(content), tool_calls: None };
        let (message, finish_reason) = match &reader {
            Some(reader) => {
                let parsed = tool_parser::parse(&done.text, reader.format, &reader.names);
                if parsed.calls.is_empty() {
                    (text(done.text), done.reason.as_str())
                } else {
                    let calls = parsed.calls.iter().map(ToolCall::to_json).collect();
                    (AssistantMessage { role: "assistant", content: parsed.content, tool_calls: Some(calls) }, "tool_calls")
                }
            }
            None => (text(done.text), done.reason.as_str()),
        };
        let choice = ChatChoice { index: 0, message, logprobs: LogprobShape::Chat.answer(logprobs, &done.logprobs), finish_reason };
        answer::to_json(&ChatCompletion { id, object: "chat.completion", created, model, choices: vec![choice], usage: Usage::from(&done.usage) })
    })
    .await)
}

/// The messages as the engine takes them, and their tool parts apart.
fn to_messages(messages: Vec<MessageIn>) -> Result<(Vec<ChatMessage>, History), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must contain at least one message"));
    }
    let mut history = History::default();
    for (i, m) in messages.iter().enumerate() {
        if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
            if m.role != "assistant" {
                return Err(ApiError::invalid(&format!("messages[{i}].tool_calls"), format!("messages[{i}] is a {} message; only assistant messages carry tool_calls", m.role)));
            }
            for (j, call) in calls.iter().enumerate() {
                if serde_json::from_str::<serde_json::Value>(&call.function.arguments).is_err() {
                    return Err(ApiError::invalid(
                        &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        format!("messages[{i}].tool_calls[{j}].function.arguments is not JSON text"),
                    ));
                }
            }
            let calls = calls.iter().map(|c| ToolCall { id: c.id.clone(), name: c.function.name.clone(), arguments: c.function.arguments.clone() }).collect();
            history.calls.push((i, calls));
        }
        if m.role == "tool" {
            history.results.push((i, m.tool_call_id.clone().unwrap_or_default()));
        }
    }
    let messages = messages
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
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok((messages, history))
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

