//! The Responses API's work (OpenAI's shape, as Llama Stack implements it): turn a request into
//! a conversation, run `file_search` over the vector stores when the request has the tool,
//! generate, cite, and keep the response for `GET`, `DELETE` and `previous_response_id`.
//!
//! A request is prepared in full ([`prepare`]: validation, history, retrieval, prompt) before
//! anything is generated, so every mistake is a clean 4xx. The answer then comes either whole
//! ([`Prepared::finish`]) or as the standard stream of events (`api::responses`). Responses are
//! stored unless the request says `store: false` ([`super::response_store`]: one record per
//! response holding its own turn and its parent's id, within `[limits]`' TTL and quotas); the
//! conversation of a `previous_response_id` is rebuilt by walking that chain. Counting tokens to
//! fit the prompt (the whole history and every retrieved chunk) runs on a blocking thread.

use std::path::PathBuf;
use std::sync::Arc;

use engine::{ChatMessage, Usage};
use serde::Deserialize;
use serde_json::{json, Value};

use super::generate::{self, Generation, GenerationParams, Prompt};
use super::response_store::{self as stored, Quota, Record};
use super::{blocking, new_id, unix_now};
use crate::wire::fields;
use crate::error::ApiError;
use crate::library::Library;
use crate::rag::citations::annotate;
use crate::rag::prompt::assemble;
use crate::rag::{retrieve, FileSearch, Retrieval};
use crate::state::AppState;

/// The context assumed for a remote model whose upstream has not said (vLLM's smallest default).
const DEFAULT_CONTEXT: usize = 2048;

/// `POST /v1/responses`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateResponse {
    pub model: String,
    pub input: Input,
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default)]
    pub stream: bool,
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub include: Vec<String>,
    #[schema(minimum = 16)]
    pub max_output_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub store: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, Value>,
}

/// `input`: a string or a list of message items.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = ResponseInput)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// A tool; only `file_search` is served.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(as = ResponseTool)]
pub enum Tool {
    FileSearch(FileSearch),
}

/// A request ready to generate.
#[derive(Debug)]
pub struct Prepared {
    pub id: String,
    pub message_id: String,
    pub created_at: u64,
    request: CreateResponse,
    /// The history before this request, then its input messages.
    conversation: Vec<ChatMessage>,
    /// Where this request's own input messages start in `conversation`.
    turn_start: usize,
    quota: Quota,
    file_search: Option<(String, Retrieval)>,
    /// The retrieved sources in the prompt, `[1]` first.
    pub sources: Vec<store::SearchHit>,
    /// `Some` when the answer is known without generating (nothing relevant was found).
    pub fixed_answer: Option<String>,
    pub generation: Option<Generation>,
    state_dir: PathBuf,
}

/// The input items as chat messages (`message` items; other item types are context already
/// carried by `previous_response_id` and are skipped).
fn input_messages(input: &Input) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match input {
        Input::Text(text) => return Ok(vec![ChatMessage { role: "user".into(), content: text.clone() }]),
        Input::Items(items) => items,
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
        if kind != "message" {
            continue;
        }
        let role = match item.get("role").and_then(Value::as_str) {
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some("system" | "developer") => "system",
            other => return Err(ApiError::invalid(&format!("input[{i}].role"), format!("input[{i}].role {other:?} is not user, assistant, system or developer"))),
        };
        let content = match item.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => return Err(ApiError::invalid(&format!("input[{i}].content"), format!("input[{i}].content must be a string or a list of text parts"))),
        };
        out.push(ChatMessage { role: role.into(), content });
    }
    if !out.iter().any(|m| m.role == "user") {
        return Err(ApiError::invalid("input", "input needs at least one user message"));
    }
    Ok(out)
}

/// Validate, rebuild the conversation, retrieve, assemble and submit.
pub async fn prepare(state: &AppState, body: &Value) -> Result<Prepared, ApiError> {
    let request: CreateResponse = fields(body)?;
    let settings = state.settings().clone();
    let state_dir = settings.server.state_dir.clone();
    let quota = Quota::from_limits(&settings.limits);
    let mut conversation: Vec<ChatMessage> = Vec::new();
    if let Some(previous) = &request.previous_response_id {
        let (dir, id) = (state_dir.clone(), previous.clone());
        let history = blocking(move || stored::conversation(&dir, &id, &quota)).await?;
        conversation.extend(history.into_iter().map(|(role, content)| ChatMessage { role, content }));
    }
    let turn_start = conversation.len();
    let input = input_messages(&request.input)?;
    let question = input.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone()).unwrap_or_default();
    conversation.extend(input);
    let history: Vec<ChatMessage> = conversation[..conversation.len().saturating_sub(1)].iter().filter(|m| m.role != "system").cloned().collect();

    let backend = state.models()?.get(&request.model)?.clone();
    let max_output = match request.max_output_tokens {
        Some(n) if n < 16 => return Err(ApiError::invalid("max_output_tokens", format!("max_output_tokens must be at least 16, got {n}"))),
        Some(n) => n as usize,
        None => settings.rag.max_output_tokens as usize,
    };
    let context = backend.max_model_len().map_or(DEFAULT_CONTEXT, |n| n as usize);
    let budget = context.saturating_sub(max_output);
    let mut instructions = match request.tools.first() {
        Some(Tool::FileSearch(_)) => settings.rag.instructions.clone(),
        None => String::new(),
    };
    if let Some(extra) = &request.instructions {
        if !instructions.is_empty() {
            instructions.push_str("\n\n");
        }
        instructions.push_str(extra);
    }
    let (file_search, sources, fixed_answer, messages) = match request.tools.first() {
        Some(Tool::FileSearch(tool)) => {
            let library: Arc<Library> = state.library()?.clone();
            let mut tool = tool.clone();
            tool.max_num_results = tool.max_num_results.or(Some(settings.rag.max_num_results));
            let retrieval = retrieve(&library, &tool, &question, settings.rag.min_relevance).await?;
            let (counter, hits, q) = (backend.clone(), retrieval.hits.clone(), question.clone());
            let assembled = blocking(move || Ok(assemble(&instructions, hits, &history, &q, budget, &|text: &str| counter.count_tokens(text)))).await?;
            let fixed = assembled.sources.is_empty().then(|| settings.rag.no_answer.clone());
            (Some((question.clone(), retrieval)), assembled.sources, fixed, assembled.messages)
        }
        None => {
            let mut messages = Vec::new();
            if !instructions.is_empty() {
                messages.push(ChatMessage { role: "system".into(), content: instructions });
            }
            messages.extend(history);
            messages.push(ChatMessage { role: "user".into(), content: question.clone() });
            (None, Vec::new(), None, messages)
        }
    };
    let generation = match fixed_answer {
        Some(_) => None,
        None => {
            let params: GenerationParams = fields(&json!({
                "model": request.model, "max_tokens": max_output.min(context.saturating_sub(1)),
                "temperature": request.temperature, "top_p": request.top_p, "stream": request.stream,
            }))?;
            Some(generate::start(state, &params, Prompt::Chat(messages), "resp").await?)
        }
    };
    Ok(Prepared {
        id: new_id("resp").replace('-', "_"),
        message_id: new_id("msg").replace('-', "_"),
        created_at: unix_now(),
        request,
        conversation,
        turn_start,
        quota,
        file_search,
        sources,
        fixed_answer,
        generation,
        state_dir,
    })
}

impl Prepared {
    /// True when the client asked for events.
    pub fn streaming(&self) -> bool {
        self.request.stream
    }

    /// The `file_search_call` item, if the request searched.
    pub fn file_search_item(&self, status: &str) -> Option<Value> {
        let (query, retrieval) = self.file_search.as_ref()?;
        let include = self.request.include.iter().any(|i| i == "file_search_call.results" || i == "output[*].file_search_call.search_results");
        let results = include.then(|| {
            retrieval
                .hits
                .iter()
                .map(|h| json!({"file_id": h.document_id, "filename": h.document_name, "score": h.score, "text": h.text,
                                 "attributes": h.attributes, "page": h.page, "char_start": h.char_start, "char_end": h.char_end}))
                .collect::<Vec<_>>()
        });
        Some(json!({"type": "file_search_call", "id": self.id.replace("resp_", "fs_"), "status": status, "queries": [query], "results": results}))
    }

    /// The assistant message item with its text and citations (an answer that has sources but
    /// uses none of them says so: [`annotate`]).
    pub fn message_item(&self, text: &str, status: &str) -> Value {
        let (text, annotations) = annotate(text, &self.sources);
        json!({"type": "message", "id": self.message_id, "status": status, "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}]})
    }

    /// The response object.
    pub fn response_json(&self, status: &str, output: Vec<Value>, usage: Option<&Usage>) -> Value {
        let usage = usage.map(|u| json!({
            "input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
            "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u.prompt_tokens + u.completion_tokens,
        }));
        let tools: Vec<Value> = self.request.tools.iter().map(|Tool::FileSearch(t)| json!({
            "type": "file_search", "vector_store_ids": t.vector_store_ids, "max_num_results": t.max_num_results,
            "filters": t.filters, "ranking_options": {"ranker": "auto", "score_threshold": t.ranking_options.as_ref().and_then(|r| r.score_threshold)},
        })).collect();
        json!({
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "model": self.request.model, "output": output, "usage": usage,
            "previous_response_id": self.request.previous_response_id, "instructions": self.request.instructions,
            "tools": tools, "tool_choice": "auto", "parallel_tool_calls": true,
            "temperature": self.request.temperature, "top_p": self.request.top_p, "max_output_tokens": self.request.max_output_tokens,
            "text": {"format": {"type": "text"}}, "truncation": "disabled", "error": null, "incomplete_details": null,
            "metadata": self.request.metadata, "store": self.request.store.unwrap_or(true),
        })
    }

    /// The finished response for `text`; stored unless the request said `store: false`.
    pub async fn complete(&self, text: &str, usage: Option<&Usage>) -> Result<Value, ApiError> {
        let mut output: Vec<Value> = self.file_search_item("completed").into_iter().collect();
        output.push(self.message_item(text, "completed"));
        let response = self.response_json("completed", output, usage);
        if self.request.store.unwrap_or(true) {
            // Only this turn; the history before it stays in the parent's records.
            let mut turn: Vec<(String, String)> = self.conversation.iter().skip(self.turn_start).map(|m| (m.role.clone(), m.content.clone())).collect();
            turn.push(("assistant".into(), text.to_owned()));
            let record = Record { response: response.clone(), turn, parent: self.request.previous_response_id.clone(), conversation: None };
            let (dir, id, quota) = (self.state_dir.clone(), self.id.clone(), self.quota);
            blocking(move || stored::save(&dir, &id, &record, &quota)).await?;
        }
        Ok(response)
    }

    /// Generate the whole answer (non-streamed requests).
    pub async fn finish(mut self) -> Result<Value, ApiError> {
        match (self.fixed_answer.clone(), self.generation.take()) {
            (Some(answer), _) => self.complete(&answer, None).await,
            (None, Some(generation)) => {
                let done = generation.collect().await?;
                self.complete(done.text.trim(), Some(&done.usage)).await
            }
            (None, None) => Err(ApiError::Internal("a response with neither an answer nor a generation".into())),
        }
    }
}

/// `GET /v1/responses/{id}`.
pub async fn get(state: &AppState, id: String) -> Result<Value, ApiError> {
    let dir = state.settings().server.state_dir.clone();
    let quota = Quota::from_limits(&state.settings().limits);
    blocking(move || Ok(stored::load(&dir, &id, &quota)?.response)).await
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(state: &AppState, id: String) -> Result<Value, ApiError> {
    let dir = state.settings().server.state_dir.clone();
    blocking(move || {
        stored::delete(&dir, &id)?;
        Ok(json!({"id": id, "object": "response", "deleted": true}))
    })
    .await
}
