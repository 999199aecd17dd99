//! `GET /metrics`: the Prometheus scrape. Encoding reads NVML and every engine's counters, so it
//! runs on a blocking thread; the format follows `Accept` (OpenMetrics for Prometheus, the
//! classic text format otherwise). Needs an `admin` key when keys are configured.

use actix_web::http::header::ACCEPT;
use actix_web::{web, HttpRequest, HttpResponse};

use super::keys::Scope;
use super::routes::{Route, Routes};
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::get("/metrics", Scope::Admin), scrape);
}

async fn scrape(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let metrics = state.metrics().clone();
    let exposition = web::block(move || metrics.encode(accept.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(format!("metrics encoder did not run: {e}")))?
        .map_err(|e| ApiError::Internal(format!("could not encode metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(exposition.content_type).body(exposition.body))
}
