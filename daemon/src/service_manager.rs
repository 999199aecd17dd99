//! systemd integration (`Type=notify`): `STATUS=` while loading, `READY=1` once every model is
//! loaded, `STATUS=` while the ingestion queue is not empty ([`report_ingestion`]), `WATCHDOG=1`
//! from a task that pings only while every engine thread is making progress, and `STOPPING=1`
//! when a drain begins.
//!
//! Messages go to `NOTIFY_SOCKET` through libsystemd (the systemd crate); outside systemd the
//! variable is unset and every call is a no-op. The watchdog is armed by systemd only after
//! `READY=1`, so pinging starts there. Each engine thread beats a heartbeat inside its work, not
//! only between jobs: every 500 ms when idle, every scheduler step and llama.cpp batch of a chat
//! model, every batch of an embedding request (a 1,000-input request is some thirty batches, each
//! a beat). When any heartbeat is older than the watchdog timeout the pings stop, a `STATUS=` line
//! names the engine, and systemd restarts hearth after `WatchdogSec`.
//!
//! An engine thread that stopped (it panicked) never comes back: [`watch_engine_threads`] makes a
//! process under a service manager say so and exit with [`ENGINE_STOPPED_EXIT`] at once, so it is
//! restarted without waiting out `WatchdogSec`; outside one it logs an error once and `/health`
//! and `/ready` report it.

use std::collections::HashSet;
use std::time::Duration;

use systemd::daemon;

use crate::provider::liveness::{engine_faults, EngineFault};
use crate::state::AppState;

/// Exit status when an engine thread stopped under a service manager (`EX_SOFTWARE`); the unit's
/// `Restart=on-failure` starts hearth again.
pub const ENGINE_STOPPED_EXIT: i32 = 70;
/// How often [`watch_engine_threads`] looks.
const ENGINE_CHECK_PERIOD: Duration = Duration::from_millis(500);

/// Talks to the service manager. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct ServiceManager {
    /// `NOTIFY_SOCKET` was set at start-up.
    enabled: bool,
}

impl ServiceManager {
    /// Notify only when started by a service manager.
    pub fn from_env() -> Self {
        Self { enabled: std::env::var_os("NOTIFY_SOCKET").is_some() }
    }

    /// True when started by a service manager (`NOTIFY_SOCKET` set).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn send(&self, state: &[(&str, &str)]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = daemon::notify(state.iter()) {
            tracing::warn!(error = %e, "Could not notify the service manager.");
        }
    }

    /// A free-text status line (`systemctl status` shows it).
    pub fn status(&self, text: &str) {
        self.send(&[(daemon::STATE_STATUS, text)]);
    }

    /// Every model is loaded and requests are served.
    pub fn ready(&self, status: &str) {
        self.send(&[(daemon::STATE_READY, "1"), (daemon::STATE_STATUS, status)]);
    }

    /// A graceful stop has begun.
    pub fn stopping(&self, status: &str) {
        self.send(&[(daemon::STATE_STOPPING, "1"), (daemon::STATE_STATUS, status)]);
    }

    fn ping(&self) {
        self.send(&[(daemon::STATE_WATCHDOG, "1")]);
    }

    /// The watchdog timeout systemd asked for (`WatchdogSec=`), if any.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        match daemon::watchdog_enabled() {
            Ok(0) => None,
            Ok(usec) => Some(Duration::from_micros(usec)),
            Err(e) => {
                tracing::warn!(error = %e, "WATCHDOG_USEC is not usable; the watchdog is off.");
                None
            }
        }
    }
}

/// The first engine whose heartbeat is older than `limit`, with its age.
pub fn stalled_engine<'a>(ages: impl IntoIterator<Item = (&'a str, Duration)>, limit: Duration) -> Option<(&'a str, Duration)> {
    ages.into_iter().find(|(_, age)| *age > limit)
}

/// Ping the watchdog every half timeout while every engine makes progress; on the first stall,
/// say so and stop pinging for good (a hung llama.cpp call does not come back).
pub async fn run_watchdog(manager: ServiceManager, state: AppState, timeout: Duration) {
    let period = timeout / 2;
    tracing::info!(timeout_ms = timeout.as_millis() as u64, "systemd watchdog armed.");
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(models) = state.models() else { continue };
        // Remote models have no thread of ours to watch; their upstream's health is `/ready`'s.
        let ages: Vec<(&str, Duration)> = models.all().iter().filter_map(|m| Some((m.name(), m.heartbeat_age()?))).collect();
        if let Some((name, age)) = stalled_engine(ages, timeout) {
            let line = format!("engine `{name}` has made no progress for {:.1}s; watchdog pings stopped", age.as_secs_f64());
            tracing::error!(model = %name, age_ms = age.as_millis() as u64, "Engine thread stalled; stopping watchdog pings so systemd restarts hearth.");
            manager.status(&line);
            return;
        }
        manager.ping();
    }
}

/// Watch for engine threads that stopped. Under a service manager: log the reason, send it as
/// `STATUS=`, and exit with [`ENGINE_STOPPED_EXIT`]. Outside one: log an error once per model and
/// keep serving the other models (`/health` says `degraded`, `/ready` 503).
pub async fn watch_engine_threads(manager: ServiceManager, state: AppState) {
    let mut tick = tokio::time::interval(ENGINE_CHECK_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported: HashSet<String> = HashSet::new();
    loop {
        tick.tick().await;
        let Ok(models) = state.models() else { continue };
        for fault in engine_faults(models.all(), Duration::MAX) {
            let EngineFault::Stopped { model, reason } = &fault else { continue };
            if !reported.insert(model.clone()) {
                continue;
            }
            if manager.enabled() {
                tracing::error!(%model, %reason, exit = ENGINE_STOPPED_EXIT, "Engine thread stopped; exiting so the service manager restarts hearth.");
                manager.status(&format!("{fault}; exiting"));
                std::process::exit(ENGINE_STOPPED_EXIT);
            }
            tracing::error!(%model, %reason, "Engine thread stopped; the model answers 503 until hearth is restarted.");
        }
    }
}

/// The `STATUS=` line while serving with `pending` files waiting for or in ingestion.
pub fn ingestion_status(serving: &str, pending: usize) -> String {
    match pending {
        0 => serving.to_owned(),
        n => format!("{serving}; ingesting {n} file(s)"),
    }
}

/// Keep `STATUS=` in step with the ingestion queue: `serving` plus the files waiting or in
/// ingestion while there are any, `serving` alone once the queue is empty. Polls twice a second
/// and sends only when the count changes.
pub async fn report_ingestion(manager: ServiceManager, state: AppState, serving: String) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = 0;
    loop {
        tick.tick().await;
        let pending = state.ingestion().map_or(0, |i| i.queue_len());
        if pending != last {
            manager.status(&ingestion_status(&serving, pending));
            last = pending;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_heartbeat_is_named() {
        let limit = Duration::from_secs(3);
        let ages = [("chat", Duration::from_millis(400)), ("embed", Duration::from_secs(4))];
        assert_eq!(stalled_engine(ages, limit), Some(("embed", Duration::from_secs(4))));
        assert_eq!(stalled_engine([("chat", Duration::from_secs(3))], limit), None);
        assert_eq!(stalled_engine(std::iter::empty(), limit), None);
    }

    #[test]
    fn the_status_names_the_files_being_ingested() {
        assert_eq!(ingestion_status("Serving 2 model(s)", 0), "Serving 2 model(s)");
        assert_eq!(ingestion_status("Serving 2 model(s)", 3), "Serving 2 model(s); ingesting 3 file(s)");
    }

    #[test]
    fn outside_systemd_nothing_is_sent_and_there_is_no_watchdog() {
        let m = ServiceManager { enabled: false };
        m.status("x");
        m.ready("y");
        assert_eq!(m.watchdog_timeout(), None);
    }
}
