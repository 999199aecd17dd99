//! The answers of `POST /v1/chat/completions` and `POST /v1/completions` without `stream`, and the
//! `usage` object they and the streams' last chunks carry. The `logprobs` objects are built by
//! `api::logprobs` (their shape depends on the API) and stay JSON here; a tool call is the chat
//! API's `{id, type, function}` object.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;

/// OpenAI's `usage`: token counts of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
}

/// Where the prompt's tokens came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV came from the prefix cache instead of being computed.
    pub cached_tokens: u32,
}

impl From<&engine::Usage> for Usage {
    fn from(u: &engine::Usage) -> Usage {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens: u.cached_tokens },
        }
    }
}

/// `POST /v1/chat/completions` without `stream`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    #[schema(pattern = "^chat\\.completion$")]
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

/// The one choice of a chat completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    /// `{content: [{token, logprob, bytes, top_logprobs}], refusal}` when asked for, else null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Value,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: &'static str,
}

/// The model's message.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    #[schema(pattern = "^assistant$")]
    pub role: &'static str,
    /// The text; with tool calls, the text outside them (null when there is none).
    pub content: Option<String>,
    /// The calls the model made: `{id, type: "function", function: {name, arguments}}`; absent
    /// when it made none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Vec<Value>>,
}

/// `POST /v1/completions` without `stream`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextCompletion {
    pub id: String,
    #[schema(pattern = "^text_completion$")]
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<TextChoice>,
    pub usage: Usage,
}

/// The one choice of a text completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextChoice {
    pub index: u32,
    pub text: String,
    /// `{tokens, token_logprobs, top_logprobs, text_offset}` when asked for, else null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Value,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
}

/// One chunk of a streamed chat or text completion: `object` is `chat.completion.chunk` or
/// `text_completion`; each choice is built by the API's chunk shape (`api::sse::ChunkShape`);
/// `usage` rides on the last chunk when asked for (and on every one with continuous usage stats).
#[derive(Debug, Serialize)]
pub struct Chunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One choice of a streamed chunk: chat's carries a delta, text completion's its text.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ChunkChoice {
    Chat(ChatChunkChoice),
    Text(TextChunkChoice),
}

impl ChunkChoice {
    /// Set the choice's `logprobs` (null unless the request asked for them).
    pub fn set_logprobs(&mut self, logprobs: Value) {
        match self {
            ChunkChoice::Chat(c) => c.logprobs = logprobs,
            ChunkChoice::Text(c) => c.logprobs = logprobs,
        }
    }
}

/// A chat chunk's choice.
#[derive(Debug, Serialize)]
pub struct ChatChunkChoice {
    pub index: u32,
    pub delta: ChatDelta,
    pub logprobs: Value,
    pub finish_reason: Option<String>,
}

/// What a chat chunk adds: the role (first chunk), text, or a piece of a tool call; `{}` on the
/// last chunk.
#[derive(Debug, Default, Serialize)]
pub struct ChatDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a streamed tool call: its start (`id`, `type`, `function.name`, empty arguments),
/// then its arguments in fragments (`index` and `function.arguments` only).
#[derive(Debug, Serialize)]
pub struct ToolCallDelta {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta,
}

/// The function part of a [`ToolCallDelta`].
#[derive(Debug, Serialize)]
pub struct FunctionDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub arguments: String,
}

/// A text completion chunk's choice.
#[derive(Debug, Serialize)]
pub struct TextChunkChoice {
    pub index: u32,
    pub text: String,
    pub logprobs: Value,
    pub finish_reason: Option<String>,
}

/// `answer` as the JSON value the held response writes.
pub fn to_json<T: Serialize>(answer: &T) -> Result<Value, ApiError> {
    serde_json::to_value(answer).map_err(|e| ApiError::Internal(format!("an answer could not be written as JSON: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_bodies_are_openais_in_openais_order() {
        let usage = Usage::from(&engine::Usage { prompt_tokens: 5, completion_tokens: 3, cached_tokens: 2 });
        let chat = ChatCompletion {
            id: "chatcmpl-1".into(),
            object: "chat.completion",
            created: 7,
            model: "m".into(),
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage { role: "assistant", content: Some("hi".into()), tool_calls: None },
                logprobs: Value::Null,
                finish_reason: "stop",
            }],
            usage,
        };
        let expected = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8, "prompt_tokens_details": {"cached_tokens": 2}}});
        assert_eq!(serde_json::to_string(&chat).unwrap(), expected.to_string(), "same bytes, same order");
        let call = json!({"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}});
        let message = AssistantMessage { role: "assistant", content: None, tool_calls: Some(vec![call.clone()]) };
        assert_eq!(to_json(&message).unwrap(), json!({"role": "assistant", "content": null, "tool_calls": [call]}));
        let text = TextCompletion {
            id: "cmpl-1".into(),
            object: "text_completion",
            created: 7,
            model: "m".into(),
            choices: vec![TextChoice { index: 0, text: "x".into(), logprobs: Value::Null, finish_reason: "length" }],
            usage,
        };
        let expected = json!({"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "m",
            "choices": [{"index": 0, "text": "x", "logprobs": null, "finish_reason": "length"}], "usage": usage});
        assert_eq!(serde_json::to_string(&text).unwrap(), expected.to_string());
        let choice = json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"});
        let typed = ChunkChoice::Chat(ChatChunkChoice { index: 0, delta: ChatDelta::default(), logprobs: Value::Null, finish_reason: Some("stop".into()) });
        let mut chunk = Chunk { id: "c", object: "chat.completion.chunk", created: 7, model: "m", choices: vec![typed], usage: None };
        let expected = json!({"id": "c", "object": "chat.completion.chunk", "created": 7, "model": "m", "choices": [choice]});
        assert_eq!(serde_json::to_string(&chunk).unwrap(), expected.to_string(), "no usage: no field");
        chunk.usage = Some(usage);
        assert_eq!(to_json(&chunk).unwrap()["usage"], json!(usage), "usage last");
        assert_eq!(serde_json::to_string(&chunk).unwrap().rsplit_once(",\"usage\"").map(|(head, _)| head.len()), Some(expected.to_string().len() - 1));
        let start = ToolCallDelta { index: 1, id: Some("call_1".into()), kind: Some("function"), function: FunctionDelta { name: Some("f".into()), arguments: String::new() } };
        let delta = ChatDelta { tool_calls: Some(vec![start]), ..ChatDelta::default() };
        let choice = ChunkChoice::Chat(ChatChunkChoice { index: 0, delta, logprobs: Value::Null, finish_reason: None });
        assert_eq!(serde_json::to_string(&choice).unwrap(), json!({"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}, "logprobs": null, "finish_reason": null}).to_string());
        let fragment = ToolCallDelta { index: 1, id: None, kind: None, function: FunctionDelta { name: None, arguments: "{}".into() } };
        assert_eq!(serde_json::to_string(&fragment).unwrap(), r#"{"index":1,"function":{"arguments":"{}"}}"#);
        let opening = ChatDelta { role: Some("assistant"), content: Some(String::new()), tool_calls: None };
        assert_eq!(serde_json::to_string(&opening).unwrap(), r#"{"role":"assistant","content":""}"#);
        let mut text = ChunkChoice::Text(TextChunkChoice { index: 0, text: "x".into(), logprobs: Value::Null, finish_reason: None });
        text.set_logprobs(json!({"tokens": ["x"]}));
        assert_eq!(serde_json::to_string(&text).unwrap(), r#"{"index":0,"text":"x","logprobs":{"tokens":["x"]},"finish_reason":null}"#);
    }
}
