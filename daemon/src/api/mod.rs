//! The HTTP API, OpenAI-compatible. One `configure` per file; handlers parse, call the service
//! layer, and shape the response. Bodies are read as bytes under `server.max_body_bytes` (a larger
//! `Content-Length` is refused with 413 before anything is read) and parsed here, so malformed JSON
//! and wrong field types get OpenAI-shaped 400s that name the field.

mod auth;
mod chat;
mod completions;
mod embeddings;
mod files;
mod health;
mod held;
mod metrics;
mod models;
mod responses;
mod sse;
mod vector_stores;
mod tokenize;

use actix_web::{web, HttpRequest, ResponseError};
use serde::de::DeserializeOwned;

pub use auth::require_api_key;

use crate::error::ApiError;
use crate::state::AppState;

/// Register every route and the JSON 404 for the rest.
pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    cfg.app_data(web::Data::new(state.clone()))
        .app_data(web::PayloadConfig::new(state.settings().server.max_body_bytes))
        .configure(health::configure)
        .configure(metrics::configure)
        .configure(models::configure)
        .configure(chat::configure)
        .configure(completions::configure)
        .configure(embeddings::configure)
        .configure(files::configure)
        .configure(vector_stores::configure)
        .configure(responses::configure)
        .configure(tokenize::configure)
        .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> actix_web::HttpResponse {
    ApiError::NotFound(format!("{} {}", req.method(), req.path())).error_response()
}

/// The request body as JSON, with errors that say what is wrong.
pub(crate) fn parse_body(body: Result<web::Bytes, actix_web::Error>, state: &AppState) -> Result<serde_json::Value, ApiError> {
    let body = body.map_err(|e| {
        if e.as_response_error().status_code() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: state.settings().server.max_body_bytes }
        } else {
            ApiError::BadRequest { message: format!("could not read the request body: {e}"), param: None, code: "invalid_body" }
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest { message: "the request body is empty; send a JSON object".into(), param: None, code: "invalid_json" });
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        message: format!("malformed JSON in the request body: {e}"),
        param: None,
        code: "invalid_json",
    })
}

/// Typed fields out of a parsed body; an error names the field (`temperature`, `messages[2].role`).
/// Each request type reads only its own fields, so one body can feed several (chat messages plus
/// the shared generation parameters) without serde's `flatten`, which loses field paths.
pub(crate) fn fields<T: DeserializeOwned>(body: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::BadRequest { message: format!("invalid request: {inner}"), param: None, code: "invalid_value" }
        } else {
            ApiError::invalid(&path, format!("invalid value for `{path}`: {inner}"))
        }
    })
}

/// The body parsed straight into `T`.
pub(crate) fn parse_json<T: DeserializeOwned>(body: Result<web::Bytes, actix_web::Error>, state: &AppState) -> Result<T, ApiError> {
    fields(&parse_body(body, state)?)
}

/// Shorthand for handlers.
pub(crate) type Body = Result<web::Bytes, actix_web::Error>;
