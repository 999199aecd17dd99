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
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use super::{accepted, held, parse_body, Body};
use super::sse;
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
        return Ok(held::json_when_done(async move { prepared.finish().await.map_err(ApiError::from) }).await);
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
    Ok(HttpResponse::Ok().json(responses::delete(&state, id.into_inner()).await?))
}

/// The client went away.
struct Closed;

struct Emitter {
    tx: mpsc::Sender<Bytes>,
    sequence: u64,
}

impl Emitter {
    async fn emit(&mut self, kind: &str, mut data: Value) -> Result<(), Closed> {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
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
    let opening = p.response_json("in_progress", Vec::new(), None);
    out.emit("response.created", json!({"response": opening})).await?;
    out.emit("response.in_progress", json!({"response": opening})).await?;
    let mut items = Items::default();
    if let Some(item) = p.file_search_item("in_progress") {
        let item_id = item["id"].clone();
        let index = items.next_index();
        out.emit("response.output_item.added", json!({"output_index": index, "item": item})).await?;
        for step in ["in_progress", "searching", "completed"] {
            out.emit(&format!("response.file_search_call.{step}"), json!({"output_index": index, "item_id": item_id})).await?;
        }
        out.emit("response.output_item.done", json!({"output_index": index, "item": p.file_search_item("completed")})).await?;
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
        Ok(response) => out.emit("response.completed", json!({"response": response})).await,
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
                out.emit("response.output_text.delta", json!({"item_id": p.message_id, "output_index": index, "content_index": 0, "delta": text})).await?;
                self.answer.text.push_str(&text);
                Ok(())
            }
            Piece::Call { call, .. } => {
                self.close_message(out, p).await?;
                let index = self.next_index();
                let item_id = items::item_id(&call);
                out.emit("response.output_item.added", json!({"output_index": index, "item": items::function_call_item(&call, "", "in_progress")})).await?;
                for fragment in sse::fragments(&call.arguments, sse::ARGUMENT_FRAGMENT) {
                    out.emit("response.function_call_arguments.delta", json!({"item_id": item_id, "output_index": index, "delta": fragment})).await?;
                }
                out.emit("response.function_call_arguments.done", json!({"item_id": item_id, "output_index": index, "arguments": call.arguments})).await?;
                out.emit("response.output_item.done", json!({"output_index": index, "item": items::function_call_item(&call, &call.arguments, "completed")})).await?;
                self.answer.calls.push(call);
                Ok(())
            }
        }
    }

    async fn open_message(&mut self, out: &mut Emitter, p: &Prepared) -> Result<usize, Closed> {
        let index = self.next_index();
        self.message = Some(index);
        let item = json!({"type": "message", "id": p.message_id, "status": "in_progress", "role": "assistant", "content": []});
        out.emit("response.output_item.added", json!({"output_index": index, "item": item})).await?;
        out.emit("response.content_part.added", json!({"item_id": p.message_id, "output_index": index, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}})).await?;
        Ok(index)
    }

    async fn close_message(&mut self, out: &mut Emitter, p: &Prepared) -> Result<(), Closed> {
        let Some(index) = self.message.filter(|_| !self.message_closed) else {
            self.message_closed = true;
            return Ok(());
        };
        self.message_closed = true;
        let message = p.message_item(&self.answer.text, "completed");
        let content = message["content"][0].clone();
        // The final text may add a sentence the deltas have not carried (an answer over sources that
        // uses none of them says so, `rag::citations::annotate`): stream it too.
        if let Some(rest) = content["text"].as_str().and_then(|t| t.strip_prefix(self.answer.text.as_str())).filter(|r| !r.is_empty()) {
            out.emit("response.output_text.delta", json!({"item_id": p.message_id, "output_index": index, "content_index": 0, "delta": rest})).await?;
            self.answer.text.push_str(rest);
        }
        let (item_id, text) = (&p.message_id, &self.answer.text);
        for (i, annotation) in content["annotations"].as_array().into_iter().flatten().enumerate() {
            out.emit("response.output_text.annotation.added", json!({"item_id": item_id, "output_index": index, "content_index": 0,
                "annotation_index": i, "annotation": annotation})).await?;
        }
        out.emit("response.output_text.done", json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": text})).await?;
        out.emit("response.content_part.done", json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": content})).await?;
        out.emit("response.output_item.done", json!({"output_index": index, "item": message})).await
    }
}

async fn fail(out: &mut Emitter, p: &Prepared, e: &ApiError) -> Result<(), Closed> {
    let error = e.body()["error"].clone();
    out.emit("error", json!({"code": error["code"], "message": error["message"], "param": error["param"]})).await?;
    let mut failed = p.response_json("failed", Vec::new(), None);
    failed["error"] = json!({"code": "server_error", "message": error["message"]});
    out.emit("response.failed", json!({"response": failed})).await
}
