//! The Responses API's work (OpenAI's shape, as Llama Stack implements it): turn a request into
//! a conversation, run `file_search` over the vector stores when the request has the tool,
//! generate, cite, and keep the response for `GET`, `DELETE` and `previous_response_id`.
//!
//! Function tools (`{"type": "function", "name", "parameters", ...}`, `tool_choice`,
//! `parallel_tool_calls`) go through the chat path's machinery: [`Tools::from_responses`] reads
//! them, [`generate::start_with_tools`] prompts with them and constrains `required` and named
//! choices with the call grammar, and [`tool_parser`] reads the calls out of the text; they come
//! back as `function_call` items ([`super::response_items`]). `file_search` and function tools in
//! one request are refused (a 400 naming `tools`): retrieval rewrites the prompt around the
//! question and cites the answer, which a turn that may end in a call does not fit.
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

use super::generate::{self, Generation, GenerationParams, Prompt, ToolOutput};
use super::response_items::{self as items, Answer};
use super::response_object::{
    to_value, EchoedRanking, FileSearchCall, FileSearchResult, MessageItem, OutputItem, OutputText, ResponseObject, ResponseUsage, TextConfig, ToolEcho,
};
use super::response_store::{self as stored, Message, Quota, Record};
use super::tool_parser;
use super::tools::{self, ChatTools, Tools};
use super::{blocking, new_id, unix_now};
use crate::wire::fields;
use crate::fault::ServiceError;
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
    /// `auto`, `none`, `required` or `{"type": "function", "name"}` (function tools).
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
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

/// A tool: `file_search`, or a function the client runs.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(as = ResponseTool)]
pub enum Tool {
    FileSearch(FileSearch),
    Function(FunctionSpec),
}

/// A function tool, in the Responses API's flat shape.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ResponseFunctionTool)]
pub struct FunctionSpec {
    pub name: String,
    pub description: Option<String>,
    /// The arguments' JSON schema.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Accepted either way: a call is always valid for its schema (the grammar makes it so).
    pub strict: Option<bool>,
}

/// A request ready to generate.
#[derive(Debug)]
pub struct Prepared {
    pub id: String,
    pub message_id: String,
    pub created_at: u64,
    request: CreateResponse,
    /// The history before this request, then its input messages.
    conversation: Vec<Message>,
    /// Where this request's own input messages start in `conversation`.
    turn_start: usize,
    quota: Quota,
    file_search: Option<(String, Retrieval)>,
    /// The retrieved sources in the prompt, `[1]` first.
    pub sources: Vec<store::SearchHit>,
    /// `Some` when the answer is known without generating (nothing relevant was found).
    pub fixed_answer: Option<String>,
    pub generation: Option<Generation>,
    /// How to read calls out of the answer, when function tools were offered.
    pub tool_output: Option<ToolOutput>,
    state_dir: PathBuf,
}

/// Validate, rebuild the conversation, retrieve, assemble and submit.
pub async fn prepare(state: &AppState, body: &Value) -> Result<Prepared, ServiceError> {
    let request: CreateResponse = fields(body)?;
    let function_tools = function_tools(&request, body)?;
    let settings = state.settings().clone();
    let state_dir = settings.server.state_dir.clone();
    let quota = Quota::from_limits(&settings.limits);
    let mut conversation: Vec<Message> = Vec::new();
    if let Some(previous) = &request.previous_response_id {
        let (dir, id) = (state_dir.clone(), previous.clone());
        conversation = blocking(move || stored::conversation(&dir, &id, &quota)).await?;
    }
    let turn_start = conversation.len();
    let input = match &request.input {
        Input::Text(text) => vec![Message::text("user", text)],
        Input::Items(list) => items::input_messages(list, &conversation)?,
    };
    let question = input.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone()).unwrap_or_default();
    conversation.extend(input);

    let backend = state.models()?.acquire(&request.model).await?;
    let max_output = match request.max_output_tokens {
        Some(n) if n < 16 => return Err(ServiceError::invalid("max_output_tokens", format!("max_output_tokens must be at least 16, got {n}"))),
        Some(n) => n as usize,
        None => settings.rag.max_output_tokens as usize,
    };
    let context = backend.max_model_len().map_or(DEFAULT_CONTEXT, |n| n as usize);
    let budget = context.saturating_sub(max_output);
    let file_search_tool = request.tools.iter().find_map(|t| match t {
        Tool::FileSearch(f) => Some(f.clone()),
        Tool::Function(_) => None,
    });
    let mut instructions = match file_search_tool {
        Some(_) => settings.rag.instructions.clone(),
        None => String::new(),
    };
    if let Some(extra) = &request.instructions {
        if !instructions.is_empty() {
            instructions.push_str("\n\n");
        }
        instructions.push_str(extra);
    }
    let (file_search, sources, fixed_answer, prompt) = match file_search_tool {
        Some(mut tool) => {
            // The history as plain turns (earlier calls written into them), the question apart.
            let before = &conversation[..conversation.len().saturating_sub(1)];
            let (chat, history) = items::chat_prompt(before);
            let history: Vec<ChatMessage> =
                tools::plain_messages(&chat, &ChatTools { tools: None, history }).into_iter().filter(|m| m.role != "system").collect();
            let library: Arc<Library> = state.library()?.clone();
            tool.max_num_results = tool.max_num_results.or(Some(settings.rag.max_num_results));
            let retrieval = retrieve(&library, &tool, &question, settings.rag.min_relevance).await?;
            let (counter, hits, q) = (backend.clone(), retrieval.hits.clone(), question.clone());
            let assembled = blocking(move || Ok(assemble(&instructions, hits, &history, &q, budget, &|text: &str| counter.count_tokens(text)))).await?;
            let fixed = assembled.sources.is_empty().then(|| settings.rag.no_answer.clone());
            (Some((question.clone(), retrieval)), assembled.sources, fixed, (assembled.messages, ChatTools::default()))
        }
        None => {
            // One system message first (instructions, then the input's system messages), then
            // the conversation with its calls and their outputs.
            let mut system: Vec<&str> = vec![instructions.as_str()];
            system.extend(conversation.iter().filter(|m| m.role == "system").map(|m| m.content.as_str()));
            let system = system.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("\n\n");
            let mut turns: Vec<Message> = Vec::new();
            if !system.is_empty() {
                turns.push(Message::text("system", &system));
            }
            turns.extend(conversation.iter().filter(|m| m.role != "system").cloned());
            let (messages, history) = items::chat_prompt(&turns);
            (None, Vec::new(), None, (messages, ChatTools { tools: function_tools, history }))
        }
    };
    let generation = match fixed_answer {
        Some(_) => None,
        None => {
            let params = GenerationParams::from_body(&json!({
                "model": request.model, "max_tokens": max_output.min(context.saturating_sub(1)),
                "temperature": request.temperature, "top_p": request.top_p, "stream": request.stream,
            }))?;
            let (messages, tools) = prompt;
            Some(generate::start_with_tools(state, &params, Prompt::Chat(messages), tools, "resp").await?)
        }
    };
    let tool_output = generation.as_ref().and_then(|g| g.tools.clone());
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
        tool_output,
        state_dir,
    })
}

/// The request's function tools with its `tool_choice` and `parallel_tool_calls` (`None` when it
/// has none); `file_search` beside them is refused.
fn function_tools(request: &CreateResponse, body: &Value) -> Result<Option<Tools>, ServiceError> {
    let searches = request.tools.iter().any(|t| matches!(t, Tool::FileSearch(_)));
    let functions = request.tools.iter().any(|t| matches!(t, Tool::Function(_)));
    if searches && functions {
        return Err(ServiceError::invalid(
            "tools",
            "file_search and function tools in one request are not supported: send the function tools in their own request (previous_response_id carries the conversation)",
        ));
    }
    if searches {
        return Ok(None); // file_search always runs; tool_choice does not change that
    }
    let list = body.get("tools").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    Tools::from_responses(list, request.tool_choice.as_ref(), body.get("parallel_tool_calls"))
}

impl Prepared {
    /// True when the client asked for events.
    pub fn streaming(&self) -> bool {
        self.request.stream
    }

    /// The `file_search_call` item, if the request searched.
    pub fn file_search_item(&self, status: &'static str) -> Option<OutputItem> {
        let (query, retrieval) = self.file_search.as_ref()?;
        let include = self.request.include.iter().any(|i| i == "file_search_call.results" || i == "output[*].file_search_call.search_results");
        let results = include.then(|| retrieval.hits.iter().map(FileSearchResult::from).collect());
        Some(OutputItem::FileSearchCall(FileSearchCall { id: self.id.replace("resp_", "fs_"), status, queries: vec![query.clone()], results }))
    }

    /// The assistant message item with its text and citations (an answer that has sources but
    /// uses none of them says so: [`annotate`]).
    pub fn message_item(&self, text: &str, status: &'static str) -> MessageItem {
        let (text, annotations) = annotate(text, &self.sources);
        let content = OutputText { kind: "output_text", text, annotations, logprobs: Some(Vec::new()) };
        MessageItem { id: self.message_id.clone(), status, role: "assistant", content: vec![content] }
    }

    /// The response object.
    pub fn response_object(&self, status: &'static str, output: Vec<OutputItem>, usage: Option<&Usage>) -> ResponseObject {
        let tools = self
            .request
            .tools
            .iter()
            .map(|tool| match tool {
                Tool::FileSearch(t) => ToolEcho::FileSearch {
                    vector_store_ids: t.vector_store_ids.clone(),
                    max_num_results: t.max_num_results,
                    filters: t.filters.clone(),
                    ranking_options: EchoedRanking { ranker: "auto", score_threshold: t.ranking_options.as_ref().and_then(|r| r.score_threshold) },
                },
                Tool::Function(f) => ToolEcho::Function {
                    name: f.name.clone(),
                    description: f.description.clone(),
                    parameters: f.parameters.clone(),
                    strict: f.strict.unwrap_or(true),
                },
            })
            .collect();
        ResponseObject {
            id: self.id.clone(),
            object: "response",
            created_at: self.created_at,
            status,
            model: self.request.model.clone(),
            output,
            usage: usage.map(ResponseUsage::from),
            previous_response_id: self.request.previous_response_id.clone(),
            instructions: self.request.instructions.clone(),
            tools,
            tool_choice: self.request.tool_choice.clone().unwrap_or_else(|| Value::from("auto")),
            parallel_tool_calls: self.request.parallel_tool_calls.unwrap_or(true),
            temperature: self.request.temperature,
            top_p: self.request.top_p,
            max_output_tokens: self.request.max_output_tokens,
            text: TextConfig::plain(),
            truncation: "disabled",
            error: None,
            incomplete_details: None,
            metadata: self.request.metadata.clone(),
            store: self.request.store.unwrap_or(true),
        }
    }

    /// The model's whole output as an answer: its calls read out when tools were offered.
    pub fn answer(&self, output: &str) -> Answer {
        match &self.tool_output {
            Some(reader) => {
                let parsed = tool_parser::parse(output, reader.format, &reader.names);
                let text = if parsed.calls.is_empty() { output.trim().to_owned() } else { parsed.content.unwrap_or_default() };
                Answer { text, calls: parsed.calls }
            }
            None => Answer { text: output.trim().to_owned(), calls: Vec::new() },
        }
    }

    /// The finished response for `answer`; stored unless the request said `store: false`.
    pub async fn complete(&self, answer: &Answer, usage: Option<&Usage>) -> Result<ResponseObject, ServiceError> {
        let mut output: Vec<OutputItem> = self.file_search_item("completed").into_iter().collect();
        if answer.has_message() {
            output.push(OutputItem::Message(self.message_item(&answer.text, "completed")));
        }
        output.extend(answer.calls.iter().map(|c| OutputItem::FunctionCall(items::function_call_item(c, &c.arguments, "completed"))));
        let response = self.response_object("completed", output, usage);
        if self.request.store.unwrap_or(true) {
            // Only this turn; the history before it stays in the parent's records.
            let mut turn: Vec<Message> = self.conversation[self.turn_start..].to_vec();
            turn.push(answer.stored());
            let record = Record { response: to_value(&response)?, turn, parent: self.request.previous_response_id.clone(), conversation: None };
            let (dir, id, quota) = (self.state_dir.clone(), self.id.clone(), self.quota);
            blocking(move || stored::save(&dir, &id, &record, &quota)).await?;
        }
        Ok(response)
    }

    /// Generate the whole answer (non-streamed requests).
    pub async fn finish(mut self) -> Result<ResponseObject, ServiceError> {
        match (self.fixed_answer.clone(), self.generation.take()) {
            (Some(text), _) => self.complete(&Answer { text, calls: Vec::new() }, None).await,
            (None, Some(generation)) => {
                let done = generation.collect().await?;
                let answer = self.answer(&done.text);
                self.complete(&answer, Some(&done.usage)).await
            }
            (None, None) => Err(ServiceError::Internal("a response with neither an answer nor a generation".into())),
        }
    }
}

/// `GET /v1/responses/{id}`.
pub async fn get(state: &AppState, id: String) -> Result<Value, ServiceError> {
    let dir = state.settings().server.state_dir.clone();
    let quota = Quota::from_limits(&state.settings().limits);
    blocking(move || Ok(stored::load(&dir, &id, &quota)?.response)).await
}

/// `DELETE /v1/responses/{id}`: the id of the response deleted.
pub async fn delete(state: &AppState, id: String) -> Result<String, ServiceError> {
    let dir = state.settings().server.state_dir.clone();
    blocking(move || {
        stored::delete(&dir, &id)?;
        Ok(id)
    })
    .await
}
