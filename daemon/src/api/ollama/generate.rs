//! `POST /api/chat` and `POST /api/generate`: Ollama's fields turned into the OpenAI
//! [`GenerationParams`] (through their JSON, so every check and error of the OpenAI routes
//! applies), submitted with [`generate::start`], and answered as NDJSON or one object.
//!
//! Mapping of `options`: `temperature`, `top_p`, `top_k`, `min_p`, `seed`, `presence_penalty`,
//! `frequency_penalty`, `stop` as named; `num_predict` → `max_tokens` (-1 and -2: no limit but
//! the context and `[limits] max_tokens`); `repeat_penalty` → `repetition_penalty` (llama.cpp's
//! multiplicative penalty); `num_ctx` is checked against the model's `max_model_len` (a larger
//! one is a 400: hearth does not resize a context per request); `mirostat`, `typical_p`, `tfs_z`
//! are refused unless off; the runtime options (`num_gpu`, `num_thread`, ...) are accepted
//! without effect, hearth's configuration decides them. `format`: `"json"` is OpenAI's
//! `json_object`, a schema is `json_schema`. Timings: `prompt_eval_duration` runs from arrival to
//! the first token, `eval_duration` from there to the last, `load_duration` is 0.
//!
//! Tools on `/api/chat`: `tools` are the chat completions' shape, read by the same
//! [`Tools::from_chat`] and offered with `tool_choice` `auto` (Ollama has no other); calls come
//! back as `message.tool_calls` with the arguments as an object and `done_reason: "stop"`, read
//! out of the text by the chat path's parser. Streamed, text passes through while it cannot be a
//! call and each group of calls the parser lets out is one object. History: an assistant's
//! `tool_calls` get ids (`call_<message>_<call>`; Ollama has none) and a `tool` message answers the
//! earliest unanswered call of its `tool_name` (or the earliest unanswered one).

use std::time::Instant;

use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use engine::{ChatMessage, FinishReason, SamplingParams, TokenLogprob, Usage};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;

use super::openai::{LogprobsField, NamedSchema, OpenAiFields, ResponseFormat};
use super::types::{self, ChatChunk, ChatRequest, Common, ErrorBody, FunctionCall, GenerateChunk, GenerateRequest, Logprob, MessageOut, Options, Stats};
use super::{now_rfc3339, resolve, OllamaError};
use crate::api::types::logprobs::finite_logprob;
use crate::api::{held, parse_json, Body};
use crate::error::ApiError;
use crate::provider::{Backend, Event, Prompt};
use crate::service::generate::{self, Generation, GenerationParams};
use crate::service::tool_parser::{self, Piece, StreamParser};
use crate::service::tools::{ChatTools, History, ToolCall, Tools};
use crate::state::AppState;

pub(super) async fn chat(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, OllamaError> {
    let arrived = Instant::now();
    let request: ChatRequest = parse_json(body, &state)?;
    let offered = Tools::from_chat(request.tools.clone().map(Value::Array).as_ref(), None, None)?;
    let (messages, history) = to_messages(request.messages)?;
    let backend = resolve(&state, &request.common.model)?;
    let shape = Shape::Chat;
    if messages.is_empty() {
        return Ok(loaded(&request.common, shape)); // Ollama's "load the model" request
    }
    let params = params(&request.common, &backend, true)?;
    let tools = ChatTools { tools: offered, history };
    let generation = generate::start_with_tools(&state, &params, Prompt::Chat(messages), tools, "ollama").await?;
    Ok(respond(generation, &request.common, shape, arrived).await)
}

pub(super) async fn generate(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, OllamaError> {
    let arrived = Instant::now();
    let request: GenerateRequest = parse_json(body, &state)?;
    let refused = [
        ("suffix", request.suffix.as_ref().is_some_and(|s| !s.is_empty()), "suffix (fill-in-the-middle) is not supported"),
        ("template", request.template.as_ref().is_some_and(|s| !s.is_empty()), "template is not supported: hearth uses the model's own chat template (or send raw: true)"),
        ("context", request.context.as_ref().is_some_and(|c| !c.is_empty()), "context is not supported (deprecated in Ollama): send the conversation to /api/chat"),
        ("images", request.images.as_ref().is_some_and(|i| !i.is_empty()), "images are not supported: hearth serves text models"),
    ];
    if let Some((param, _, message)) = refused.iter().find(|(_, sent, _)| *sent) {
        return Err(ApiError::invalid(param, *message).into());
    }
    let backend = resolve(&state, &request.common.model)?;
    let shape = Shape::Generate;
    let prompt_text = request.prompt.unwrap_or_default();
    if prompt_text.is_empty() {
        return Ok(loaded(&request.common, shape));
    }
    let raw = request.raw.unwrap_or(false);
    let prompt = if raw {
        Prompt::Text(prompt_text)
    } else {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = request.system.filter(|s| !s.is_empty()) {
            messages.push(ChatMessage { role: "system".into(), content: system });
        }
        messages.push(ChatMessage { role: "user".into(), content: prompt_text });
        Prompt::Chat(messages)
    };
    let params = params(&request.common, &backend, !raw)?;
    let generation = generate::start(&state, &params, prompt, "ollama").await?;
    Ok(respond(generation, &request.common, shape, arrived).await)
}

/// The messages as the engine takes them, and their tool parts apart.
fn to_messages(messages: Vec<types::MessageIn>) -> Result<(Vec<ChatMessage>, History), ApiError> {
    let mut history = History::default();
    // Calls not answered yet: (id, name).
    let mut open: Vec<(String, String)> = Vec::new();
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        if m.images.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::invalid(&format!("messages[{i}].images"), "images are not supported: hearth serves text models"));
        }
        if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool") {
            return Err(ApiError::invalid(&format!("messages[{i}].role"), format!("messages[{i}].role {:?} is not one of system, user, assistant, tool", m.role)));
        }
        if let Some(calls) = m.tool_calls.filter(|c| !c.is_empty()) {
            if m.role != "assistant" {
                return Err(ApiError::invalid(&format!("messages[{i}].tool_calls"), format!("messages[{i}] is a {} message; only assistant messages carry tool_calls", m.role)));
            }
            let calls: Vec<ToolCall> = calls
                .into_iter()
                .enumerate()
                .map(|(j, c)| ToolCall { id: format!("call_{i}_{j}"), name: c.function.name, arguments: Value::Object(c.function.arguments).to_string() })
                .collect();
            open.extend(calls.iter().map(|c| (c.id.clone(), c.name.clone())));
            history.calls.push((i, calls));
        }
        if m.role == "tool" {
            let answered = m.tool_name.as_ref().and_then(|name| open.iter().position(|(_, n)| n == name)).or((!open.is_empty()).then_some(0));
            history.results.push((i, answered.map(|k| open.remove(k).0).unwrap_or_default()));
        }
        out.push(ChatMessage { role: m.role, content: m.content.unwrap_or_default() });
    }
    Ok((out, history))
}

/// A call in Ollama's shape (the parser made sure the arguments are an object).
fn ollama_call(call: &ToolCall) -> types::ToolCall {
    let arguments = serde_json::from_str(&call.arguments).unwrap_or_default();
    types::ToolCall { function: FunctionCall { name: call.name.clone(), arguments } }
}

/// The OpenAI parameters for an Ollama request to `backend`. `chat`: the prompt goes through the
/// chat template (log-probabilities are then asked for in chat's form).
fn params(common: &Common, backend: &Backend, chat: bool) -> Result<GenerationParams, ApiError> {
    let mut body = OpenAiFields { model: Some(backend.name()), ..OpenAiFields::default() };
    if let Some(options) = &common.options {
        map_options(options, &mut body)?;
        check_context(options.num_ctx, backend)?;
    }
    body.response_format = match &common.format {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s == "json" => Some(ResponseFormat::JsonObject),
        Some(schema @ Value::Object(_)) => Some(ResponseFormat::JsonSchema { json_schema: NamedSchema { name: "format", schema } }),
        Some(other) => return Err(ApiError::invalid("format", format!("format must be \"json\" or a JSON schema object, got {other}"))),
    };
    if matches!(&common.think, Some(Value::Bool(true)) | Some(Value::String(_))) {
        return Err(ApiError::invalid("think", format!("`{}` does not support thinking", common.model)));
    }
    match (common.logprobs.unwrap_or(false), common.top_logprobs) {
        (true, top) if chat => {
            body.logprobs = Some(LogprobsField::Flag(true));
            body.top_logprobs = Some(top.unwrap_or(0));
        }
        (true, top) => body.logprobs = Some(LogprobsField::Count(top.unwrap_or(0))),
        (false, Some(top)) if top > 0 => return Err(ApiError::invalid("top_logprobs", "top_logprobs needs logprobs: true")),
        (false, _) => {}
    }
    Ok(GenerationParams::from_body(&to_value(&body))?)
}

/// `options` into the OpenAI fields, checking those Ollama names differently.
fn map_options<'a>(o: &'a Options, body: &mut OpenAiFields<'a>) -> Result<(), ApiError> {
    body.sampling = SamplingParams {
        temperature: o.temperature,
        top_p: o.top_p,
        top_k: o.top_k,
        min_p: o.min_p,
        seed: o.seed,
        presence_penalty: o.presence_penalty,
        frequency_penalty: o.frequency_penalty,
        ..SamplingParams::default()
    };
    body.stop = o.stop.as_deref();
    match o.num_predict {
        None | Some(-1 | -2) => {}
        Some(n) if n > 0 => body.max_tokens = Some(n),
        Some(n) => return Err(ApiError::invalid("options.num_predict", format!("options.num_predict must be positive, -1 or -2, got {n}"))),
    }
    if let Some(r) = o.repeat_penalty {
        if !(r.is_finite() && r > 0.0 && r <= 10.0) {
            return Err(ApiError::invalid("options.repeat_penalty", format!("options.repeat_penalty must be above 0 and at most 10, got {r}")));
        }
        body.sampling.repetition_penalty = Some(r);
    }
    let off = [
        ("options.mirostat", o.mirostat.is_some_and(|m| m != 0)),
        ("options.typical_p", o.typical_p.is_some_and(|p| p != 1.0)),
        ("options.tfs_z", o.tfs_z.is_some_and(|z| z != 1.0)),
    ];
    if let Some((param, _)) = off.iter().find(|(_, on)| *on) {
        return Err(ApiError::invalid(param, format!("{param} is not supported: hearth samples with temperature, top_k, top_p and min_p")));
    }
    Ok(())
}

/// `num_ctx` must fit the model's context: hearth does not resize a context per request.
fn check_context(num_ctx: Option<i64>, backend: &Backend) -> Result<(), ApiError> {
    let Some(n) = num_ctx else { return Ok(()) };
    let context = backend.max_model_len();
    if n < 1 || context.is_some_and(|c| n > i64::from(c)) {
        let limit = context.map_or_else(|| "its upstream's".to_owned(), |c| c.to_string());
        return Err(ApiError::invalid(
            "options.num_ctx",
            format!("options.num_ctx is {n}; `{}` serves a context of {limit} tokens (max_model_len) and hearth does not resize it per request", backend.name()),
        ));
    }
    Ok(())
}

/// Which endpoint's objects.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Chat,
    Generate,
}

/// Builds the objects of one answer.
struct Reply {
    model: String,
    shape: Shape,
    arrived: Instant,
    first_token: Option<Instant>,
    logprobs: bool,
}

impl Reply {
    /// One object: `text`, the `calls` (chat), and with `done` the reason and the counts.
    fn object(&self, text: String, calls: &[ToolCall], logprobs: &[TokenLogprob], done: Option<(&'static str, &Usage)>) -> Value {
        let stats = done.map(|(_, usage)| self.stats(usage)).unwrap_or_default();
        self.chunk(text, calls, logprobs, done.is_some(), done.map(|(reason, _)| reason), stats)
    }

    /// One object, every field given: `done_reason` and `stats` are left out when `None`.
    fn chunk(&self, text: String, calls: &[ToolCall], logprobs: &[TokenLogprob], done: bool, done_reason: Option<&'static str>, stats: Stats) -> Value {
        let logprobs = self.logprobs.then(|| logprobs.iter().map(ollama_logprob).collect());
        let (model, created_at) = (self.model.clone(), now_rfc3339());
        match self.shape {
            Shape::Chat => to_value(&ChatChunk {
                model,
                created_at,
                message: MessageOut { role: "assistant", content: text, tool_calls: calls.iter().map(ollama_call).collect() },
                done,
                done_reason,
                logprobs,
                stats,
            }),
            Shape::Generate => to_value(&GenerateChunk { model, created_at, response: text, done, done_reason, logprobs, stats }),
        }
    }

    fn stats(&self, usage: &Usage) -> Stats {
        let now = Instant::now();
        let first = self.first_token.unwrap_or(now);
        Stats {
            total_duration: Some(super::nanos(now - self.arrived)),
            load_duration: Some(0),
            prompt_eval_count: Some(usage.prompt_tokens),
            prompt_eval_duration: Some(super::nanos(first - self.arrived)),
            eval_count: Some(usage.completion_tokens),
            eval_duration: Some(super::nanos(now - first)),
        }
    }
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn ollama_logprob(t: &TokenLogprob) -> Logprob {
    let one = |c: &engine::Candidate, top| Logprob {
        token: String::from_utf8_lossy(&c.bytes).into_owned(),
        logprob: finite_logprob(c.logprob),
        bytes: c.bytes.clone(),
        top_logprobs: top,
    };
    one(&t.chosen, t.top.iter().map(|c| one(c, Vec::new())).collect())
}

/// Ollama's answer to a request with nothing to generate: the model is loaded (it always is).
fn loaded(common: &Common, shape: Shape) -> HttpResponse {
    let reply = Reply { model: common.model.clone(), shape, arrived: Instant::now(), first_token: None, logprobs: false };
    HttpResponse::Ok().json(reply.chunk(String::new(), &[], &[], true, Some("load"), Stats::default()))
}

/// What the consumer of a generation gets next.
enum Step {
    Text(String, Vec<TokenLogprob>),
    Done(FinishReason, Usage),
    Failed(ApiError),
}

/// The next event of `generation`, with the metrics fed as the SSE writer feeds them.
async fn next(generation: &mut Generation, reply: &mut Reply) -> Step {
    match generation.events.next().await {
        Some(Event::Delta { text, completion_tokens, logprobs }) => {
            generation.timer.delta(completion_tokens);
            reply.first_token.get_or_insert_with(Instant::now);
            Step::Text(text, logprobs)
        }
        Some(Event::Finished { reason, usage, queued }) => {
            generation.timer.finished(reason, &usage, queued);
            Step::Done(reason, usage)
        }
        Some(Event::Failed(error)) => Step::Failed(ApiError::from(error)),
        None => Step::Failed(ApiError::Unavailable("the engine stopped before the request finished".into())),
    }
}

/// Ollama's `done_reason`: `stop` when the answer made calls, as Ollama reports it.
fn done_reason(reason: FinishReason, called: bool) -> &'static str {
    if called { "stop" } else { reason.as_str() }
}

async fn respond(generation: Generation, common: &Common, shape: Shape, arrived: Instant) -> HttpResponse {
    let reply = Reply { model: common.model.clone(), shape, arrived, first_token: None, logprobs: generation.logprobs.is_some() };
    if common.stream.unwrap_or(true) {
        stream_ndjson(generation, reply)
    } else {
        held::json_when_done(whole(generation, reply)).await
    }
}

/// The whole answer as one object.
async fn whole(mut generation: Generation, mut reply: Reply) -> Result<Value, ApiError> {
    let (mut text, mut logprobs) = (String::new(), Vec::new());
    loop {
        match next(&mut generation, &mut reply).await {
            Step::Text(delta, tokens) => {
                text.push_str(&delta);
                logprobs.extend(tokens);
            }
            Step::Done(reason, usage) => {
                let (text, calls) = match &generation.tools {
                    Some(reader) => {
                        let parsed = tool_parser::parse(&text, reader.format, &reader.names);
                        if parsed.calls.is_empty() { (text, parsed.calls) } else { (parsed.content.unwrap_or_default(), parsed.calls) }
                    }
                    None => (text, Vec::new()),
                };
                let reason = done_reason(reason, !calls.is_empty());
                return Ok(reply.object(text, &calls, &logprobs, Some((reason, &usage))));
            }
            Step::Failed(error) => return Err(error),
        }
    }
}

/// A streamed answer: the generation, the reply's shape and, when tools were offered, the reader
/// of calls with the log-probabilities of text it holds back and the calls it let out (sent
/// together in one object at the end, as Ollama sends them).
struct Streamer {
    generation: Generation,
    reply: Reply,
    reader: Option<StreamParser>,
    held_logprobs: Vec<TokenLogprob>,
    held_calls: Vec<ToolCall>,
    done: bool,
}

impl Streamer {
    /// The objects for the text the reader let out; its calls are held for the end.
    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<Value> {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Text(text) => {
                    let logprobs = std::mem::take(&mut self.held_logprobs);
                    out.push(self.reply.object(text, &[], &logprobs, None));
                }
                Piece::Call { call, .. } => self.held_calls.push(call),
            }
        }
        out
    }

    async fn next_lines(&mut self) -> Option<Vec<Value>> {
        if self.done {
            return None;
        }
        Some(match next(&mut self.generation, &mut self.reply).await {
            Step::Text(text, tokens) => match &mut self.reader {
                None => vec![self.reply.object(text, &[], &tokens, None)],
                Some(reader) => {
                    let pieces = reader.push(&text);
                    self.held_logprobs.extend(tokens);
                    self.pieces(pieces)
                }
            },
            Step::Done(reason, usage) => {
                self.done = true;
                let mut lines = match &mut self.reader {
                    None => Vec::new(),
                    Some(reader) => {
                        let pieces = reader.finish();
                        self.pieces(pieces)
                    }
                };
                let called = !self.held_calls.is_empty();
                if called {
                    lines.push(self.reply.object(String::new(), &self.held_calls, &[], None));
                }
                lines.push(self.reply.object(String::new(), &[], &[], Some((done_reason(reason, called), &usage))));
                lines
            }
            Step::Failed(error) => {
                self.done = true;
                if actix_web::ResponseError::status_code(&error).is_server_error() {
                    tracing::error!(%error, "Generation failed after its stream began.");
                }
                vec![to_value(&ErrorBody { error: OllamaError(error).to_string() })]
            }
        })
    }
}

/// One object a line; the last has `done: true`, or is `{"error": "..."}` when the generation
/// failed after the answer began. Dropping the stream (the client left) cancels the generation.
fn stream_ndjson(generation: Generation, reply: Reply) -> HttpResponse {
    let reader = generation.tools.as_ref().map(|t| StreamParser::new(t.format, t.names.clone()));
    let streamer = Streamer { generation, reply, reader, held_logprobs: Vec::new(), held_calls: Vec::new(), done: false };
    let lines = stream::unfold(streamer, |mut streamer| async move {
        let lines = streamer.next_lines().await?;
        let bytes = lines.into_iter().map(|value| Ok::<_, actix_web::Error>(Bytes::from(format!("{value}\n"))));
        Some((stream::iter(bytes), streamer))
    })
    .flatten();
    HttpResponse::Ok().content_type("application/x-ndjson").insert_header(("Cache-Control", "no-cache")).streaming(lines)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mapped(o: &Options) -> Result<Value, String> {
        let mut body = OpenAiFields::default();
        map_options(o, &mut body).map(|()| to_value(&body)).map_err(|e| e.to_string())
    }

    #[test]
    fn options_map_to_openais_fields_and_unsupported_samplers_are_refused_unless_off() {
        let off = Options { mirostat: Some(0), typical_p: Some(1.0), tfs_z: Some(1.0), num_gpu: Some(99), num_predict: Some(-1), ..Options::default() };
        assert_eq!(mapped(&off), Ok(json!({})), "runtime options and samplers left off change nothing");
        assert!(mapped(&Options { mirostat: Some(2), ..Options::default() }).is_err_and(|e| e.contains("options.mirostat")));
        assert!(mapped(&Options { typical_p: Some(0.5), ..Options::default() }).is_err_and(|e| e.contains("options.typical_p")));
        assert!(mapped(&Options { num_predict: Some(0), ..Options::default() }).is_err_and(|e| e.contains("num_predict must be positive")));
        assert!(mapped(&Options { repeat_penalty: Some(0.0), ..Options::default() }).is_err_and(|e| e.contains("repeat_penalty")));
        let o = Options { num_predict: Some(7), repeat_penalty: Some(1.1), stop: Some(vec!["x".into()]), temperature: Some(0.0), seed: Some(3), ..Options::default() };
        assert_eq!(mapped(&o), Ok(json!({"max_tokens": 7, "repetition_penalty": 1.1, "stop": ["x"], "temperature": 0.0, "seed": 3})));
    }

    #[test]
    fn format_and_logprobs_become_openais_fields() {
        let schema = json!({"type": "object"});
        let body = OpenAiFields {
            response_format: Some(ResponseFormat::JsonSchema { json_schema: NamedSchema { name: "format", schema: &schema } }),
            logprobs: Some(LogprobsField::Count(2)),
            ..OpenAiFields::default()
        };
        assert_eq!(to_value(&body), json!({"response_format": {"type": "json_schema", "json_schema": {"name": "format", "schema": {"type": "object"}}}, "logprobs": 2}));
        let body = OpenAiFields { model: Some("m"), response_format: Some(ResponseFormat::JsonObject), logprobs: Some(LogprobsField::Flag(true)), top_logprobs: Some(0), ..OpenAiFields::default() };
        assert_eq!(to_value(&body), json!({"model": "m", "response_format": {"type": "json_object"}, "logprobs": true, "top_logprobs": 0}));
    }

    #[test]
    fn unknown_options_are_named() {
        let err = serde_json::from_value::<Options>(json!({"temperature": 0.1, "nucleus": 3})).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("nucleus"), "{err}");
    }

    #[test]
    fn a_request_with_nothing_to_generate_answers_done_with_reason_load_and_no_counts() {
        let reply = Reply { model: "m".into(), shape: Shape::Generate, arrived: Instant::now(), first_token: None, logprobs: false };
        let wire = reply.chunk(String::new(), &[], &[], true, Some("load"), Stats::default()).to_string();
        let wire = wire.split_once(",\"response\"").map(|(_, rest)| rest.to_owned()).unwrap_or(wire);
        assert_eq!(wire, r#":"","done":true,"done_reason":"load"}"#);
        let failed = to_value(&ErrorBody { error: OllamaError(ApiError::Overloaded("full".into())).to_string() });
        assert!(failed.as_object().is_some_and(|o| o.len() == 1 && o["error"].as_str().is_some_and(|e| e.contains("full"))), "{failed}");
    }

    #[test]
    fn a_token_logprob_takes_ollamas_shape() {
        let c = |t: &str, lp| engine::Candidate { token: 1, bytes: t.as_bytes().to_vec(), logprob: lp };
        let t = TokenLogprob { chosen: c("a", -0.5), top: vec![c("a", -0.5), c("b", f32::NEG_INFINITY)] };
        let v = to_value(&ollama_logprob(&t));
        assert_eq!(v, json!({"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": [
            {"token": "a", "logprob": -0.5, "bytes": [97]}, {"token": "b", "logprob": -9999.0, "bytes": [98]}]}));
    }

    #[test]
    fn history_calls_get_ids_and_tool_results_answer_them_by_name_then_in_order() {
        let messages: Vec<types::MessageIn> = serde_json::from_value(json!([
            {"role": "user", "content": "Weather and time in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                {"function": {"name": "get_time", "arguments": {"zone": "CET"}}}]},
            {"role": "tool", "content": "12:00", "tool_name": "get_time"},
            {"role": "tool", "content": "12 C"},
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        let (chat, history) = to_messages(messages).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(chat.len(), 4);
        assert_eq!(history.calls.len(), 1);
        let calls = &history.calls[0].1;
        assert_eq!((calls[0].id.as_str(), calls[0].arguments.as_str()), ("call_1_0", r#"{"city":"Oslo"}"#));
        assert_eq!(history.results, vec![(2, "call_1_1".to_owned()), (3, "call_1_0".to_owned())]);
        let user_calls: Vec<types::MessageIn> =
            serde_json::from_value(json!([{"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}])).unwrap_or_else(|e| panic!("{e}"));
        let err = to_messages(user_calls).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("only assistant messages carry tool_calls"), "{err}");
        let text_args = serde_json::from_value::<Vec<types::MessageIn>>(json!([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]));
        assert!(text_args.is_err(), "arguments are an object in Ollama's shape, not JSON text");
        let out = ollama_call(&ToolCall { id: "call_1".into(), name: "f".into(), arguments: r#"{"a":1}"#.into() });
        assert_eq!(to_value(&out), json!({"function": {"name": "f", "arguments": {"a": 1}}}));
    }
}
