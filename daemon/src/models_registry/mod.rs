//! The model registry: which local models are loaded, loading on first use under a budget, and
//! the in-flight leases that keep a busy model loaded.
//!
//! Design: one [`Registry`] per process holds, behind one mutex, the pure [`policy::Policy`] (state,
//! LRU order, in-flight and waiting counts per model) and the [`Engine`] of each loaded model. A
//! request calls [`Registry::acquire`]: a loaded model answers at once with a [`LocalModel`] that
//! holds a [`Lease`]; the lease travels with the request (with a generation's event stream, so a
//! streamed answer holds it to its last byte) and its drop counts the request out. An unloaded model
//! is loaded by the first request that finds it so (after unloading the least recently used idle
//! model when the budget is full); the load runs on a blocking thread in a detached task, so a
//! client that goes away does not abandon it, and every other request for that model waits for the
//! same load. Waiting is bounded by `[engine] model_load_timeout_seconds`, after which the request
//! gets 503 `model_loading` with a `Retry-After` of the model's last load time.
//!
//! Unloading drops the registry's engine handle on a blocking thread: the last handle's drop closes
//! the engine's command channel and joins its thread, which frees the llama.cpp context and the
//! weights. No lease holds an engine handle past its request, so nothing else keeps them alive.
//!
//! Embedding models are registered too but are outside the budget and always loaded: the library
//! (ingestion, search) holds them for the life of the process.

pub mod policy;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use engine::{Engine, ModelInfo, ModelKind};
use tokio::sync::watch;

use crate::fault::ServiceError;
use policy::{Admit, ModelState, Policy, Refusal};

/// Loads one model (blocking): verifies, fits and starts its engine; `Err` says why not.
pub type Loader = Arc<dyn Fn(usize) -> Result<Loaded, String> + Send + Sync>;

/// A model the loader brought up.
pub struct Loaded {
    pub engine: Engine,
    /// The fit before load (`fits: 30 of 30 layers on CUDA0`, `fits: CPU (...)`), when decided.
    pub fit: Option<String>,
}

/// What the registry knows of a model before it is loaded.
#[derive(Debug, Clone)]
pub struct SlotConfig {
    /// The served name.
    pub name: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// `load = "startup"`: loaded at start-up and kept loaded.
    pub pinned: bool,
    /// The configured `max_model_len` (0: the model's own).
    pub max_model_len: u32,
}

/// One model's state as `/v1/models` and `/ready` show it.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    pub state: ModelState,
    pub in_flight: usize,
    pub pinned: bool,
    /// How long its last load took.
    pub last_load: Option<Duration>,
    /// Its last load's fit before load.
    pub fit: Option<String>,
}

struct Table {
    policy: Policy,
    engines: Vec<Option<Engine>>,
    /// What each model's last load reported (kept after an unload, for listings).
    infos: Vec<Option<ModelInfo>>,
    last_load: Vec<Option<Duration>>,
    fits: Vec<Option<String>>,
}

/// The local models' states and engines.
pub struct Registry {
    slots: Vec<SlotConfig>,
    table: Mutex<Table>,
    /// Bumped at every state change; waiters watch it.
    changed: watch::Sender<u64>,
    loader: Loader,
    timeout: Duration,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("models", &self.slots.iter().map(|s| &s.name).collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// A request's hold on a loaded model; dropping the last clone counts the request out.
pub struct Lease {
    registry: Arc<Registry>,
    index: usize,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({})", self.registry.slots[self.index].name)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.registry.lock().policy.release(self.index);
        self.registry.bump();
    }
}

/// A local model as the provider layer sees it: its registry slot, and, when held for a request
/// (or always loaded, as embedding models are), its engine.
#[derive(Clone)]
pub struct LocalModel {
    registry: Arc<Registry>,
    index: usize,
    engine: Option<Engine>,
    lease: Option<Arc<Lease>>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel").field("name", &self.name()).field("held", &self.engine.is_some()).finish_non_exhaustive()
    }
}

impl LocalModel {
    /// The served name.
    pub fn name(&self) -> &str {
        &self.registry.slots[self.index].name
    }

    /// Chat or embedding.
    pub fn kind(&self) -> ModelKind {
        self.registry.slots[self.index].kind
    }

    /// The engine this handle holds (a request's, or an always-loaded model's).
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    /// The engine held, or the one loaded now, if any (for stats and health; not for requests).
    pub fn engine_now(&self) -> Option<Engine> {
        self.engine.clone().or_else(|| self.registry.lock().engines[self.index].clone())
    }

    /// Its state now (loaded, unloaded, …), as `/v1/models` shows it.
    pub fn state(&self) -> ModelState {
        self.registry.status(self.index).state
    }

    /// The request's lease, to keep with its event stream.
    pub fn lease(&self) -> Option<Arc<Lease>> {
        self.lease.clone()
    }

    /// Facts from the engine held, else from the model's last load.
    pub fn info(&self) -> Option<ModelInfo> {
        match &self.engine {
            Some(engine) => Some(engine.info().clone()),
            None => self.registry.lock().infos[self.index].clone(),
        }
    }

    /// Longest prompt + output: the engine's, else the last load's, else the configured one.
    pub fn max_model_len(&self) -> Option<u32> {
        if let Some(info) = self.info() {
            return Some(info.max_model_len);
        }
        Some(self.registry.slots[self.index].max_model_len).filter(|&n| n > 0)
    }

    /// This model held for a request: itself when already held, else acquired (loading it if needed).
    pub async fn held(&self) -> Result<LocalModel, ServiceError> {
        if self.engine.is_some() {
            return Ok(self.clone());
        }
        Registry::acquire(&self.registry, self.index).await
    }
}

impl Registry {
    /// A registry of `slots`, all unloaded.
    pub fn new(slots: Vec<SlotConfig>, budget: usize, timeout: Duration, loader: Loader) -> Arc<Registry> {
        let flags: Vec<(bool, bool)> = slots.iter().map(|s| (s.pinned, s.kind == ModelKind::Chat)).collect();
        let n = slots.len();
        Arc::new(Registry {
            slots,
            table: Mutex::new(Table { policy: Policy::new(budget, &flags), engines: vec![None; n], infos: vec![None; n], last_load: vec![None; n], fits: vec![None; n] }),
            changed: watch::Sender::new(0),
            loader,
            timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The index of model `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.name == name)
    }

    /// A handle on model `i` that holds nothing (for listings, metrics, health).
    pub fn handle(self: &Arc<Self>, i: usize) -> LocalModel {
        let engine = if self.slots[i].kind == ModelKind::Embedding { self.lock().engines[i].clone() } else { None };
        LocalModel { registry: Arc::clone(self), index: i, engine, lease: None }
    }

    /// Model `i`'s state now.
    pub fn status(&self, i: usize) -> ModelStatus {
        let table = self.lock();
        let slot = table.policy.slot(i);
        ModelStatus { state: slot.state.clone(), in_flight: slot.in_flight, pinned: slot.pinned, last_load: table.last_load[i], fit: table.fits[i].clone() }
    }

    /// Load model `i` now, on this thread (start-up: blocking).
    pub fn load_blocking(self: &Arc<Self>, i: usize) -> Result<(), String> {
        match self.lock().policy.admit(i, true) {
            Admit::Load { evict: None } => {}
            other => return Err(format!("model `{}` cannot load at start-up ({other:?})", self.slots[i].name)),
        }
        let started = Instant::now();
        let loaded = (self.loader)(i);
        self.finish_load(i, loaded, started.elapsed())
    }

    fn finish_load(&self, i: usize, loaded: Result<Loaded, String>, took: Duration) -> Result<(), String> {
        let outcome = {
            let mut table = self.lock();
            match loaded {
                Ok(Loaded { engine, fit }) => {
                    table.infos[i] = Some(engine.info().clone());
                    table.engines[i] = Some(engine);
                    table.fits[i] = fit;
                    table.last_load[i] = Some(took);
                    table.policy.load_finished(i, Ok(()));
                    Ok(())
                }
                Err(reason) => {
                    table.policy.load_finished(i, Err(reason.clone()));
                    Err(reason)
                }
            }
        };
        match &outcome {
            Ok(()) => tracing::info!(model = %self.slots[i].name, load_ms = took.as_millis() as u64, "Model loaded and serving."),
            Err(reason) => tracing::error!(model = %self.slots[i].name, %reason, "Model failed to load."),
        }
        self.bump();
        outcome
    }

    /// Free model `victim` then load model `i`, on blocking threads; run detached, so a request
    /// that goes away does not abandon a load others wait for.
    fn spawn_load(self: &Arc<Self>, i: usize, victim: Option<usize>) {
        let registry = Arc::clone(self);
        tokio::spawn(async move {
            if let Some(v) = victim {
                registry.free(v, "to make room").await;
            }
            let loader = Arc::clone(&registry.loader);
            tracing::info!(model = %registry.slots[i].name, "Loading model on demand.");
            let started = Instant::now();
            let loaded = tokio::task::spawn_blocking(move || loader(i)).await.unwrap_or_else(|e| Err(format!("the loader panicked: {e}")));
            let _ = registry.finish_load(i, loaded, started.elapsed());
        });
    }

    /// Drop model `i`'s engine (state `unloading` already) on a blocking thread and wait for its
    /// thread to join; the time it took.
    async fn free(&self, i: usize, why: &str) -> Duration {
        let engine = self.lock().engines[i].take();
        let started = Instant::now();
        if let Some(engine) = engine {
            let _ = tokio::task::spawn_blocking(move || drop(engine)).await;
        }
        let took = started.elapsed();
        self.lock().policy.unload_finished(i);
        self.bump();
        tracing::info!(model = %self.slots[i].name, unload_ms = took.as_millis() as u64, reason = why, "Model unloaded.");
        took
    }

    /// Model `i` for one request: at once when loaded, else after its load (and, under a full
    /// budget, the unload of the least recently used idle model), within the load timeout.
    pub async fn acquire(self: &Arc<Self>, i: usize) -> Result<LocalModel, ServiceError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut changes = self.changed.subscribe();
        let mut waited_for_load = false;
        let mut waiting: Option<Waiting<'_>> = None;
        loop {
            changes.mark_unchanged();
            let admitted = {
                let mut table = self.lock();
                let admitted = table.policy.admit(i, !waited_for_load);
                if admitted == Admit::Ready {
                    let engine = table.engines[i].clone();
                    Ok((admitted, engine))
                } else {
                    if table.policy.slot(i).state == ModelState::Loading {
                        waited_for_load = true;
                    }
                    Err(admitted)
                }
            };
            match admitted {
                Ok((_, Some(engine))) => {
                    let lease = Arc::new(Lease { registry: Arc::clone(self), index: i });
                    return Ok(LocalModel { registry: Arc::clone(self), index: i, engine: Some(engine), lease: Some(lease) });
                }
                Ok((_, None)) => {
                    // Loaded without an engine cannot happen; count the request out and say so.
                    self.lock().policy.release(i);
                    return Err(ServiceError::Internal(format!("model `{}` is marked loaded but has no engine", self.slots[i].name)));
                }
                Err(Admit::Failed(reason)) => {
                    return Err(ServiceError::ModelUnavailable {
                        message: format!("model `{}` failed to load: {reason}", self.slots[i].name),
                        code: "model_load_failed",
                        retry_after: self.retry_after(i),
                    });
                }
                Err(Admit::Load { evict }) => {
                    waited_for_load = true;
                    self.spawn_load(i, evict);
                }
                Err(Admit::Wait | Admit::Ready) => {}
            }
            if waiting.is_none() {
                waiting = Some(Waiting::begin(self, i));
            }
            if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                let state = self.status(i).state;
                return Err(ServiceError::ModelUnavailable {
                    message: format!(
                        "model `{}` is not loaded yet (state {}) after {} s ([engine] model_load_timeout_seconds); retry after the Retry-After seconds",
                        self.slots[i].name,
                        state.name(),
                        self.timeout.as_secs()
                    ),
                    code: "model_loading",
                    retry_after: self.retry_after(i),
                });
            }
        }
    }

    /// Seconds a client should wait: the model's last load time (at least 1), or the load timeout
    /// when it never loaded.
    fn retry_after(&self, i: usize) -> u64 {
        self.lock().last_load[i].map_or(self.timeout.as_secs(), |d| d.as_secs_f64().ceil() as u64).max(1)
    }

    /// At a stop, after the HTTP drain: end every loaded engine thread and wait (bounded) for each
    /// to free its context, so that what it still writes (a chat model's prefix-cache files) is
    /// complete before the process exits.
    pub async fn stop_engines(&self) {
        // Embedding engines keep no files; the library holds them until the process ends.
        let chat = |i: usize| self.slots[i].kind == ModelKind::Chat;
        let engines: Vec<Engine> = self.lock().engines.iter().enumerate().filter(|&(i, _)| chat(i)).filter_map(|(_, e)| e.clone()).collect();
        for engine in engines {
            let name = engine.info().name.clone();
            let stopped = tokio::task::spawn_blocking(move || engine.stop()).await.unwrap_or(false);
            if !stopped {
                tracing::warn!(model = %name, "Engine thread did not stop in time; its prefix-cache writes may be cut.");
            }
        }
    }

    /// An operator's load of model `i`: as a request's, without keeping the lease.
    pub async fn load(self: &Arc<Self>, i: usize) -> Result<(), ServiceError> {
        self.acquire(i).await.map(drop)
    }

    /// An operator's unload of model `i`: 409 while requests are in flight on it (or waiting for
    /// it) or while it loads; the time the unload took, or `None` when it was not loaded.
    pub async fn unload(self: &Arc<Self>, i: usize) -> Result<Option<Duration>, ServiceError> {
        let name = &self.slots[i].name;
        if self.slots[i].kind == ModelKind::Embedding {
            return Err(ServiceError::Invalid {
                field: Some("model".into()),
                message: format!("`{name}` is an embedding model: it serves the library (ingestion, search) and stays loaded"),
                code: "not_unloadable",
            });
        }
        let begun = self.lock().policy.begin_unload(i);
        match begun {
            Ok(true) => Ok(Some(self.free(i, "asked by an operator").await)),
            Ok(false) => Ok(None),
            Err(Refusal::Busy { in_flight, waiting }) => Err(ServiceError::ModelBusy(format!(
                "model `{name}` has {in_flight} request(s) in flight and {waiting} waiting; unload it when they finish"
            ))),
            Err(Refusal::Loading) => Err(ServiceError::ModelBusy(format!("model `{name}` is loading; unload it once it is loaded"))),
        }
    }
}

/// A request counted as waiting for a model while it waits (a waited-for model is not unloaded).
struct Waiting<'a> {
    registry: &'a Registry,
    index: usize,
}

impl<'a> Waiting<'a> {
    fn begin(registry: &'a Registry, index: usize) -> Waiting<'a> {
        registry.lock().policy.wait_begin(index);
        Waiting { registry, index }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.registry.lock().policy.wait_end(self.index);
        self.registry.bump();
    }
}
