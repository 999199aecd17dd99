//! Where a model runs: [`Backend::Local`] (an [`Engine`] in this process, llama.cpp) or
//! [`Backend::Remote`] (a [`RemoteClient`] of an OpenAI-compatible server: vLLM, llm-d, KServe).
//!
//! The service layer validates a request once, hearth's way, and hands the backend a plain
//! [`GenerateSpec`] or [`EmbedInput`]; what comes back is the same for both: an [`Events`]
//! stream of [`Event`]s for a generation, an [`Embedded`] for embeddings. Handlers, the SSE
//! writer, the metrics and the RAG and ingestion code therefore never ask which kind a model is.
//!
//! What differs, and where:
//! - **Tokens.** A local model tokenizes, applies its chat template and checks the context here
//!   ([`local`]). A remote model has no tokenizer in hearth: the upstream applies its template and
//!   enforces its context (its 400 is passed through), and [`Backend::count_tokens`] is an
//!   approximation (one token per 4 bytes of UTF-8, rounded up) for sizing chunks and RAG context.
//! - **Sampling.** [`engine::SamplingParams`] holds what the client set, range-checked; a local
//!   model's sampler fills in defaults, a remote upstream is sent the same struct serialized (only
//!   the fields the client set), so its defaults apply.
//! - **Health.** A local engine has a heartbeat and a thread that may stop ([`liveness`]: the
//!   systemd watchdog, `/ready` and `/health` watch them); a remote model is ready when its
//!   upstream answers `GET {base_url}/models` ([`Backend::check_ready`]).

pub mod liveness;
pub mod local;
pub mod remote;
pub mod tools;

use std::time::Duration;

use std::sync::Arc;

use engine::{ChatMessage, Engine, EngineStats, FinishReason, ModelKind, SamplingParams, TokenStream, Usage};

use crate::fault::ServiceError;
use crate::models_registry::{Lease, LocalModel};

pub use remote::{RemoteClient, RemoteConfig, UpstreamError};

/// What to generate from.
#[derive(Debug)]
pub enum Prompt {
    Chat(Vec<ChatMessage>),
    Text(String),
    Tokens(Vec<i32>),
}

/// A generation request after hearth's own checks.
#[derive(Debug)]
pub struct GenerateSpec {
    pub prompt: Prompt,
    /// The client's limit on new tokens and the field it came in (`max_tokens` or
    /// `max_completion_tokens`); already at least 1 and at most `cap`.
    pub max_tokens: Option<(&'static str, u32)>,
    /// The server's limit (`limits.max_tokens`); a local model generates at most this many when
    /// the client gave no limit.
    pub cap: u32,
    /// Non-empty stop strings.
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// The sampling fields the client set (range-checked; a local model also checks `logit_bias`
    /// against its vocabulary), `grammar` (built by the service layer within `[limits]`' budget
    /// for a local model, from `response_format` or the tools) and the log-probabilities asked for
    /// (a remote model refuses them: its upstream's would have to be parsed).
    pub sampling: SamplingParams,
    /// OpenAI's `response_format`: for a local model the service layer turns it into
    /// `sampling.grammar`; a remote upstream receives it as sent.
    pub response_format: Option<serde_json::Value>,
    /// The client asked for token counts in every chunk (`stream_options.continuous_usage_stats`).
    pub continuous_usage: bool,
    /// Tools offered and the tool parts of the conversation (chat only; empty otherwise).
    pub tools: tools::ChatTools,
}

/// A generation accepted by its backend.
#[derive(Debug)]
pub struct Submitted {
    pub events: Events,
    /// Prompt tokens, when hearth counted them (local); 0 for a remote model until its upstream's
    /// `usage` arrives with [`Event::Finished`].
    pub prompt_tokens: u32,
}

impl Submitted {
    /// The generation holding `lease` until its events are dropped.
    pub fn leased(self, lease: Option<Arc<Lease>>) -> Submitted {
        Submitted { events: self.events.leased(lease), ..self }
    }
}

/// One item of a generation's output, whichever backend produced it.
#[derive(Debug)]
pub enum Event {
    /// New text; `completion_tokens` counts every token so far, this delta included; `logprobs`
    /// those of the tokens since the last delta, when the request asked for them (else empty).
    Delta { text: String, completion_tokens: u32, logprobs: Vec<engine::TokenLogprob> },
    /// Generation ended normally.
    Finished { reason: FinishReason, usage: Usage, queued: Duration },
    /// It failed after it was accepted (an engine fault, an upstream that broke off or went
    /// silent); the error says which.
    Failed(ServiceError),
}

/// A generation's events. Dropping it cancels the generation: a local engine frees the sequence
/// at its next step; a remote request is aborted, which closes its upstream connection. A local
/// model's events hold the request's lease on the model, so a model is never unloaded under a
/// stream.
#[derive(Debug)]
pub struct Events(EventSource, Option<Arc<Lease>>);

#[derive(Debug)]
enum EventSource {
    Local(TokenStream),
    Remote(remote::RemoteStream),
}

impl Events {
    /// The next event; `None` once the source stopped without a last event (a local engine that
    /// shut down).
    pub async fn next(&mut self) -> Option<Event> {
        match &mut self.0 {
            EventSource::Local(stream) => stream.next().await.map(|event| match event {
                engine::Event::Delta { text, completion_tokens, logprobs } => Event::Delta { text, completion_tokens, logprobs },
                engine::Event::Finished { reason, usage, queued } => Event::Finished { reason, usage, queued },
                engine::Event::Failed(message) => Event::Failed(ServiceError::Internal(message)),
            }),
            EventSource::Remote(stream) => stream.next().await,
        }
    }

    /// These events holding `lease` (the model they come from stays loaded while they live).
    pub fn leased(mut self, lease: Option<Arc<Lease>>) -> Events {
        self.1 = lease.or(self.1);
        self
    }

    /// Prompt tokens, if the source learned them after submission (a remote upstream that sends
    /// running usage); `None` when [`Submitted::prompt_tokens`] already had them or nothing came.
    pub fn prompt_tokens(&self) -> Option<u32> {
        match &self.0 {
            EventSource::Local(_) => None,
            EventSource::Remote(stream) => stream.prompt_tokens(),
        }
    }
}

/// Embedding inputs after hearth's checks (at least one, none empty, at most the server's limit).
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    Texts(Vec<String>),
    /// Token ids, each non-negative; a local model also checks them against its vocabulary.
    Tokens(Vec<Vec<i64>>),
}

impl EmbedInput {
    /// How many inputs.
    pub fn len(&self) -> usize {
        match self {
            EmbedInput::Texts(t) => t.len(),
            EmbedInput::Tokens(t) => t.len(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Computed embeddings: one vector per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
}

/// One served model. Cheap to clone. A local model's handle holds its engine only when it was
/// taken for a request ([`crate::models::Models::acquire`]) or is always loaded (embedding models).
#[derive(Debug, Clone)]
pub enum Backend {
    Local(LocalModel),
    Remote(RemoteClient),
}

impl Backend {
    /// The name clients use.
    pub fn name(&self) -> &str {
        match self {
            Backend::Local(local) => local.name(),
            Backend::Remote(remote) => remote.name(),
        }
    }

    /// Chat or embedding.
    pub fn kind(&self) -> ModelKind {
        match self {
            Backend::Local(local) => local.kind(),
            Backend::Remote(remote) => remote.kind(),
        }
    }

    /// `"local"` or `"remote"`: the `provider` label of the metrics.
    pub fn provider(&self) -> &'static str {
        match self {
            Backend::Local(_) => "local",
            Backend::Remote(_) => "remote",
        }
    }

    /// The engine, for a local model held for a request (or always loaded); `None` for a remote
    /// model and for a chat model's listing handle.
    pub fn as_local(&self) -> Option<&Engine> {
        match self {
            Backend::Local(local) => local.engine(),
            Backend::Remote(_) => None,
        }
    }

    /// The engine held, or the one loaded now: for stats and health, never to serve a request.
    pub fn engine_now(&self) -> Option<Engine> {
        match self {
            Backend::Local(local) => local.engine_now(),
            Backend::Remote(_) => None,
        }
    }

    /// A local model's state in the registry (loaded, unloaded, …); `None` for a remote model.
    pub fn state(&self) -> Option<crate::models_registry::policy::ModelState> {
        match self {
            Backend::Local(local) => Some(local.state()),
            Backend::Remote(_) => None,
        }
    }

    /// The request's lease on a local model, to keep with what outlives this handle.
    pub fn lease(&self) -> Option<Arc<Lease>> {
        match self {
            Backend::Local(local) => local.lease(),
            Backend::Remote(_) => None,
        }
    }

    /// Longest prompt + output in tokens; for a remote model the configured `max_model_len`, else
    /// what its upstream's `/models` said once probed, else `None`.
    pub fn max_model_len(&self) -> Option<u32> {
        match self {
            Backend::Local(local) => local.max_model_len(),
            Backend::Remote(remote) => remote.max_model_len(),
        }
    }

    /// Tokens in `text`: exact for a local model (as plain text, the way chunks and message
    /// contents are tokenized); for a remote one an estimate of one token per 4
    /// bytes (English text with a modern BPE vocabulary runs at about 4 characters a token), for
    /// sizing chunks and RAG context, never for anything billed.
    /// A chat model's listing handle counts with the engine loaded now, or estimates while it is
    /// unloaded (requests hold their model, so theirs are exact).
    pub fn count_tokens(&self, text: &str) -> usize {
        match self.engine_now() {
            Some(engine) => engine.tokenize_text(text, false).len(),
            None => approximate_tokens(text),
        }
    }

    /// Submit a generation. Fails at once for invalid input, a full queue or (remote) an upstream
    /// that did not accept the request; later failures arrive as [`Event::Failed`].
    pub async fn generate(&self, spec: GenerateSpec) -> Result<Submitted, ServiceError> {
        match self {
            Backend::Local(model) => {
                let held = model.held().await?;
                let engine = held.engine().ok_or_else(|| ServiceError::Internal(format!("model `{}` has no engine", held.name())))?;
                local::generate(engine, spec).map(|s| s.leased(held.lease()))
            }
            Backend::Remote(remote) => remote.generate(spec).await,
        }
    }

    /// Embed inputs; `dimensions` is the client's request for a vector width, if any.
    pub async fn embed(&self, input: EmbedInput, dimensions: Option<i64>) -> Result<Embedded, ServiceError> {
        match self {
            Backend::Local(model) => {
                let held = model.held().await?;
                let engine = held.engine().ok_or_else(|| ServiceError::Internal(format!("model `{}` has no engine", held.name())))?;
                local::embed(engine, input, dimensions).await
            }
            Backend::Remote(remote) => remote.embed(input, dimensions).await,
        }
    }

    /// Ok when the model can serve: always for a local model (the registry's states say more);
    /// for a remote one when its
    /// upstream answered a recent probe (503 with the reason otherwise).
    pub async fn check_ready(&self) -> Result<(), ServiceError> {
        match self {
            Backend::Local(_) => Ok(()),
            Backend::Remote(remote) => remote.check_ready().await,
        }
    }

    /// Time since a local engine's loop last went round; `None` for a remote model (no thread of
    /// ours to watch).
    pub fn heartbeat_age(&self) -> Option<Duration> {
        self.engine_now().as_ref().map(Engine::heartbeat_age)
    }

    /// Live counters. A local engine's are its own; a remote model reports hearth's side of it:
    /// requests in flight to the upstream (`running`) and waiting for a slot (`waiting`).
    pub fn stats(&self) -> EngineStats {
        match self {
            Backend::Local(local) => local.engine_now().map(|e| e.stats()).unwrap_or_default(),
            Backend::Remote(remote) => EngineStats { running: remote.in_flight(), waiting: remote.waiting(), ..EngineStats::default() },
        }
    }
}

/// One token per 4 bytes, rounded up; at least 1 for non-empty text.
pub fn approximate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_approximate_count_is_a_quarter_of_the_bytes_rounded_up() {
        assert_eq!(approximate_tokens(""), 0);
        assert_eq!(approximate_tokens("a"), 1);
        assert_eq!(approximate_tokens("abcd"), 1);
        assert_eq!(approximate_tokens("abcde"), 2);
        assert_eq!(approximate_tokens("héllo"), 2, "bytes, not characters");
    }

    #[test]
    fn embed_input_counts_its_items() {
        assert_eq!(EmbedInput::Texts(vec!["a".into(), "b".into()]).len(), 2);
        assert!(EmbedInput::Tokens(Vec::new()).is_empty());
    }
}
