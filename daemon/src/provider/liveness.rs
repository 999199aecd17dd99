//! Whether each local engine thread is alive and making progress, for `/ready`, `/health` and the
//! service manager.
//!
//! Two faults: the thread **stopped** (it panicked; it never comes back, and the engine answers
//! every request with 503), or it **stalled**: its heartbeat is older than `engine.stall_seconds`.
//! A working engine beats at every scheduler step and after every llama.cpp batch (an embedding
//! request of any size included), so a stall means a step far longer than any batch should take,
//! or a hung llama.cpp call. A remote model has no thread of ours; its upstream's health is
//! [`super::Backend::check_ready`]'s.

use std::fmt;
use std::time::Duration;

use super::Backend;

/// What is wrong with one local engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineFault {
    /// The engine thread ended; `reason` says how (`it panicked: ...`).
    Stopped { model: String, reason: String },
    /// The engine thread has not beaten its heartbeat for `silent`.
    Stalled { model: String, silent: Duration },
}

impl EngineFault {
    /// The model it concerns.
    pub fn model(&self) -> &str {
        match self {
            EngineFault::Stopped { model, .. } | EngineFault::Stalled { model, .. } => model,
        }
    }
}

impl fmt::Display for EngineFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineFault::Stopped { model, reason } => write!(f, "model `{model}`: engine thread stopped ({reason})"),
            EngineFault::Stalled { model, silent } => write!(f, "model `{model}`: no heartbeat for {} s", silent.as_secs()),
        }
    }
}

/// The faults of the local engines among `models`, in configuration order: a stopped thread, or
/// one whose heartbeat is older than `stall`.
pub fn engine_faults(models: &[Backend], stall: Duration) -> Vec<EngineFault> {
    models
        .iter()
        .filter_map(|m| {
            let engine = m.engine_now()?;
            fault(m.name(), engine.thread_stopped(), engine.heartbeat_age(), stall)
        })
        .collect()
}

/// One engine's fault from what its handle reports.
fn fault(model: &str, stopped: Option<&str>, heartbeat_age: Duration, stall: Duration) -> Option<EngineFault> {
    match stopped {
        Some(reason) => Some(EngineFault::Stopped { model: model.to_owned(), reason: reason.to_owned() }),
        None if heartbeat_age > stall => Some(EngineFault::Stalled { model: model.to_owned(), silent: heartbeat_age }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_thread_outranks_its_heartbeat_and_a_stale_one_is_named_with_its_age() {
        let stall = Duration::from_secs(30);
        let stopped = fault("chat", Some("it panicked: boom"), Duration::ZERO, stall);
        assert_eq!(stopped.as_ref().map(ToString::to_string).as_deref(), Some("model `chat`: engine thread stopped (it panicked: boom)"));
        let stale = fault("embed", None, Duration::from_millis(42_700), stall);
        assert_eq!(stale.as_ref().map(ToString::to_string).as_deref(), Some("model `embed`: no heartbeat for 42 s"));
        assert_eq!(stale.as_ref().map(EngineFault::model), Some("embed"));
        assert_eq!(fault("ok", None, Duration::from_secs(30), stall), None, "at the threshold is still alive");
        assert_eq!(fault("ok", None, Duration::from_millis(500), stall), None);
    }
}
