//! The Responses API: `POST /v1/responses` (whole, or streamed as the standard Responses
//! events), `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`.
//!
//! A streamed response is produced by a task that writes events into a bounded channel which the
//! HTTP body reads. When the client disconnects the body is dropped, the task's next send fails,
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
use crate::error::ApiError;
use crate::service::responses::{self, Prepared};
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
        return Ok(held::json_when_done(prepared.finish()).await);
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
    let mut index = 0;
    if let Some(item) = p.file_search_item("in_progress") {
        let item_id = item["id"].clone();
        out.emit("response.output_item.added", json!({"output_index": 0, "item": item})).await?;
        for step in ["in_progress", "searching", "completed"] {
            out.emit(&format!("response.file_search_call.{step}"), json!({"output_index": 0, "item_id": item_id})).await?;
        }
        out.emit("response.output_item.done", json!({"output_index": 0, "item": p.file_search_item("completed")})).await?;
        index = 1;
    }
    let item_id = p.message_id.clone();
    let part = |text: &str| json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": text});
    let opening_item = json!({"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []});
    out.emit("response.output_item.added", json!({"output_index": index, "item": opening_item})).await?;
    out.emit("response.content_part.added", json!({"item_id": item_id, "output_index": index, "content_index": 0,
        "part": {"type": "output_text", "text": "", "annotations": []}})).await?;

    let mut text = String::new();
    let mut usage = None;
    if let Some(answer) = p.fixed_answer.clone() {
        out.emit("response.output_text.delta", part(&answer)).await?;
        text = answer;
    } else if let Some(mut generation) = p.generation.take() {
        loop {
            let Ok(event) = tokio::time::timeout(KEEPALIVE, generation.events.next()).await else {
                out.keep_alive().await?;
                continue;
            };
            match event {
                Some(Event::Delta { text: delta, completion_tokens, .. }) => {
                    generation.timer.delta(completion_tokens);
                    out.emit("response.output_text.delta", part(&delta)).await?;
                    text.push_str(&delta);
                }
                Some(Event::Finished { reason, usage: u, queued }) => {
                    generation.timer.finished(reason, &u, queued);
                    usage = Some(u);
                    break;
                }
                Some(Event::Failed(e)) => return fail(&mut out, &p, &ApiError::from(e)).await,
                None => return fail(&mut out, &p, &ApiError::Unavailable("the engine stopped before the response finished".into())).await,
            }
        }
    }

    let message = p.message_item(&text, "completed");
    let content = message["content"][0].clone();
    // The final text may add a sentence the deltas have not carried (an answer over sources that
    // uses none of them says so, `rag::citations::annotate`): stream it too.
    if let Some(rest) = content["text"].as_str().and_then(|t| t.strip_prefix(text.as_str())).filter(|r| !r.is_empty()) {
        out.emit("response.output_text.delta", part(rest)).await?;
        text.push_str(rest);
    }
    for (i, annotation) in content["annotations"].as_array().into_iter().flatten().enumerate() {
        out.emit("response.output_text.annotation.added", json!({"item_id": item_id, "output_index": index, "content_index": 0,
            "annotation_index": i, "annotation": annotation})).await?;
    }
    out.emit("response.output_text.done", json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": text})).await?;
    out.emit("response.content_part.done", json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": content})).await?;
    out.emit("response.output_item.done", json!({"output_index": index, "item": message})).await?;
    match p.complete(&text, usage.as_ref()).await {
        Ok(response) => out.emit("response.completed", json!({"response": response})).await,
        Err(e) => fail(&mut out, &p, &e).await,
    }
}

async fn fail(out: &mut Emitter, p: &Prepared, e: &ApiError) -> Result<(), Closed> {
    let error = e.body()["error"].clone();
    out.emit("error", json!({"code": error["code"], "message": error["message"], "param": error["param"]})).await?;
    let mut failed = p.response_json("failed", Vec::new(), None);
    failed["error"] = json!({"code": "server_error", "message": error["message"]});
    out.emit("response.failed", json!({"response": failed})).await
}
