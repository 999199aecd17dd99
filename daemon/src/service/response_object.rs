//! The response object of the Responses API and its output items, as typed structs: what
//! [`super::responses`] builds, stores (`response_store`'s record holds it as JSON, which
//! `GET /v1/responses/{id}` returns as it was stored) and hands to the HTTP edge, whose stream
//! events (`api::types::responses`) carry these same items. The stored record is the wire body,
//! so the shape is defined once, here, below both; `api::openapi` names these types.
//!
//! Field order is what hearth answered before these types existed (OpenAI's order where it has
//! one); fields hearth always sends as null (`error`, `incomplete_details`, a search's `results`
//! when not asked for) are still sent. Numbers go through `serde_json::Value` before they are
//! written (`held::json_when_done` takes one, the store writes one), so a score prints as it did.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A response of the Responses API.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ResponseObject)]
pub struct ResponseObject {
    pub id: String,
    #[schema(pattern = "^response$")]
    pub object: &'static str,
    pub created_at: u64,
    /// `in_progress`, `completed` or `failed`.
    pub status: &'static str,
    pub model: String,
    pub output: Vec<OutputItem>,
    /// Null while in progress and for an answer known without generating.
    pub usage: Option<ResponseUsage>,
    pub previous_response_id: Option<String>,
    pub instructions: Option<String>,
    pub tools: Vec<ToolEcho>,
    /// The request's `tool_choice` (a string or an object), `auto` when it had none.
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_output_tokens: Option<i64>,
    pub text: TextConfig,
    #[schema(pattern = "^disabled$")]
    pub truncation: &'static str,
    /// Why a streamed response failed (`response.failed`), else null.
    pub error: Option<ResponseError>,
    /// Always null: a response is complete or failed.
    #[schema(value_type = Option<Object>)]
    pub incomplete_details: Option<Value>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub store: bool,
}

/// `text`: the output's format, always plain text here.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ResponseTextConfig)]
pub struct TextConfig {
    pub format: TextFormat,
}

/// `text.format`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ResponseTextFormat)]
pub struct TextFormat {
    #[serde(rename = "type")]
    #[schema(pattern = "^text$")]
    pub kind: &'static str,
}

impl TextConfig {
    pub fn plain() -> TextConfig {
        TextConfig { format: TextFormat { kind: "text" } }
    }
}

/// The `error` of a failed response.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ResponseFailure)]
pub struct ResponseError {
    /// `server_error`.
    pub code: &'static str,
    pub message: String,
}

/// The Responses API's `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ResponseUsage {
    pub input_tokens: u32,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u32,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u32,
}

/// Where the input tokens came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct InputTokensDetails {
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: u32,
}

/// Output tokens spent reasoning: always 0 here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u32,
}

impl From<&engine::Usage> for ResponseUsage {
    fn from(u: &engine::Usage) -> ResponseUsage {
        ResponseUsage {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputTokensDetails { cached_tokens: u.cached_tokens },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputTokensDetails { reasoning_tokens: 0 },
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}

/// A tool of the request, as the response repeats it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(as = ResponseToolEcho)]
pub enum ToolEcho {
    FileSearch {
        vector_store_ids: Vec<String>,
        max_num_results: Option<usize>,
        #[schema(value_type = Option<Object>)]
        filters: Option<Value>,
        ranking_options: EchoedRanking,
    },
    Function {
        name: String,
        description: Option<String>,
        #[schema(value_type = Option<Object>)]
        parameters: Option<Value>,
        strict: bool,
    },
}

/// A `file_search` tool's `ranking_options`, as the response repeats them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EchoedRanking {
    /// `auto`.
    pub ranker: &'static str,
    pub score_threshold: Option<f32>,
}

/// An output item: the answer's message, the search that fed it, or a call the model made.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(as = ResponseOutputItem)]
pub enum OutputItem {
    Message(MessageItem),
    FileSearchCall(FileSearchCall),
    FunctionCall(FunctionCallItem),
}

/// The assistant's message item (its `type`, `message`, comes from [`OutputItem`]).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageItem {
    pub id: String,
    /// `in_progress` or `completed`.
    pub status: &'static str,
    #[schema(pattern = "^assistant$")]
    pub role: &'static str,
    /// One `output_text` part once the message is complete; none when it opens in a stream.
    pub content: Vec<OutputText>,
}

/// An `output_text` content part with its citations.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutputText {
    #[serde(rename = "type")]
    #[schema(pattern = "^output_text$")]
    pub kind: &'static str,
    pub text: String,
    /// `{type: "file_citation", index, file_id, filename, page, char_start, char_end}` per cited
    /// source (`rag::citations`).
    #[schema(value_type = Vec<Object>)]
    pub annotations: Vec<Value>,
    /// Always empty in a message item; absent from the part a stream opens with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub logprobs: Option<Vec<Value>>,
}

impl OutputText {
    /// The empty part a streamed message opens with.
    pub fn opening() -> OutputText {
        OutputText { kind: "output_text", text: String::new(), annotations: Vec::new(), logprobs: None }
    }
}

/// The `file_search_call` item (its `type` comes from [`OutputItem`]).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileSearchCall {
    pub id: String,
    /// `in_progress` or `completed`.
    pub status: &'static str,
    pub queries: Vec<String>,
    /// The hits, when `include` asks for `file_search_call.results`; else null.
    pub results: Option<Vec<FileSearchResult>>,
}

/// One hit of a `file_search_call`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileSearchResult {
    pub file_id: String,
    pub filename: String,
    pub score: f32,
    pub text: String,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    pub page: Option<u32>,
    pub char_start: u64,
    pub char_end: u64,
}

impl From<&store::SearchHit> for FileSearchResult {
    fn from(h: &store::SearchHit) -> FileSearchResult {
        FileSearchResult {
            file_id: h.document_id.clone(),
            filename: h.document_name.clone(),
            score: h.score,
            text: h.text.clone(),
            attributes: h.attributes.clone(),
            page: h.page,
            char_start: h.char_start,
            char_end: h.char_end,
        }
    }
}

/// A `function_call` item (its `type` comes from [`OutputItem`]).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionCallItem {
    /// `fc_` and the call id's digits.
    pub id: String,
    pub call_id: String,
    pub name: String,
    /// The arguments' JSON text (empty when the item opens in a stream).
    pub arguments: String,
    /// `in_progress` or `completed`.
    pub status: &'static str,
}

/// `value` as JSON (the typed bodies here hold nothing serde can refuse: string keys, finite
/// numbers from the engine and the store).
pub fn to_value<T: Serialize>(value: &T) -> Result<Value, crate::fault::ServiceError> {
    serde_json::to_value(value).map_err(|e| crate::fault::ServiceError::Internal(format!("a response could not be written as JSON: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_carry_their_type_first_and_the_old_order() {
        let message = OutputItem::Message(MessageItem {
            id: "msg_1".into(),
            status: "completed",
            role: "assistant",
            content: vec![OutputText { kind: "output_text", text: "hi".into(), annotations: Vec::new(), logprobs: Some(Vec::new()) }],
        });
        let expected = json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}]});
        assert_eq!(serde_json::to_string(&message).unwrap(), expected.to_string());
        let search = OutputItem::FileSearchCall(FileSearchCall { id: "fs_1".into(), status: "in_progress", queries: vec!["q".into()], results: None });
        assert_eq!(to_value(&search).unwrap().to_string(), r#"{"type":"file_search_call","id":"fs_1","status":"in_progress","queries":["q"],"results":null}"#);
        let call = OutputItem::FunctionCall(FunctionCallItem { id: "fc_1".into(), call_id: "call_1".into(), name: "f".into(), arguments: String::new(), status: "in_progress" });
        assert_eq!(to_value(&call).unwrap().to_string(), r#"{"type":"function_call","id":"fc_1","call_id":"call_1","name":"f","arguments":"","status":"in_progress"}"#);
        assert_eq!(to_value(&OutputText::opening()).unwrap(), json!({"type": "output_text", "text": "", "annotations": []}), "an opening part has no logprobs");
        let usage = ResponseUsage::from(&engine::Usage { prompt_tokens: 5, completion_tokens: 3, cached_tokens: 2 });
        assert_eq!(to_value(&usage).unwrap().to_string(), r#"{"input_tokens":5,"input_tokens_details":{"cached_tokens":2},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":8}"#);
        let tool = ToolEcho::FileSearch { vector_store_ids: vec!["vs_1".into()], max_num_results: Some(4), filters: None, ranking_options: EchoedRanking { ranker: "auto", score_threshold: None } };
        assert_eq!(to_value(&tool).unwrap().to_string(), r#"{"type":"file_search","vector_store_ids":["vs_1"],"max_num_results":4,"filters":null,"ranking_options":{"ranker":"auto","score_threshold":null}}"#);
    }
}
