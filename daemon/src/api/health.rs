//! Liveness (`/health`: the process answers) and readiness (`/ready`: every model is loaded and the store is open).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health)).route("/ready", web::get().to(ready));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.models()?;
    state.ingest()?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}
