//! Liveness (`/health`: the process answers) and readiness (`/ready`: every model that must be
//! loaded — embedding models and `load = "startup"` chat models — is loaded, the store is open, and
//! every remote model's upstream answers its probe; otherwise 503 with the reason). A ready answer
//! lists each model's state; an on-demand model that is unloaded does not make hearth unready.

use actix_web::{web, HttpResponse};
use super::routes::{Access, Route, Routes};
use super::types::health::{ModelReadiness, Status};
use crate::error::ApiError;
use crate::models_registry::policy::ModelState;
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::get("/health", Access::Open), health).add(Route::get("/ready", Access::Open), ready);
}

/// 200 while the process answers. An engine thread that stopped or stalled makes it
/// `{"status":"degraded","reason":...}`, still 200: the process lives and serves its other models,
/// `/ready` (503) takes it out of rotation, and under systemd a stopped thread ends the process
/// (see `service_manager::watch_engine_threads`).
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let stall = std::time::Duration::from_secs_f64(state.settings().engine.stall_seconds);
    let faults = state.models().map(|m| crate::provider::liveness::engine_faults(m.all(), stall)).unwrap_or_default();
    if faults.is_empty() {
        return HttpResponse::Ok().json(Status::plain("ok"));
    }
    let reason = faults.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    HttpResponse::Ok().json(Status { reason: Some(reason), ..Status::plain("degraded") })
}

async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let models = state.models()?;
    state.ingestion()?;
    let stall = std::time::Duration::from_secs_f64(state.settings().engine.stall_seconds);
    let mut failures: Vec<String> = crate::provider::liveness::engine_faults(models.all(), stall).iter().map(ToString::to_string).collect();
    let checks = futures_util::future::join_all(models.all().iter().map(|m| m.check_ready())).await;
    failures.extend(checks.into_iter().filter_map(Result::err).map(|e| e.to_string()));
    let registry = models.registry();
    let mut states = Vec::with_capacity(models.all().len());
    for backend in models.all() {
        let Some(status) = registry.index(backend.name()).map(|i| registry.status(i)) else {
            states.push(ModelReadiness { id: backend.name().to_owned(), state: "remote".into(), in_flight: None });
            continue;
        };
        // A model that must stay loaded (load = "startup") and is not; an on-demand model that is
        // unloaded, loading or failed does not make hearth unready.
        if status.pinned && status.state != ModelState::Loaded {
            failures.push(format!("model `{}` must be loaded but is {}", backend.name(), status.state.name()));
        }
        states.push(ModelReadiness { id: backend.name().to_owned(), state: status.state.name().to_owned(), in_flight: Some(status.in_flight as u64) });
    }
    if !failures.is_empty() {
        return Err(ApiError::Unavailable(failures.join("; ")));
    }
    Ok(HttpResponse::Ok().json(Status { models: Some(states), ..Status::plain("ready") }))
}
