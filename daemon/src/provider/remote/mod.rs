//! A model served by an OpenAI-compatible server elsewhere (vLLM, llm-d, a KServe
//! InferenceService): hearth validates, admits and measures the request, and the upstream computes.
//!
//! Design, mirroring the local engine:
//! - **One handle, one runtime.** [`RemoteClient`] is a cheap, cloneable handle. Its HTTP traffic
//!   runs on a small tokio runtime of its own (threads `remote-<model>`), so connections and
//!   their pool belong to one runtime whatever actix worker a request arrived on. Each request is
//!   one task there; the caller holds it through an abort-on-drop guard.
//! - **Cancellation.** A client that goes away drops its [`Events`](super::Events); that drops the
//!   guard, which aborts the task, which drops the upstream response and closes its connection.
//!   vLLM (and hearth) abort a request whose connection closes, so no upstream compute is wasted.
//! - **Admission.** A semaphore of `max_concurrency` slots bounds the requests in flight to the
//!   upstream; up to `max_queue` more wait for a slot, each at most `queue_timeout`. Beyond either
//!   bound the answer is 429 with `Retry-After`, as for a local engine's full queue.
//! - **Streaming.** Every generation streams from the upstream (see [`wire`]); each upstream chunk
//!   becomes one [`Event`] as it arrives, nothing is buffered beyond a bounded channel, and a
//!   silence longer than `read_timeout` ends the generation with a 504-shaped error.
//! - **Readiness.** `GET {base_url}/models` must answer and list the remote model; the result is
//!   cached for [`PROBE_TTL`] so a busy `/ready` does not hammer the upstream.
//! - **Errors** name the model and the upstream URL ([`UpstreamError`]): unreachable or 503 → 503,
//!   no answer in time → 504, a 5xx or an unreadable answer → 502, the upstream's 400/413/422/429
//!   → the same status with its message (the client's mistake), 401/403/404 → 502 (hearth's
//!   configuration is wrong, not the client's request).

mod http;
mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use engine::{EngineError, ModelKind};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use self::http::Upstream;
use self::wire::{Chunk, ChunkReader};
pub use self::http::{Failure, UpstreamError};
use super::{EmbedInput, Embedded, Event, EventSource, Events, GenerateSpec, Submitted};
use crate::fault::ServiceError;
use crate::sse_parser::SseParser;

/// How long a readiness probe's answer is trusted.
pub const PROBE_TTL: Duration = Duration::from_secs(2);
/// Events buffered per request between the upstream and the client.
const EVENTS_PER_REQUEST: usize = 64;
/// Largest embeddings response read (2,048 inputs of 4,096 floats as JSON fit well inside).
const EMBEDDINGS_BODY_LIMIT: usize = 512 << 20;
/// Worker threads of each remote model's runtime.
const IO_THREADS: usize = 2;

/// Plain configuration of one remote model; the daemon fills it from `[[models]]`.
#[derive(Clone)]
pub struct RemoteConfig {
    /// The name clients use at hearth.
    pub name: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// The upstream's OpenAI base URL, `/v1` included, without a trailing slash.
    pub base_url: String,
    /// The model name the upstream serves.
    pub remote_model: String,
    /// Sent as `Authorization: Bearer`; never logged.
    pub api_key: Option<String>,
    /// PEM CA certificates trusted for an `https://` upstream besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Context length if configured; 0 to take the one the upstream reports.
    pub max_model_len: u32,
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait for the response head, retries included.
    pub request_timeout: Duration,
    /// Longest silence once the upstream has answered.
    pub read_timeout: Duration,
    /// Retries after a connection failure or a 503.
    pub max_retries: u32,
    /// Wait before the first retry, doubled for each further one.
    pub retry_backoff: Duration,
    /// Requests in flight to the upstream at once.
    pub max_concurrency: usize,
    /// Requests that may wait for a slot.
    pub max_queue: usize,
    /// Longest wait for a slot.
    pub queue_timeout: Duration,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("remote_model", &self.remote_model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// A cheap, cloneable handle to one remote model.
#[derive(Clone)]
pub struct RemoteClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient").field("model", &self.inner.name).field("base_url", &self.inner.base_url).finish_non_exhaustive()
    }
}

struct Inner {
    name: String,
    kind: ModelKind,
    base_url: String,
    remote_model: String,
    upstream: Arc<Upstream>,
    health: Arc<Health>,
    io: IoRuntime,
    /// `max_concurrency` permits; one is held per request in flight upstream.
    slots: Arc<Semaphore>,
    max_concurrency: usize,
    /// Requests waiting for a slot now.
    waiting: AtomicUsize,
    max_queue: usize,
    queue_timeout: Duration,
    /// Unix time the client was created (`created` in `/v1/models`).
    created: u64,
}

/// What the probes found. Kept apart from [`Inner`] so the start-up probe, a task on the
/// runtime, holds no handle that owns the runtime.
struct Health {
    remote_model: String,
    /// Configured, or learned from the probe; 0 while unknown.
    max_model_len: AtomicU32,
    /// The last probe: when, and its outcome (an error's message).
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Health {
    /// The last outcome if it is fresh, else a new probe (run on `io`, whatever thread awaits it).
    async fn check(&self, io: &tokio::runtime::Handle, upstream: &Arc<Upstream>) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = last.as_ref() {
            if at.elapsed() < PROBE_TTL {
                return outcome.clone();
            }
        }
        let (upstream, remote_model) = (Arc::clone(upstream), self.remote_model.clone());
        let probe = AbortOnDrop(io.spawn(async move { upstream.probe(&remote_model).await }));
        let outcome = match probe.await {
            Ok(Ok(max_model_len)) => {
                if let Some(n) = max_model_len {
                    let _ = self.max_model_len.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed);
                }
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the probe of the upstream did not run: {e}")),
        };
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

impl RemoteClient {
    /// Build the client and its runtime. Contacts nothing: the upstream need not be up yet (a
    /// first probe runs in the background and logs what it finds).
    pub fn start(config: RemoteConfig) -> Result<RemoteClient, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(IO_THREADS)
            .thread_name(format!("remote-{}", config.name))
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
        let upstream = {
            let _entered = runtime.enter();
            Upstream::new(&config)?
        };
        let health = Arc::new(Health {
            remote_model: config.remote_model.clone(),
            max_model_len: AtomicU32::new(config.max_model_len),
            last: Mutex::new(None),
        });
        let io = IoRuntime { handle: runtime.handle().clone(), runtime: Some(runtime) };
        let client = RemoteClient {
            inner: Arc::new(Inner {
                name: config.name,
                kind: config.kind,
                base_url: config.base_url,
                remote_model: config.remote_model,
                upstream: Arc::new(upstream),
                health,
                io,
                slots: Arc::new(Semaphore::new(config.max_concurrency)),
                max_concurrency: config.max_concurrency,
                waiting: AtomicUsize::new(0),
                max_queue: config.max_queue,
                queue_timeout: config.queue_timeout,
                created: crate::ids::unix_now(),
            }),
        };
        let (health, upstream, handle) = (Arc::clone(&client.inner.health), Arc::clone(&client.inner.upstream), client.inner.io.handle.clone());
        let model = client.inner.name.clone();
        // Detached: it only logs, and ends within the probe's timeout.
        drop(client.inner.io.handle.spawn(async move {
            match health.check(&handle, &upstream).await {
                Ok(()) => tracing::info!(%model, "Upstream answers."),
                Err(reason) => tracing::warn!(%model, %reason, "Upstream not ready yet; /ready says 503 until it is."),
            }
        }));
        Ok(client)
    }

    /// The name clients use.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Chat or embedding.
    pub fn kind(&self) -> ModelKind {
        self.inner.kind
    }

    /// The model name the upstream serves.
    pub fn remote_model(&self) -> &str {
        &self.inner.remote_model
    }

    /// The upstream's base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Unix time this client was created.
    pub fn created(&self) -> u64 {
        self.inner.created
    }

    /// The context length, configured or reported by the upstream.
    pub fn max_model_len(&self) -> Option<u32> {
        Some(self.inner.health.max_model_len.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// Requests in flight to the upstream.
    pub fn in_flight(&self) -> u64 {
        self.inner.max_concurrency.saturating_sub(self.inner.slots.available_permits()) as u64
    }

    /// Requests waiting for a slot.
    pub fn waiting(&self) -> u64 {
        self.inner.waiting.load(Ordering::Relaxed) as u64
    }

    /// Forward a generation; returns once the upstream has accepted it (its response head came).
    pub async fn generate(&self, spec: GenerateSpec) -> Result<Submitted, ServiceError> {
        self.expect_kind(ModelKind::Chat, "text generation")?;
        let (path, body) = wire::generation_request(&self.inner.remote_model, spec);
        let (permit, queued) = self.admit().await?;
        let (events_tx, events) = mpsc::channel(EVENTS_PER_REQUEST);
        let (accepted_tx, accepted) = oneshot::channel();
        let upstream = Arc::clone(&self.inner.upstream);
        let prompt_tokens = Arc::new(AtomicU32::new(0));
        let learned = Arc::clone(&prompt_tokens);
        let task = self.inner.io.spawn(
            async move {
                let response = match upstream.post(path, &body).await {
                    Ok(response) => response,
                    Err(e) => {
                        let _ = accepted_tx.send(Err(e));
                        return;
                    }
                };
                if accepted_tx.send(Ok(())).is_ok() {
                    pump(&upstream, response, &events_tx, &learned, queued).await;
                }
            }
            .instrument(tracing::Span::current()),
        );
        match accepted.await {
            Ok(Ok(())) => Ok(Submitted {
                events: Events(EventSource::Remote(RemoteStream { events, prompt_tokens, _task: task, _permit: permit }), None),
                prompt_tokens: 0,
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ServiceError::Internal(format!("the request to upstream '{}' ended without an answer", self.inner.name))),
        }
    }

    /// Forward an embeddings request.
    pub async fn embed(&self, input: EmbedInput, dimensions: Option<i64>) -> Result<Embedded, ServiceError> {
        self.expect_kind(ModelKind::Embedding, "embeddings")?;
        let body = wire::embedding_request(&self.inner.remote_model, &input, dimensions);
        let (_permit, _queued) = self.admit().await?;
        let upstream = Arc::clone(&self.inner.upstream);
        let task = self.inner.io.spawn(
            async move {
                let response = upstream.post("/embeddings", &body).await?;
                upstream.read_body(response, EMBEDDINGS_BODY_LIMIT).await
            }
            .instrument(tracing::Span::current()),
        );
        let body = task.await.map_err(|e| ServiceError::Internal(format!("the request to upstream '{}' failed: {e}", self.inner.name)))??;
        let embedded = wire::parse_embeddings(&body, input.len()).map_err(|reason| self.inner.upstream.error(Failure::Failed(reason)))?;
        if let Some(n) = embedded.vectors.first().map(Vec::len) {
            if let Some(d) = dimensions.filter(|&d| d != n as i64) {
                return Err(self.inner.upstream.error(Failure::Failed(format!("returned {n} dimensions where {d} were asked for"))).into());
            }
        }
        Ok(embedded)
    }

    /// Ok when a recent probe (at most [`PROBE_TTL`] old) found the upstream serving the model.
    pub async fn check_ready(&self) -> Result<(), ServiceError> {
        self.inner.health.check(&self.inner.io.handle, &self.inner.upstream).await.map_err(ServiceError::Unavailable)
    }

    /// A slot for one request, and how long it waited for it.
    async fn admit(&self) -> Result<(OwnedSemaphorePermit, Duration), ServiceError> {
        let arrived = Instant::now();
        if let Ok(permit) = Arc::clone(&self.inner.slots).try_acquire_owned() {
            return Ok((permit, Duration::ZERO));
        }
        let waiting = &self.inner.waiting;
        if waiting.fetch_add(1, Ordering::Relaxed) >= self.inner.max_queue {
            waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(self.overloaded(format!("{} requests already wait for one of its {} upstream slots", self.inner.max_queue, self.inner.max_concurrency)));
        }
        let _waiting = Decrement(waiting);
        match tokio::time::timeout(self.inner.queue_timeout, Arc::clone(&self.inner.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok((permit, arrived.elapsed())),
            Ok(Err(_)) => Err(ServiceError::Unavailable(format!("model {} is shutting down", self.inner.name))),
            Err(_) => Err(self.overloaded(format!(
                "all {} upstream slots stayed busy for {} ms",
                self.inner.max_concurrency,
                self.inner.queue_timeout.as_millis()
            ))),
        }
    }

    fn overloaded(&self, why: String) -> ServiceError {
        ServiceError::Busy(format!("model {} is overloaded: {why}", self.inner.name))
    }

    fn expect_kind(&self, kind: ModelKind, operation: &'static str) -> Result<(), ServiceError> {
        if self.inner.kind == kind {
            Ok(())
        } else {
            Err(EngineError::WrongKind { model: self.inner.name.clone(), operation }.into())
        }
    }
}

/// Read the upstream's stream, turning each event into [`Event`]s for the client, until the end,
/// a failure, or the client going away (then `events` is closed and this returns at once). The
/// prompt's token count is published in `prompt_tokens` as soon as the upstream reports it.
async fn pump(upstream: &Upstream, response: reqwest::Response, events: &mpsc::Sender<Event>, prompt_tokens: &AtomicU32, queued: Duration) {
    let failed = |failure: Failure| Event::Failed(upstream.error(failure).into());
    let silence = upstream.read_timeout();
    let mut body = response.bytes_stream();
    let mut parser = SseParser::default();
    let mut reader = ChunkReader::default();
    let mut deadline = tokio::time::Instant::now() + silence;
    loop {
        let piece = tokio::select! {
            () = events.closed() => return,
            piece = tokio::time::timeout_at(deadline, body.next()) => piece,
        };
        let (data, ended) = match piece {
            Err(_) => {
                let _ = events.send(failed(Failure::Stalled(silence.as_millis()))).await;
                return;
            }
            Ok(Some(Ok(bytes))) => (parser.push(&bytes), false),
            Ok(Some(Err(e))) => {
                let _ = events.send(failed(Failure::Failed(format!("broke off the stream: {}", http::chain(&e))))).await;
                return;
            }
            Ok(None) => (parser.finish().into_iter().collect(), true),
        };
        if !data.is_empty() {
            // Comments (keep-alives) do not count: the upstream must produce events.
            deadline = tokio::time::Instant::now() + silence;
        }
        for item in data {
            let read = reader.read(&item);
            if let Some(n) = reader.prompt_tokens() {
                prompt_tokens.store(n, Ordering::Relaxed);
            }
            let event = match read {
                Ok(None) => continue,
                Ok(Some(Chunk::Text { text, completion_tokens })) => Event::Delta { text, completion_tokens, logprobs: Vec::new() },
                Ok(Some(Chunk::Done { reason, usage })) => Event::Finished { reason, usage, queued },
                Err(reason) => failed(Failure::Failed(reason)),
            };
            let last = !matches!(event, Event::Delta { .. });
            if events.send(event).await.is_err() || last {
                return;
            }
        }
        if ended {
            let last = match reader.at_eof() {
                Some(Chunk::Done { reason, usage }) => Event::Finished { reason, usage, queued },
                _ => failed(Failure::Failed("ended its stream before the generation finished".into())),
            };
            let _ = events.send(last).await;
            return;
        }
    }
}

/// A remote generation's events. Dropping it aborts the upstream request and frees its slot.
#[derive(Debug)]
pub struct RemoteStream {
    events: mpsc::Receiver<Event>,
    /// The prompt's tokens as the upstream reported them; 0 until it has.
    prompt_tokens: Arc<AtomicU32>,
    _task: AbortOnDrop<()>,
    _permit: OwnedSemaphorePermit,
}

impl RemoteStream {
    /// The next event; the stream always ends with `Finished` or `Failed`.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The prompt's tokens, once the upstream has reported them.
    pub fn prompt_tokens(&self) -> Option<u32> {
        Some(self.prompt_tokens.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }
}

/// The runtime of one remote model. Shut down without waiting when the last handle goes, which
/// may happen on an async thread where a blocking shutdown would panic.
struct IoRuntime {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl IoRuntime {
    fn spawn<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> AbortOnDrop<T> {
        AbortOnDrop(self.handle.spawn(work))
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A task that is aborted when its handle is dropped (the caller went away).
#[derive(Debug)]
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Decrements a counter when dropped.
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
