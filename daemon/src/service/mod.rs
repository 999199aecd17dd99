//! The work behind the API: validation, tokenizing, submission to an engine, and collecting the
//! result. HTTP handlers stay a few lines each and call into here; so will ingestion and RAG.

pub mod embed;
pub mod generate;

/// Seconds since the Unix epoch, for OpenAI's `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh id with OpenAI's style of prefix (`chatcmpl-…`, `cmpl-…`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
