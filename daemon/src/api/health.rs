//! Liveness (`/health`: the process answers) and readiness (`/ready`: every model is loaded, the
//! store is open, and every remote model's upstream answers its probe; otherwise 503 with the reason).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::routes::{Access, Route, Routes};
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::get("/health", Access::Open), health).add(Route::get("/ready", Access::Open), ready);
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let models = state.models()?;
    state.ingest()?;
    let checks = futures_util::future::join_all(models.all().iter().map(|m| m.check_ready())).await;
    let failures: Vec<String> = checks.into_iter().filter_map(Result::err).map(|e| e.to_string()).collect();
    if !failures.is_empty() {
        return Err(ApiError::Unavailable(failures.join("; ")));
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
