//! Ids and timestamps of the objects hearth returns: OpenAI's prefixed ids (`chatcmpl-…`,
//! `file-…`) and `created` seconds. A leaf module: anything may use it, it uses nothing of the
//! daemon.

/// Seconds since the Unix epoch, for OpenAI's `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh id with OpenAI's style of prefix (`chatcmpl-…`, `cmpl-…`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
