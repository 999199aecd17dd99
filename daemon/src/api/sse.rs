//! Server-sent events for streamed generations, in OpenAI's chunk format: one `data:` line per
//! chunk, a final chunk carrying `finish_reason`, an optional usage chunk (`stream_options.
//! include_usage`), and `data: [DONE]`. When the client disconnects, actix drops this stream, which
//! drops the generation's events, which frees the sequence at the engine's next step (or, for a
//! remote model, aborts the upstream request). Every event is also fed to the generation's
//! metrics timer.

use actix_web::web::Bytes;
use actix_web::{HttpResponse, ResponseError};
use engine::Usage;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::logprobs::LogprobShape;
use crate::error::ApiError;
use crate::provider::Event;
use crate::service::generate::{usage_json, Generation};

/// How one API's chunks look.
#[derive(Clone, Copy)]
pub struct ChunkShape {
    /// `object` of every chunk.
    pub object: &'static str,
    /// The choice of an opening chunk, if the API sends one (chat sends the role first).
    pub opening: Option<fn() -> Value>,
    /// The choice carrying `text` and/or `finish_reason`.
    pub choice: fn(Option<&str>, Option<&str>) -> Value,
    /// The choice's `logprobs`, when the request asked for them.
    pub logprobs: LogprobShape,
}

struct State {
    generation: Generation,
    shape: ChunkShape,
    opened: bool,
    done: bool,
    /// Characters of text streamed so far (completions' `text_offset`).
    offset: usize,
}

impl State {
    fn envelope(&self, choices: Vec<Value>, usage: Option<&Usage>) -> Bytes {
        let mut chunk = json!({
            "id": self.generation.id,
            "object": self.shape.object,
            "created": self.generation.created,
            "model": self.generation.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage_json(usage);
        }
        event(&chunk)
    }

    fn running_usage(&self, completion_tokens: u32) -> Option<Usage> {
        self.generation.options.continuous_usage_stats.then_some(Usage {
            prompt_tokens: self.generation.events.prompt_tokens().unwrap_or(self.generation.prompt_tokens),
            completion_tokens,
            cached_tokens: 0,
        })
    }

    async fn next_chunks(&mut self) -> Option<Vec<Bytes>> {
        if self.done {
            return None;
        }
        let mut out = Vec::with_capacity(3);
        if !self.opened {
            self.opened = true;
            if let Some(opening) = self.shape.opening {
                out.push(self.envelope(vec![opening()], self.running_usage(0).as_ref()));
            }
        }
        let Ok(next) = tokio::time::timeout(KEEPALIVE, self.generation.events.next()).await else {
            // Nothing yet (queued or in a long prefill): an SSE comment keeps proxies from timing
            // out and, written to a closed connection, makes actix drop this stream, which
            // cancels the request before it costs any compute.
            out.push(Bytes::from_static(b": keep-alive\n\n"));
            return Some(out);
        };
        match next {
            Some(Event::Delta { text, completion_tokens, logprobs }) => {
                self.generation.timer.delta(completion_tokens);
                let usage = self.running_usage(completion_tokens);
                let mut choice = (self.shape.choice)(Some(&text), None);
                if self.generation.logprobs.is_some() {
                    choice["logprobs"] = self.shape.logprobs.json(&logprobs, &mut self.offset);
                }
                out.push(self.envelope(vec![choice], usage.as_ref()));
            }
            Some(Event::Finished { reason, usage, queued }) => {
                self.generation.timer.finished(reason, &usage, queued);
                let running = self.running_usage(usage.completion_tokens);
                out.push(self.envelope(vec![(self.shape.choice)(None, Some(reason.as_str()))], running.as_ref()));
                if self.generation.options.include_usage {
                    out.push(self.envelope(Vec::new(), Some(&usage)));
                }
                out.push(done());
                self.done = true;
            }
            Some(Event::Failed(error)) => {
                if error.status_code().is_server_error() {
                    tracing::error!(%error, "Generation failed after its stream began.");
                }
                out.push(event(&error.body()));
                out.push(done());
                self.done = true;
            }
            None => {
                out.push(event(&ApiError::Unavailable("the engine stopped before the request finished".into()).body()));
                out.push(done());
                self.done = true;
            }
        }
        Some(out)
    }
}

/// How long a stream stays silent before it sends a keep-alive comment.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_millis(500);

fn event(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// Stream a generation to the client.
pub fn respond(generation: Generation, shape: ChunkShape) -> HttpResponse {
    let state = State { generation, shape, opened: false, done: false, offset: 0 };
    let chunks = stream::unfold(state, |mut state| async move {
        let chunks = state.next_chunks().await?;
        Some((stream::iter(chunks.into_iter().map(Ok::<_, actix_web::Error>)), state))
    })
    .flatten();
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(chunks)
}
