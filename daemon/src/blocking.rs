//! Blocking work (store writes that fsync, file I/O, tokenizing long inputs) run off the async
//! runtime on tokio's blocking pool, with a failed task reported as a [`ServiceError`].
//!
//! A leaf below the library, retrieval and the services, which all use it.

use crate::fault::ServiceError;

/// Run `f` on the blocking pool; a task that panicked is `Internal`.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ServiceError::Internal(format!("a blocking task failed: {e}")))?
}
