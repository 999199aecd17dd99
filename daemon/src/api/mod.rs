//! The HTTP API, OpenAI-compatible. One `configure` per file; handlers parse, call the service
//! layer, and shape the response. Bodies are read as bytes under `server.max_body_bytes` (a larger
//! `Content-Length` is refused with 413 before anything is read) and parsed here, so malformed JSON
//! and wrong field types get OpenAI-shaped 400s that name the field.
//!
//! Each `configure` registers its routes through [`Routes`], with the scope each needs and the body
//! it takes ([`routes`]); the middleware in front of every handler, outermost first:
//! `metrics::track_http` (counts every answer, refusals too), [`check_host_and_origin`]
//! ([`guard`]), CORS for the allowed origins ([`cors`]), then [`authorize`] (key, scope and
//! content type of the matched route, [`auth`]). `hearth routes` prints the table.

pub mod accepted;
mod auth;
mod chat;
mod completions;
pub mod console;
mod deadline;
mod embeddings;
mod files;
mod guard;
mod health;
mod held;
/// The key ring and scopes are settings (`config::keys`); handlers name them as `api::keys`.
pub use crate::config::keys;
mod logprobs;
mod metrics;
mod models;
mod models_library;
mod ollama;
pub mod openapi;
mod responses;
pub mod routes;
mod sse;
mod vector_stores;
mod tokenize;
pub mod types;

use actix_web::{web, HttpRequest, ResponseError};
use serde::de::DeserializeOwned;

pub use auth::authorize;
pub use deadline::body_deadline;
pub use guard::{check_host_and_origin, cors, EdgePolicy};
pub use routes::{Access, BodyKind, Route, RouteTable, Routes};

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of every API file, in one place.
fn register(r: &mut Routes<'_>) {
    health::configure(r);
    metrics::configure(r);
    models_library::configure(r); // before models: `/v1/models/library` is not a model id
    models::configure(r);
    chat::configure(r);
    completions::configure(r);
    embeddings::configure(r);
    files::configure(r);
    vector_stores::configure(r);
    responses::configure(r);
    tokenize::configure(r);
    ollama::configure(r);
    openapi::configure(r);
    console::configure(r);
}

/// The route table: every route with its method, path pattern, scope and body.
pub fn routes() -> Vec<Route> {
    let mut r = Routes::listing();
    register(&mut r);
    r.into_table()
}

/// Register every route, the policies the middleware reads, and the JSON 404 for the rest.
pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    let mut r = Routes::registering(cfg);
    register(&mut r);
    let table = RouteTable::new(r.into_table());
    let settings = state.settings();
    let server = &settings.server;
    let edge = EdgePolicy::new(&server.allowed_hosts, &server.allowed_origins, settings.listen_addr());
    cfg.app_data(web::Data::new(state.clone()))
        .app_data(web::Data::new(state.metrics().http().clone()))
        .app_data(web::Data::new(table))
        .app_data(web::Data::new(edge))
        .app_data(web::PayloadConfig::new(server.max_body_bytes))
        .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(&e).into()))
        .default_service(web::to(not_found));
}

/// A query string that does not parse (`?limit=-1`): OpenAI's 400, not actix's plain-text one.
fn query_error(e: &actix_web::error::QueryPayloadError) -> ApiError {
    let detail = match e {
        actix_web::error::QueryPayloadError::Deserialize(inner) => inner.to_string(),
        other => other.to_string(),
    };
    ApiError::BadRequest { message: format!("invalid query string: {detail}"), param: None, code: "invalid_value" }
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

/// Typed fields out of a parsed body, as an API error ([`crate::wire::fields`]).
pub(crate) fn fields<T: DeserializeOwned>(body: &serde_json::Value) -> Result<T, ApiError> {
    Ok(crate::wire::fields(body)?)
}

/// The body parsed straight into `T`.
pub(crate) fn parse_json<T: DeserializeOwned>(body: Result<web::Bytes, actix_web::Error>, state: &AppState) -> Result<T, ApiError> {
    fields(&parse_body(body, state)?)
}

/// Shorthand for handlers.
pub(crate) type Body = Result<web::Bytes, actix_web::Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use keys::Scope;

    #[test]
    fn every_route_is_registered_once() {
        let table = routes();
        assert!(table.len() >= 30, "{} routes", table.len());
        for (i, route) in table.iter().enumerate() {
            assert!(!table[..i].iter().any(|r| r.method == route.method && r.path == route.path), "{route} is registered twice");
        }
    }

    #[test]
    fn the_table_declares_the_documented_scopes() {
        let table = routes();
        let access = |method: &str, path: &str| {
            table.iter().find(|r| r.method.as_str() == method && r.path == path).map(|r| (r.access, r.body)).unwrap_or_else(|| panic!("{method} {path} missing"))
        };
        assert_eq!(access("GET", "/health").0, Access::Open);
        assert_eq!(access("GET", "/ready").0, Access::Open);
        assert_eq!(access("GET", "/metrics").0, Access::Needs(Scope::Admin));
        assert_eq!(access("POST", "/v1/chat/completions"), (Access::Needs(Scope::Infer), BodyKind::Json));
        assert_eq!(access("POST", "/v1/files"), (Access::Needs(Scope::Ingest), BodyKind::Multipart));
        assert_eq!(access("POST", "/v1/vector_stores/{id}/search"), (Access::Needs(Scope::Read), BodyKind::Json));
        for route in &table {
            match route.method.as_str() {
                "GET" => assert!(matches!(route.access, Access::Open | Access::Needs(Scope::Read | Scope::Admin)), "{route}"),
                "DELETE" => assert_eq!(route.access, Access::Needs(Scope::Admin), "{route}"),
                _ => assert_ne!(route.access, Access::Open, "{route}"),
            }
            if route.body == BodyKind::Multipart {
                assert_eq!(route.path, "/v1/files", "multipart only on the upload");
            }
        }
    }
}
