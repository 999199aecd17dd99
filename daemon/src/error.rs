//! The daemon's request error and its one mapping to HTTP.
//!
//! Error bodies have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so SDKs
//! show the message. The client's mistakes are 4xx with a message that says what is wrong; our own
//! faults are 5xx and logged.
//!
//! Every conversion to HTTP lives here: the layers below return [`ServiceError`] (or
//! `EngineError`, `StoreError`, which convert into it) and know no status codes;
//! `From<ServiceError> for ApiError` is the one mapping, an exhaustive `match` that the
//! `wildcard_enum_match_arm` lint keeps free of catch-all arms, so a new variant cannot reach a
//! client without someone deciding its status.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use engine::EngineError;
use serde_json::json;

use crate::fault::{ServiceError, UpstreamFault};

/// Seconds a client is told to wait after a 429 or 503.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or has an invalid field.
    #[error("{message}")]
    BadRequest { message: String, param: Option<String>, code: &'static str },
    /// Missing or wrong API key.
    #[error("invalid or missing API key: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// Refused by policy: the `Host` or `Origin` is not allowed, or the key lacks the route's scope.
    #[error("{message}")]
    Forbidden { message: String, code: &'static str },
    /// A body of a type the route does not take (`received`: the quoted header, or "missing").
    #[error("{route} takes a body of type {expected}; this request's Content-Type is {received}")]
    UnsupportedMediaType { route: String, expected: &'static str, received: String },
    /// The named model is not served here.
    #[error("the model `{0}` does not exist; GET /v1/models lists the models served")]
    ModelNotFound(String),
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// No such file, vector store or response.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The body is larger than `server.max_body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The request body did not arrive within `[server] body_read_timeout_seconds` (for an upload:
    /// it paused that long).
    #[error("{}", request_timeout_message(*seconds, *upload))]
    RequestTimeout { seconds: u64, upload: bool },
    /// The queue is full.
    #[error("{0}")]
    Overloaded(String),
    /// Models are still loading or the engine stopped.
    #[error("{0}")]
    Unavailable(String),
    /// A model is not loaded in time or failed to load: 503 with `code` and a `Retry-After` of
    /// `retry_after` seconds.
    #[error("{message}")]
    ModelUnavailable { message: String, code: &'static str, retry_after: u64 },
    /// A model cannot be unloaded now (requests in flight, or loading): 409 `model_busy`.
    #[error("{0}")]
    ModelBusy(String),
    /// Our fault.
    #[error("internal error: {0}")]
    Internal(String),
    /// A configured limit on things a client creates (`[store] max_vector_stores`) is reached.
    #[error("{0}")]
    LimitReached(String),
    /// New content would leave less free disk space than `[store] min_free_bytes`.
    #[error("not enough free disk space to accept this: {free} bytes free, {needed} bytes needed, and {reserve} bytes are kept in reserve ([store] min_free_bytes); free some space or lower the reserve")]
    InsufficientStorage { free: u64, needed: u64, reserve: u64 },
    /// A remote model's upstream failed or refused: 502, 503, 504, or the upstream's own 4xx.
    #[error("{}", .0.message)]
    Upstream(UpstreamFault),
}

impl ApiError {
    /// A 400 about one request field.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into(), param: Some(param.to_owned()), code: "invalid_value" }
    }

    #[deny(clippy::wildcard_enum_match_arm, reason = "each error's type and code is decided here, on purpose")]
    fn kind(&self) -> (&'static str, Option<&str>, &'static str) {
        match self {
            ApiError::BadRequest { param, code, .. } => ("invalid_request_error", param.as_deref(), code),
            ApiError::Unauthorized => ("authentication_error", None, "invalid_api_key"),
            ApiError::Forbidden { code, .. } => ("permission_error", None, code),
            ApiError::UnsupportedMediaType { .. } => ("invalid_request_error", None, "unsupported_media_type"),
            ApiError::ModelNotFound(_) => ("invalid_request_error", Some("model"), "model_not_found"),
            ApiError::NotFound(_) | ApiError::ResourceNotFound(_) => ("invalid_request_error", None, "not_found"),
            ApiError::PayloadTooLarge { .. } => ("invalid_request_error", None, "payload_too_large"),
            ApiError::RequestTimeout { .. } => ("invalid_request_error", None, "request_timeout"),
            ApiError::Overloaded(_) => ("rate_limit_error", None, "overloaded"),
            ApiError::Unavailable(_) => ("service_unavailable", None, "unavailable"),
            ApiError::ModelUnavailable { code, .. } => ("service_unavailable", Some("model"), code),
            ApiError::ModelBusy(_) => ("invalid_request_error", Some("model"), "model_busy"),
            ApiError::Internal(_) => ("server_error", None, "internal_error"),
            ApiError::LimitReached(_) => ("invalid_request_error", None, "limit_reached"),
            ApiError::InsufficientStorage { .. } => ("server_error", None, "insufficient_storage"),
            ApiError::Upstream(e) => (e.error_type, e.param.as_deref(), e.code),
        }
    }

    /// Seconds a client should wait before retrying, for the `Retry-After` header: a model's own
    /// load time for [`ApiError::ModelUnavailable`], [`RETRY_AFTER_SECS`] for other 429s and 503s.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::ModelUnavailable { retry_after, .. } => Some(*retry_after),
            _ if matches!(self.status_code(), StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) => Some(RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The JSON body, also used inside a stream when a failure happens after the headers went out.
    pub fn body(&self) -> serde_json::Value {
        let (kind, param, code) = self.kind();
        let mut body = json!({"error": {"message": self.to_string(), "type": kind, "param": param, "code": code}});
        if let ApiError::InsufficientStorage { free, needed, reserve } = self {
            // The numbers also as fields, for clients that act on them.
            body["error"]["free_bytes"] = json!(free);
            body["error"]["needed_bytes"] = json!(needed);
            body["error"]["reserve_bytes"] = json!(reserve);
        }
        body
    }
}

impl ResponseError for ApiError {
    #[deny(clippy::wildcard_enum_match_arm, reason = "each error's status is decided here, on purpose")]
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            // An unknown model is a 404 (`model_not_found`), as OpenAI, vLLM and Ollama answer it.
            ApiError::NotFound(_) | ApiError::ResourceNotFound(_) | ApiError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::ModelUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ModelBusy(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::LimitReached(_) => StatusCode::CONFLICT,
            ApiError::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Upstream(e) => StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            // Expected while loading or overloaded; not a fault.
            ApiError::Unavailable(_) | ApiError::ModelUnavailable { .. } => tracing::debug!(error = %self, "Request refused."),
            // The disk, not hearth: the operator's to act on, said once per refusal.
            ApiError::InsufficientStorage { .. } => tracing::warn!(error = %self, "Content refused."),
            _ if status.is_server_error() => tracing::error!(error = %self, "Request failed."),
            _ => {}
        }
        let mut response = HttpResponse::build(status);
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if matches!(self, ApiError::Unauthorized) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(self.body())
    }
}

fn request_timeout_message(seconds: u64, upload: bool) -> String {
    if upload {
        format!("the upload paused for more than {seconds} s ([server] body_read_timeout_seconds); the connection is closed")
    } else {
        format!("the request body did not arrive within {seconds} s ([server] body_read_timeout_seconds); the connection is closed")
    }
}

impl From<store::NoSpace> for ApiError {
    fn from(e: store::NoSpace) -> Self {
        ApiError::InsufficientStorage { free: e.free, needed: e.needed, reserve: e.reserve }
    }
}

impl From<crate::files::FileError> for ApiError {
    fn from(e: crate::files::FileError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<ServiceError> for ApiError {
    #[deny(clippy::wildcard_enum_match_arm, reason = "every service error gets its status here, on purpose")]
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound { message, .. } => ApiError::ResourceNotFound(message),
            ServiceError::ModelNotFound(model) => ApiError::ModelNotFound(model),
            ServiceError::Invalid { field, message, code } => ApiError::BadRequest { message, param: field, code },
            ServiceError::Conflict(message) => ApiError::LimitReached(message),
            ServiceError::Unavailable(message) => ApiError::Unavailable(message),
            ServiceError::Busy(message) => ApiError::Overloaded(message),
            ServiceError::ModelUnavailable { message, code, retry_after } => ApiError::ModelUnavailable { message, code, retry_after },
            ServiceError::ModelBusy(message) => ApiError::ModelBusy(message),
            ServiceError::InsufficientStorage(no_space) => no_space.into(),
            ServiceError::Upstream(fault) => ApiError::Upstream(fault),
            ServiceError::Internal(message) => ApiError::Internal(message),
        }
    }
}
