//! Test hooks that break an engine thread for real, to prove the systemd watchdog, `/ready` and
//! `/health` notice.
//!
//! Off unless an environment variable names a model; no request, header or configuration key can
//! turn them on, and each prints a warning at start-up when set:
//! - `HEARTH_DEBUG_HANG_ENGINE=<model>` parks the thread `engine-<model>` forever the first time
//!   that thread enters a request's span, which the embedding engine does at each batch of a job:
//!   the engine is stuck inside its loop exactly as if llama.cpp had deadlocked, and its heartbeat
//!   stops.
//! - `HEARTH_DEBUG_PANIC_ENGINE=<model>` panics that thread at the same place instead: the thread
//!   ends as if llama.cpp's bindings had panicked mid-batch.
//!
//! Both are one tracing layer, [`HangEngine`], which the subscriber joins only when one is set.

use tracing::span::Id;
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// The environment variable that turns the hang on.
pub const ENV: &str = "HEARTH_DEBUG_HANG_ENGINE";
/// The environment variable that turns the panic on.
pub const PANIC_ENV: &str = "HEARTH_DEBUG_PANIC_ENGINE";

/// The layer; build it with [`HangEngine::from_env`].
#[derive(Debug)]
pub struct HangEngine {
    /// The thread to park, `engine-<model>`.
    hang: Option<String>,
    /// The thread to panic, `engine-<model>`.
    panic: Option<String>,
}

impl HangEngine {
    /// The layer when `HEARTH_DEBUG_HANG_ENGINE` or `HEARTH_DEBUG_PANIC_ENGINE` is set, else `None`.
    pub fn from_env() -> Option<Self> {
        let model = |var: &str| std::env::var(var).ok().filter(|m| !m.is_empty());
        let (hang, panic) = (model(ENV), model(PANIC_ENV));
        if let Some(model) = &hang {
            eprintln!("hearth: {ENV} is set: the engine thread of `{model}` will hang on its first request (test hook)");
        }
        if let Some(model) = &panic {
            eprintln!("hearth: {PANIC_ENV} is set: the engine thread of `{model}` will panic on its first request (test hook)");
        }
        if hang.is_none() && panic.is_none() {
            return None;
        }
        let thread = |model: String| format!("engine-{model}");
        Some(Self { hang: hang.map(thread), panic: panic.map(thread) })
    }
}

impl<S: Subscriber> Layer<S> for HangEngine {
    fn on_enter(&self, _id: &Id, _ctx: Context<'_, S>) {
        let current = std::thread::current();
        let name = current.name();
        if name.is_some() && name == self.panic.as_deref() {
            eprintln!("hearth: {PANIC_ENV}: panicking thread {}", name.unwrap_or_default());
            panic!("{PANIC_ENV} test hook");
        }
        if name.is_some() && name == self.hang.as_deref() {
            eprintln!("hearth: {ENV}: hanging thread {}", name.unwrap_or_default());
            loop {
                std::thread::park();
            }
        }
    }
}
