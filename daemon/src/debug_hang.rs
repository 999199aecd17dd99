//! A test hook that hangs an engine thread for real, to prove the systemd watchdog notices.
//!
//! Off unless the environment variable `HEARTH_DEBUG_HANG_ENGINE` names a model; no request,
//! header or configuration key can turn it on. When set, this tracing layer parks the thread
//! `engine-<model>` forever the first time that thread enters a request's span, which the
//! embedding engine does at the start of every job: the engine is stuck inside its loop exactly
//! as if llama.cpp had deadlocked, and its heartbeat stops.

use tracing::span::Id;
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// The environment variable that turns the hook on.
pub const ENV: &str = "HEARTH_DEBUG_HANG_ENGINE";

/// The layer; build it with [`HangEngine::from_env`].
#[derive(Debug)]
pub struct HangEngine {
    thread: String,
}

impl HangEngine {
    /// The layer when `HEARTH_DEBUG_HANG_ENGINE` is set, else `None`.
    pub fn from_env() -> Option<Self> {
        let model = std::env::var(ENV).ok().filter(|m| !m.is_empty())?;
        eprintln!("hearth: {ENV} is set: the engine thread of `{model}` will hang on its first request (test hook)");
        Some(Self { thread: format!("engine-{model}") })
    }
}

impl<S: Subscriber> Layer<S> for HangEngine {
    fn on_enter(&self, _id: &Id, _ctx: Context<'_, S>) {
        if std::thread::current().name() == Some(self.thread.as_str()) {
            eprintln!("hearth: {ENV}: hanging thread {}", self.thread);
            loop {
                std::thread::park();
            }
        }
    }
}
