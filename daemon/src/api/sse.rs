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

use super::logprobs::LogprobShape;
use super::types::completions::{Chunk, ChunkChoice, Usage as UsageBody};
use crate::error::ApiError;
use crate::provider::Event;
use crate::service::generate::Generation;
use crate::service::tool_parser::{Piece, StreamParser};
use crate::service::tools::ToolCall;

/// How one API's chunks look.
#[derive(Clone, Copy)]
pub struct ChunkShape {
    /// `object` of every chunk.
    pub object: &'static str,
    /// The choice of an opening chunk, if the API sends one (chat sends the role first).
    pub opening: Option<fn() -> ChunkChoice>,
    /// The choice carrying `text` and/or `finish_reason`.
    pub choice: fn(Option<&str>, Option<&str>) -> ChunkChoice,
    /// The choice's `logprobs`, when the request asked for them.
    pub logprobs: LogprobShape,
    /// The `delta` of one piece of a tool call (chat only): the call's index, and either its
    /// start (`Some(call)`: id, type, name, empty arguments) or a fragment of its arguments.
    pub tool_call: Option<fn(usize, ToolDelta<'_>) -> ChunkChoice>,
}

/// One piece of a streamed tool call.
#[derive(Debug, Clone, Copy)]
pub enum ToolDelta<'a> {
    /// Its id, type and function name.
    Start(&'a ToolCall),
    /// A fragment of its arguments' JSON text.
    Arguments(&'a str),
}

/// Arguments go out in fragments of at most this many bytes (on character boundaries), as
/// OpenAI streams them; clients concatenate them.
pub(super) const ARGUMENT_FRAGMENT: usize = 24;

/// `text` cut into fragments of at most `max` bytes, never inside a character.
pub(super) fn fragments(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(max);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            // One character longer than `max`: it goes out whole.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

struct State {
    generation: Generation,
    shape: ChunkShape,
    opened: bool,
    done: bool,
    /// Characters of text streamed so far (completions' `text_offset`).
    offset: usize,
    /// Reads tool calls out of the text, when tools were offered.
    tools: Option<StreamParser>,
}

impl State {
    fn envelope(&self, choices: Vec<ChunkChoice>, usage: Option<&Usage>) -> Bytes {
        event(&Chunk {
            id: &self.generation.id,
            object: self.shape.object,
            created: self.generation.created,
            model: &self.generation.model,
            choices,
            usage: usage.map(UsageBody::from),
        })
    }

    fn running_usage(&self, completion_tokens: u32) -> Option<Usage> {
        self.generation.options.continuous_usage_stats.then_some(Usage {
            prompt_tokens: self.generation.events.prompt_tokens().unwrap_or(self.generation.prompt_tokens),
            completion_tokens,
            cached_tokens: 0,
        })
    }

    /// Chunks for what the tool-call reader let out: text as content, each call as its start and
    /// its arguments in fragments.
    fn tool_pieces(&self, pieces: Vec<Piece>, usage: Option<&Usage>, out: &mut Vec<Bytes>) {
        let Some(tool_call) = self.shape.tool_call else { return };
        for piece in pieces {
            match piece {
                Piece::Text(text) => out.push(self.envelope(vec![(self.shape.choice)(Some(&text), None)], usage)),
                Piece::Call { index, call } => {
                    out.push(self.envelope(vec![tool_call(index, ToolDelta::Start(&call))], usage));
                    for fragment in fragments(&call.arguments, ARGUMENT_FRAGMENT) {
                        out.push(self.envelope(vec![tool_call(index, ToolDelta::Arguments(fragment))], usage));
                    }
                }
            }
        }
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
                if let Some(parser) = &mut self.tools {
                    let pieces = parser.push(&text);
                    self.tool_pieces(pieces, usage.as_ref(), &mut out);
                } else {
                    let mut choice = (self.shape.choice)(Some(&text), None);
                    if self.generation.logprobs.is_some() {
                        choice.set_logprobs(self.shape.logprobs.json(&logprobs, &mut self.offset));
                    }
                    out.push(self.envelope(vec![choice], usage.as_ref()));
                }
            }
            Some(Event::Finished { reason, usage, queued }) => {
                self.generation.timer.finished(reason, &usage, queued);
                let running = self.running_usage(usage.completion_tokens);
                let mut finish = reason.as_str();
                if let Some(parser) = &mut self.tools {
                    let pieces = parser.finish();
                    if parser.calls() > 0 {
                        finish = "tool_calls";
                    }
                    self.tool_pieces(pieces, running.as_ref(), &mut out);
                }
                out.push(self.envelope(vec![(self.shape.choice)(None, Some(finish))], running.as_ref()));
                if self.generation.options.include_usage {
                    out.push(self.envelope(Vec::new(), Some(&usage)));
                }
                out.push(done());
                self.done = true;
            }
            Some(Event::Failed(error)) => {
                let error = ApiError::from(error);
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

/// One `data:` event. A body that cannot be written as JSON (none of hearth's can: their maps
/// have string keys) becomes an error event rather than a broken line.
fn event<T: serde::Serialize>(value: &T) -> Bytes {
    match serde_json::to_string(value) {
        Ok(json) => Bytes::from(format!("data: {json}\n\n")),
        Err(e) => Bytes::from(format!("data: {}\n\n", ApiError::Internal(format!("a chunk could not be written as JSON: {e}")).body())),
    }
}

fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// Stream a generation to the client.
pub fn respond(generation: Generation, shape: ChunkShape) -> HttpResponse {
    let tools = match (&generation.tools, shape.tool_call) {
        (Some(reader), Some(_)) => Some(StreamParser::new(reader.format, reader.names.clone())),
        _ => None,
    };
    let state = State { generation, shape, opened: false, done: false, offset: 0, tools };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_fragments_join_to_the_arguments_and_never_split_a_character() {
        let args = r#"{"city": "Zürich", "note": "ünïcödé everywhere ☃☃☃"}"#;
        for max in [1, 2, 5, 24, 1000] {
            let parts = fragments(args, max);
            assert_eq!(parts.concat(), args);
            assert!(parts.iter().all(|p| !p.is_empty() && (p.len() <= max || p.chars().count() == 1)), "{parts:?}");
        }
        assert!(fragments("", 4).is_empty());
    }
}
