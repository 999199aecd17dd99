//! `hearth serve`: bind the HTTP listener first (so `/health` answers and `/ready` says 503), load
//! the models off the async runtime, then report ready. A model that fails to load stops the
//! server and the process with the reason.

use std::io::Write;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer};
use anyhow::Context;

use crate::api;
use crate::config::Settings;
use crate::models::Models;
use crate::state::AppState;

/// Run the daemon until it is stopped (SIGINT/SIGTERM drain gracefully) or a model fails to load.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let state_dir = settings.server.state_dir.clone();
    std::fs::create_dir_all(&state_dir).with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
    engine::init_backend(&engine::BackendOptions { log_to_tracing: true, backend_dir: None })?;

    let addr = settings.listen_addr();
    let workers = match settings.server.http_workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let state = AppState::new(settings);
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        let state = app_state.clone();
        App::new().wrap(from_fn(api::require_api_key)).configure(move |cfg| api::configure(cfg, &state))
    })
    .workers(workers)
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

    let loader_state = state.clone();
    let loading = actix_web::rt::task::spawn_blocking(move || Models::load(loader_state.settings()));
    let running = actix_web::rt::spawn(server);
    match loading.await {
        Ok(Ok(models)) => {
            state.set_models(models);
            tracing::info!("Ready.");
        }
        Ok(Err(e)) => {
            handle.stop(false).await;
            return Err(e).context("start-up failed");
        }
        Err(e) => {
            handle.stop(false).await;
            return Err(anyhow::anyhow!("model loader panicked: {e}"));
        }
    }
    running.await.context("server task failed")?.context("server failed")?;
    tracing::info!("Stopped.");
    Ok(())
}
