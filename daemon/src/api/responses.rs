//! The Responses API: `POST /v1/responses` (whole, or streamed as the standard Responses
//! events), `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`.
//!
//! A streamed response is produced by a task that writes events into a bounded channel which the
//! HTTP body reads. Its output items open as the answer comes: the message at its first text;
//! a function call, once its block is complete, as `response.output_item.added` (empty
//! arguments), `response.function_call_arguments.delta` fragments, `...arguments.done` and
//! `response.output_item.done`, the order the SDK's stream helper accumulates. When the client disconnects the body is dropped, the task's next send fails,
//! and dropping the task's token stream frees the sequence in the engine.

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use crate::provider::Event;
use serde::Serialize;
use tokio::sync::mpsc;

use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use super::{accepted, held, parse_body, Body};
use super::sse;
use super::types::responses::{
    AnnotationAdded, ArgumentsDelta, ArgumentsDone, ContentPartEvent, Envelope, FileSearchEvent, MessageItem, OutputItem, OutputItemEvent, OutputText,
    ResponseEvent, StreamError, TextDelta, TextDone,
};
use super::types::{completions::to_json, Deleted};
use crate::service::response_object::ResponseError;
use crate::error::ApiError;
use crate::service::response_items::{self as items, Answer};
use crate::service::responses::{self, Prepared};
use crate::service::tool_parser::{Piece, StreamParser};
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::post("/v1/responses", Scope::Infer, BodyKind::Json), create)
        .add(Route::get("/v1/responses/{id}", Scope::Read), get)
        .add(Route::delete("/v1/responses/{id}", Scope::Admin), delete);
}

async fn create(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let body = parse_body(body, &state)?;
    accepted::check(&body, accepted::Endpoint::Responses)?;
    let prepared = responses::prepare(&state, &body).await?;
    if !prepared.streaming() {
        return Ok(held::json_when_done(async move { to_json(&prepared.finish().await?) }).await);
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    actix_web::rt::spawn(async move {
        let _ = stream_events(prepared, Emitter { tx, sequence: 0 }).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx)) });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(responses::get(&state, id.into_inner()).await?))
}

async fn delete(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = responses::delete(&state, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(Deleted::new(id, "response")))
}

/// The client went away.
struct Closed;

struct Emitter {
    tx: mpsc::Sender<Bytes>,
    sequence: u64,
}

impl Emitter {
    /// Send `data` as event `kind`. It goes through `serde_json::Value` as the whole response does
    /// (`held::json_when_done`), so a number prints the same in both.
    async fn emit<T: Serialize>(&mut self, kind: &str, data: &T) -> Result<(), Closed> {
        let envelope = Envelope { data, kind, sequence_number: self.sequence };
        self.sequence += 1;
        let data = match serde_json::to_value(&envelope) {
            Ok(data) => data,
            Err(e) => {
                // Nothing in these types can fail to serialize; if it ever does, the stream ends
                // rather than sending a malformed event.
                tracing::error!(event = kind, error = %e, "A response event could not be written as JSON.");
                return Err(Closed);
            }
        };
        self.tx.send(Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))).await.map_err(|_| Closed)
    }

    async fn keep_alive(&mut self) -> Result<(), Closed> {
        self.tx.send(Bytes::from_static(b": keep-alive\n\n")).await.map_err(|_| Closed)
    }
}

/// How long the stream stays silent before a keep-alive comment (which also detects a client
/// that has gone while the prompt is still being processed).
const KEEPALIVE: Duration = Duration::from_millis(500);

async fn stream_events(mut p: Prepared, mut out: Emitter) -> Result<(), Closed> {
    let opening = p.response_object("in_progress", Vec::new(), None);
    out.emit("response.created", &ResponseEvent { response: &opening }).await?;
    out.emit("response.in_progress", &ResponseEvent { response: &opening }).await?;
    let mut items = Items::default();
    if let (Some(item), Some(done)) = (p.file_search_item("in_progress"), p.file_search_item("completed")) {
        let item_id = match &item {
            OutputItem::FileSearchCall(call) => call.id.clone(),
            _ => String::new(),
        };
        let index = items.next_index();
        out.emit("response.output_item.added", &OutputItemEvent { output_index: index, item: &item }).await?;
        for step in ["in_progress", "searching", "completed"] {
            out.emit(&format!("response.file_search_call.{step}"), &FileSearchEvent { output_index: index, item_id: &item_id }).await?;
        }
        out.emit("response.output_item.done", &OutputItemEvent { output_index: index, item: &done }).await?;
    }

    let mut usage = None;
    if let Some(answer) = p.fixed_answer.clone() {
        items.piece(&mut out, &p, Piece::Text(answer)).await?;
    } else if let Some(mut generation) = p.generation.take() {
        let mut reader = p.tool_output.as_ref().map(|t| StreamParser::new(t.format, t.names.clone()));
        loop {
            let Ok(event) = tokio::time::timeout(KEEPALIVE, generation.events.next()).await else {
                out.keep_alive().await?;
                continue;
            };
            match event {
                Some(Event::Delta { text: delta, completion_tokens, .. }) => {
                    generation.timer.delta(completion_tokens);
                    let pieces = match &mut reader {
                        Some(reader) => reader.push(&delta),
                        None => vec![Piece::Text(delta)],
                    };
                    for piece in pieces {
                        items.piece(&mut out, &p, piece).await?;
                    }
                }
                Some(Event::Finished { reason, usage: u, queued }) => {
                    generation.timer.finished(reason, &u, queued);
                    for piece in reader.as_mut().map(StreamParser::finish).unwrap_or_default() {
                        items.piece(&mut out, &p, piece).await?;
                    }
                    usage = Some(u);
                    break;
                }
                Some(Event::Failed(e)) => return fail(&mut out, &p, &ApiError::from(e)).await,
                None => return fail(&mut out, &p, &ApiError::Unavailable("the engine stopped before the response finished".into())).await,
            }
        }
    }
    if items.answer.has_message() && items.message.is_none() {
        items.open_message(&mut out, &p).await?; // an empty answer still has its message
    }
    items.close_message(&mut out, &p).await?;
    match p.complete(&items.answer, usage.as_ref()).await {
        Ok(response) => out.emit("response.completed", &ResponseEvent { response: &response }).await,
        Err(e) => fail(&mut out, &p, &e.into()).await,
    }
}

/// The output items of a stream as the answer comes: the message item opens at the first text
/// and closes before the first call; each call is an item of its own.
#[derive(Default)]
struct Items {
    /// Output items so far.
    count: usize,
    /// The message item's output index, while it is open or once it was.
    message: Option<usize>,
    /// The message is closed (no more text goes into it).
    message_closed: bool,
    answer: Answer,
}

impl Items {
    fn next_index(&mut self) -> usize {
        self.count += 1;
        self.count - 1
    }

    async fn piece(&mut self, out: &mut Emitter, p: &Prepared, piece: Piece) -> Result<(), Closed> {
        match piece {
            Piece::Text(text) if text.is_empty() => Ok(()),
            Piece::Text(text) => {
                if self.message_closed {
                    // Text after a call: the tool grammar leaves none; never a second message.
                    tracing::debug!(len = text.len(), "Text after a function call was dropped from the stream.");
                    return Ok(());
                }
                let index = match self.message {
                    Some(index) => index,
                    None => self.open_message(out, p).await?,
                };
                out.emit("response.output_text.delta", &TextDelta { item_id: &p.message_id, output_index: index, content_index: 0, delta: &text }).await?;
                self.answer.text.push_str(&text);
                Ok(())
            }
            Piece::Call { call, .. } => {
                self.close_message(out, p).await?;
                let index = self.next_index();
                let item_id = items::item_id(&call);
                let opened = OutputItem::FunctionCall(items::function_call_item(&call, "", "in_progress"));
                out.emit("response.output_item.added", &OutputItemEvent { output_index: index, item: &opened }).await?;
                for fragment in sse::fragments(&call.arguments, sse::ARGUMENT_FRAGMENT) {
                    out.emit("response.function_call_arguments.delta", &ArgumentsDelta { item_id: &item_id, output_index: index, delta: fragment }).await?;
                }
                out.emit("response.function_call_arguments.done", &ArgumentsDone { item_id: &item_id, output_index: index, arguments: &call.arguments }).await?;
                let done = OutputItem::FunctionCall(items::function_call_item(&call, &call.arguments, "completed"));
                out.emit("response.output_item.done", &OutputItemEvent { output_index: index, item: &done }).await?;
                self.answer.calls.push(call);
                Ok(())
            }
        }
    }

    async fn open_message(&mut self, out: &mut Emitter, p: &Prepared) -> Result<usize, Closed> {
        let index = self.next_index();
        self.message = Some(index);
        let item = OutputItem::Message(MessageItem { id: p.message_id.clone(), status: "in_progress", role: "assistant", content: Vec::new() });
        out.emit("response.output_item.added", &OutputItemEvent { output_index: index, item: &item }).await?;
        let part = OutputText::opening();
        out.emit("response.content_part.added", &ContentPartEvent { item_id: &p.message_id, output_index: index, content_index: 0, part: &part }).await?;
        Ok(index)
    }

    async fn close_message(&mut self, out: &mut Emitter, p: &Prepared) -> Result<(), Closed> {
        let Some(index) = self.message.filter(|_| !self.message_closed) else {
            self.message_closed = true;
            return Ok(());
        };
        self.message_closed = true;
        let message = p.message_item(&self.answer.text, "completed");
        let Some(content) = message.content.first() else {
            return Ok(()); // message_item always has its one part
        };
        // The final text may add a sentence the deltas have not carried (an answer over sources that
        // uses none of them says so, `rag::citations::annotate`): stream it too.
        if let Some(rest) = content.text.strip_prefix(self.answer.text.as_str()).filter(|r| !r.is_empty()) {
            out.emit("response.output_text.delta", &TextDelta { item_id: &p.message_id, output_index: index, content_index: 0, delta: rest }).await?;
            self.answer.text.push_str(rest);
        }
        let (item_id, text) = (p.message_id.as_str(), self.answer.text.as_str());
        for (i, annotation) in content.annotations.iter().enumerate() {
            let added = AnnotationAdded { item_id, output_index: index, content_index: 0, annotation_index: i, annotation };
            out.emit("response.output_text.annotation.added", &added).await?;
        }
        out.emit("response.output_text.done", &TextDone { item_id, output_index: index, content_index: 0, text }).await?;
        out.emit("response.content_part.done", &ContentPartEvent { item_id, output_index: index, content_index: 0, part: content }).await?;
        let message = OutputItem::Message(message);
        out.emit("response.output_item.done", &OutputItemEvent { output_index: index, item: &message }).await
    }
}

async fn fail(out: &mut Emitter, p: &Prepared, e: &ApiError) -> Result<(), Closed> {
    let error = e.body()["error"].clone();
    out.emit("error", &StreamError { code: error["code"].clone(), message: error["message"].clone(), param: error["param"].clone() }).await?;
    let mut failed = p.response_object("failed", Vec::new(), None);
    let message = error["message"].as_str().map(str::to_owned).unwrap_or_else(|| error["message"].to_string());
    failed.error = Some(ResponseError { code: "server_error", message });
    out.emit("response.failed", &ResponseEvent { response: &failed }).await
}
