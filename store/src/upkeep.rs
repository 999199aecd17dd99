//! The store's one background thread: closes idle tantivy writers and retries what failed.
//!
//! Every tick (a quarter of the shorter of `writers.idle_close` and `retry_interval`, between
//! 50 ms and 1 s) it closes writers unused for `idle_close` ([`crate::writers`]), and for each
//! collection retries what is due ([`crate::recovery::retry_due`]): a keyword index lagging after
//! a failed commit, a vector index that could not be saved, a recovery that failed. So a disk that
//! was full and has room again is written to again without a restart.
//!
//! The thread holds only a weak reference to the store's state, and stops at once when the
//! store is dropped (its stop channel closes).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::{Coll, Inner};

/// The running upkeep thread; dropping this stops and joins it.
pub(crate) struct Upkeep {
    /// Dropped to stop the thread.
    stop: Option<mpsc::Sender<()>>,
    /// The thread.
    handle: Option<JoinHandle<()>>,
}

impl Upkeep {
    /// Starts the thread; `None` (logged) when the system refuses a thread.
    pub(crate) fn start(inner: &Arc<Inner>) -> Option<Upkeep> {
        let (stop, stopped) = mpsc::channel::<()>();
        let weak = Arc::downgrade(inner);
        let shorter = inner.config.writers.idle_close.min(inner.config.retry_interval);
        let tick = (shorter / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        match std::thread::Builder::new().name("store-upkeep".into()).spawn(move || run(&weak, &stopped, tick)) {
            Ok(handle) => Some(Upkeep { stop: Some(stop), handle: Some(handle) }),
            Err(e) => {
                tracing::error!(error = %e, "Could not start the store's upkeep thread: idle index writers stay open and failed saves are not retried.");
                None
            }
        }
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn run(inner: &Weak<Inner>, stopped: &mpsc::Receiver<()>, tick: Duration) {
    loop {
        match stopped.recv_timeout(tick) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.writers.close_idle();
        let colls: Vec<Arc<Coll>> = inner.colls.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for coll in colls {
            crate::recovery::retry_due(&inner, &coll);
        }
        crate::recovery::restart_stalled(&inner);
    }
}
