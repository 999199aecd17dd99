//! The work behind the API: validation, tokenizing, submission to an engine, and collecting the
//! result. HTTP handlers stay a few lines each and call into here; so will ingestion and RAG.

pub mod embed;
pub mod embed_limits;
pub mod file_batches;
pub mod files;
pub mod generate;
pub mod listing;
pub mod response_store;
pub mod responses;
pub mod structured;
pub mod vector_stores;

/// Seconds since the Unix epoch, for OpenAI's `created` fields.
pub mod tool_parser;
pub mod tools;
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh id with OpenAI's style of prefix (`chatcmpl-…`, `cmpl-…`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Run blocking work (the store fsyncs, file I/O) off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, crate::error::ApiError> + Send + 'static) -> Result<T, crate::error::ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| crate::error::ApiError::Internal(format!("a blocking task failed: {e}")))?
}
