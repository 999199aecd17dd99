//! [`ServiceError`]: what the work behind the API fails with — the library, ingestion, retrieval
//! and the services — without any HTTP in it. The one mapping to HTTP statuses and OpenAI's error
//! bodies is `impl From<ServiceError> for ApiError` in `error.rs`.
//!
//! Design: a variant says *what* went wrong (not found, invalid, busy...) and carries the typed
//! facts a caller may act on (which field, which resource, the disk's numbers); the message is what
//! a person reads. The store's and the file registry's errors convert here once (`?` works on
//! them), so no caller maps them by hand, and no code is ever derived from message text.
//!
//! This module sits below everything that returns it (the provider layer included): it imports no
//! other module of the daemon.

use engine::EngineError;
use store::{NoSpace, StoreError};

/// Everything the service layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such resource (a vector store, a file, a file batch...).
    #[error("{message}")]
    NotFound {
        /// What kind of thing: "vector store", "file", "file batch".
        what: &'static str,
        /// The id asked for.
        id: String,
        /// What the client reads.
        message: String,
    },
    /// The named model is not served here.
    #[error("the model `{0}` does not exist; GET /v1/models lists the models served")]
    ModelNotFound(String),
    /// The input is wrong: which field (if one) and why; `code` is the stable machine code
    /// (`invalid_value`, `file_too_large`, `context_length_exceeded`...).
    #[error("{message}")]
    Invalid {
        /// The request field at fault.
        field: Option<String>,
        /// What is wrong with it.
        message: String,
        /// The stable error code.
        code: &'static str,
    },
    /// A configured limit on what clients create is reached (`[store] max_vector_stores`).
    #[error("{0}")]
    Conflict(String),
    /// Not now, but soon: the store is opening, an index rebuilding, a model loading or stopped.
    #[error("{0}")]
    Unavailable(String),
    /// Too much at once: a full queue or admission; try again later.
    #[error("{0}")]
    Busy(String),
    /// A model is not loaded in time (`model_loading`) or its load failed (`model_load_failed`);
    /// `retry_after` is how many seconds a client should wait (the model's last load time).
    #[error("{message}")]
    ModelUnavailable {
        /// What the client reads.
        message: String,
        /// The stable error code.
        code: &'static str,
        /// Seconds to wait before retrying.
        retry_after: u64,
    },
    /// A model cannot change state now: requests are in flight on it, or it is loading.
    #[error("{0}")]
    ModelBusy(String),
    /// The disk is short of the free-space reserve (`[store] min_free_bytes`).
    #[error("{0}")]
    InsufficientStorage(NoSpace),
    /// A remote model's upstream failed or refused; what to pass on to the client.
    #[error("{}", .0.message)]
    Upstream(UpstreamFault),
    /// Our fault: logged, answered as a 5xx.
    #[error("{0}")]
    Internal(String),
}

/// An upstream's failure as the provider classified it: the status hearth answers with (502, 503,
/// 504, or the upstream's own 4xx), OpenAI's `type` and `param`, hearth's `code`, and a message
/// that names the model and the upstream's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFault {
    /// The HTTP status to answer with.
    pub status: u16,
    /// OpenAI's error `type`.
    pub error_type: &'static str,
    /// The request field at fault, when the upstream named one.
    pub param: Option<String>,
    /// hearth's error code (`upstream_unreachable`, `upstream_timeout`...).
    pub code: &'static str,
    /// What the client reads.
    pub message: String,
}

impl ServiceError {
    /// An invalid request field.
    pub fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid { field: Some(field.to_owned()), message: message.into(), code: "invalid_value" }
    }

    /// A missing resource of kind `what`.
    pub fn not_found(what: &'static str, id: impl Into<String>, message: impl Into<String>) -> ServiceError {
        ServiceError::NotFound { what, id: id.into(), message: message.into() }
    }

    /// True for failures that pass by themselves (busy, unavailable, a full disk): worth a retry.
    pub fn is_transient(&self) -> bool {
        match self {
            ServiceError::Busy(_)
            | ServiceError::Unavailable(_)
            | ServiceError::InsufficientStorage(_)
            | ServiceError::ModelUnavailable { .. }
            | ServiceError::ModelBusy(_) => true,
            // 429 (the upstream's rate limit), 502, 503, 504 pass; its 4xx refusals do not.
            ServiceError::Upstream(fault) => matches!(fault.status, 429 | 502 | 503 | 504),
            ServiceError::NotFound { .. }
            | ServiceError::ModelNotFound(_)
            | ServiceError::Invalid { .. }
            | ServiceError::Conflict(_)
            | ServiceError::Internal(_) => false,
        }
    }
}

impl From<StoreError> for ServiceError {
    /// The caller's mistakes are `Invalid`/`NotFound`, an index rebuilding is `Unavailable`, the
    /// vector-store limit a `Conflict` that names its key, a short disk `InsufficientStorage`.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CollectionNotFound(id) => {
                let message = StoreError::CollectionNotFound(id.clone()).to_string();
                ServiceError::NotFound { what: "vector store", id, message }
            }
            StoreError::DocumentNotFound { collection, document } => {
                let message = StoreError::DocumentNotFound { collection, document: document.clone() }.to_string();
                ServiceError::NotFound { what: "file", id: document, message }
            }
            StoreError::IndexNotReady { .. } => ServiceError::Unavailable(e.to_string()),
            StoreError::CollectionLimit { limit } => ServiceError::Conflict(format!(
                "this server already holds its limit of {limit} vector stores ([store] max_vector_stores); delete one or raise the limit"
            )),
            StoreError::NoSpace(no_space) => ServiceError::InsufficientStorage(no_space),
            e if e.is_user_error() => ServiceError::Invalid { field: None, message: e.to_string(), code: "invalid_value" },
            e => ServiceError::Internal(e.to_string()),
        }
    }
}

impl From<NoSpace> for ServiceError {
    fn from(e: NoSpace) -> Self {
        ServiceError::InsufficientStorage(e)
    }
}

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InputTooLong { .. } => {
                ServiceError::Invalid { field: None, message: format!("{e}; shorten the input"), code: "context_length_exceeded" }
            }
            EngineError::EmptyInput => ServiceError::Invalid { field: None, message: e.to_string(), code: "empty_input" },
            EngineError::Template(_) => ServiceError::Invalid { field: Some("messages".into()), message: e.to_string(), code: "invalid_value" },
            EngineError::WrongKind { .. } => ServiceError::Invalid { field: Some("model".into()), message: e.to_string(), code: "wrong_model_kind" },
            EngineError::Overloaded { .. } => ServiceError::Busy(e.to_string()),
            EngineError::Stopped(_) => ServiceError::Unavailable(e.to_string()),
            EngineError::ModelFile { .. }
            | EngineError::ModelLoad { .. }
            | EngineError::Context { .. }
            | EngineError::Backend(_)
            | EngineError::Inference(_) => ServiceError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_their_messages_and_get_a_kind() {
        let e = ServiceError::from(StoreError::CollectionNotFound("vs_1".into()));
        assert!(matches!(&e, ServiceError::NotFound { what: "vector store", id, .. } if id == "vs_1"), "{e:?}");
        assert_eq!(e.to_string(), StoreError::CollectionNotFound("vs_1".into()).to_string());
        let e = ServiceError::from(StoreError::IndexNotReady { collection: "vs".into(), index: "vector" });
        assert!(matches!(e, ServiceError::Unavailable(_)) && e.is_transient());
        let e = ServiceError::from(StoreError::Invalid("dimension".into()));
        assert!(matches!(e, ServiceError::Invalid { code: "invalid_value", .. }) && !e.is_transient());
        let e = ServiceError::from(StoreError::CollectionLimit { limit: 3 });
        assert!(matches!(&e, ServiceError::Conflict(m) if m.contains("max_vector_stores")));
    }
}
