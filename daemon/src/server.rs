//! `hearth serve`: bind the HTTP listener first (so `/health` answers and `/ready` says 503), load
//! the models off the async runtime, then report ready. A model that fails to load stops the
//! server and the process with the reason.
//!
//! Under systemd (`Type=notify`, see [`crate::service_manager`]): `STATUS=` lines while loading,
//! `READY=1` once the models are loaded, then the watchdog task and `STATUS=` lines while files
//! are being ingested. SIGTERM or SIGINT sends
//! `STOPPING=1` and drains: the listener closes, requests in flight (streams included) get up to
//! `[server] drain_seconds` to finish (then their connections are closed); then each chat engine
//! thread ends and finishes its prefix-cache writes (at most 10 s), and the process exits 0. The
//! unit's `TimeoutStopSec` (45 s) covers both.
//!
//! Connection limits: at most `[server] max_connections` open connections (actix counts per
//! worker, so each worker gets its share, rounded up; further connections wait in the listen
//! backlog), an optional kernel send buffer per connection (`send_buffer_bytes`), request headers
//! within [`HEADER_TIMEOUT`], a body within
//! `body_read_timeout_seconds` (`api::deadline`), and a streamed generation whose client stops
//! reading is cancelled by the engine after `stall_timeout_seconds`.

use std::io::Write;
use std::time::Duration;

use actix_web::HttpServer;
use anyhow::Context;

use crate::api;
use crate::compute;
use crate::config::Settings;
use crate::ingest::Ingestion;
use crate::library::Library;
use crate::models::Models;
use crate::service_manager::{self, ServiceManager};
use crate::state::AppState;

/// Threads each HTTP worker may run blocking work on (store calls, tokenizing, schema conversion);
/// beyond it the work queues. actix's default is 512 divided among the workers, so 100 concurrent
/// vector-store creations took the process from 24 to 130 threads (systemd's `TasksMax=512`
/// bounds the whole process, parse workers included).
const BLOCKING_THREADS_PER_WORKER: usize = 16;

/// How long a client may take to send a request's headers (actix then answers 408).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Run the daemon until it is stopped (SIGINT/SIGTERM drain gracefully) or a model fails to load.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let manager = ServiceManager::from_env();
    let state_dir = settings.server.state_dir.clone();
    std::fs::create_dir_all(&state_dir).with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
    crate::state_format::open(&state_dir)?;
    compute::init(&settings.engine, true)?;

    let addr = settings.listen_addr();
    let workers = match settings.server.http_workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let per_worker = settings.server.max_connections.div_ceil(workers);
    let send_buffer = settings.server.send_buffer_bytes;
    let drain_seconds = settings.server.drain_seconds;
    let model_names: Vec<String> = settings.models.iter().map(|m| m.name.clone()).collect();
    log_access(&settings);
    let state = AppState::new(settings);
    let app_state = state.clone();
    let server = HttpServer::new(move || crate::app::create_app(app_state.clone()))
    .workers(workers)
    .max_connections(per_worker)
    .worker_max_blocking_threads(BLOCKING_THREADS_PER_WORKER)
    .on_connect(move |conn, _| set_send_buffer(conn, send_buffer))
    .client_request_timeout(HEADER_TIMEOUT)
    .disable_signals()
    .shutdown_timeout(drain_seconds)
    .bind(addr)
    .with_context(|| format!("cannot listen on {addr}"))?;
    for bound in server.addrs() {
        tracing::info!(%bound, "Listening.");
        // One machine-readable line on stdout, so scripts and tests learn a port chosen by the OS.
        println!("hearth listening on http://{bound}");
    }
    let _ = std::io::stdout().flush();
    let server = server.run();
    let handle = server.handle();
    let mut running = actix_web::rt::spawn(server);
    let mut stop = Box::pin(stop_requested());

    manager.status(&format!("Loading {} model(s): {}", model_names.len(), model_names.join(", ")));
    let loader_state = state.clone();
    let loading = actix_web::rt::task::spawn_blocking(move || Models::load(loader_state.settings()));
    tokio::select! {
        loaded = loading => match loaded {
            Ok(Ok(models)) => state.set_models(models),
            Ok(Err(e)) => {
                handle.stop(false).await;
                return Err(e).context("start-up failed");
            }
            Err(e) => {
                handle.stop(false).await;
                return Err(anyhow::anyhow!("model loader panicked: {e}"));
            }
        },
        signal = &mut stop => {
            // The loader thread cannot be interrupted inside llama.cpp; exiting abandons it.
            manager.stopping(&format!("{signal} while loading; stopping"));
            tracing::info!(%signal, "Stop requested while loading.");
            handle.stop(false).await;
            return Ok(());
        }
    }
    let ingestion = start_ingestion(&state).await.context("start-up failed")?;
    state.metrics().attach_store(ingestion.library().store().clone());
    state.set_library(ingestion.library().clone());
    state.set_ingestion(ingestion);
    tracing::info!("Ready.");
    let serving = format!("Serving {} model(s) on {addr}", model_names.len());
    manager.ready(&serving);
    if let Some(timeout) = manager.watchdog_timeout() {
        actix_web::rt::spawn(service_manager::run_watchdog(manager, state.clone(), timeout));
    }
    actix_web::rt::spawn(service_manager::watch_engine_threads(manager, state.clone()));
    if manager.enabled() {
        actix_web::rt::spawn(service_manager::report_ingestion(manager, state.clone(), serving));
    }

    tokio::select! {
        finished = &mut running => {
            finished.context("server task failed")?.context("server failed")?;
        }
        signal = stop => {
            tracing::info!(%signal, drain_s = drain_seconds, "Stop requested; draining requests in flight.");
            manager.stopping(&format!("{signal}: draining requests in flight"));
            handle.stop(true).await;
            running.await.context("server task failed")?.context("server failed")?;
        }
    }
    if let Ok(models) = state.models() {
        models.registry().stop_engines().await;
    }
    tracing::info!("Stopped.");
    Ok(())
}

/// `[server] send_buffer_bytes` on an accepted connection (0: leave the kernel's sizing).
fn set_send_buffer(conn: &dyn std::any::Any, bytes: usize) {
    if bytes == 0 {
        return;
    }
    if let Some(stream) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Err(e) = socket2::SockRef::from(stream).set_send_buffer_size(bytes) {
            tracing::debug!(error = %e, "Cannot set the connection's send buffer.");
        }
    }
}

/// Who may call: key counts by scope (never the keys), allowed hosts and origins.
fn log_access(settings: &Settings) {
    use api::keys::Scope;
    let server = &settings.server;
    let count = |scope| server.keys.count(scope);
    if server.keys.is_empty() {
        tracing::info!("No API keys: every route is open to clients on this machine.");
    } else {
        tracing::info!(
            admin = count(Scope::Admin),
            ingest = count(Scope::Ingest),
            infer = count(Scope::Infer),
            read = count(Scope::Read),
            "API keys loaded."
        );
    }
    tracing::info!(allowed_hosts = ?server.allowed_hosts, allowed_origins = ?server.allowed_origins, "Host and origin policy.");
}

/// Open the library (store, files directory), resume queued ingestion and start the watched folders.
async fn start_ingestion(state: &AppState) -> anyhow::Result<std::sync::Arc<Ingestion>> {
    let settings = state.settings().clone();
    let engines = state.models().map_err(|e| anyhow::anyhow!("{e}"))?.all().to_vec();
    let metrics = state.metrics().clone();
    let opened = actix_web::rt::task::spawn_blocking(move || Library::open(&settings, &engines).map(|library| (library, settings))).await??;
    let (library, settings) = opened;
    let ingestion = Ingestion::start(std::sync::Arc::new(library), &settings, metrics)?;
    crate::ingest::watch::start(&ingestion, &settings.ingest, &settings.server.state_dir).await?;
    Ok(ingestion)
}

/// Resolves with the signal's name on SIGTERM or SIGINT.
async fn stop_requested() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        (Err(e), _) | (_, Err(e)) => {
            // Without signal handlers the default action (exit) still stops hearth, just not gently.
            tracing::warn!(error = %e, "Cannot install signal handlers; stopping will not drain.");
            std::future::pending().await
        }
    }
}
