//! Stored responses (`POST /v1/responses` with `store` left on): one JSON file per response under
//! `state_dir/responses/`, bounded by `[limits]`.
//!
//! A record holds the response object, its own turn (the input messages and the answer) and its
//! parent's id (`previous_response_id`), never the history before it: a conversation of n turns
//! costs O(n) on disk, not O(n²). The history is rebuilt by walking the parent pointers, at most
//! `max_response_chain` records; a missing or expired link is the client's 400, naming the link.
//! Records written before parent pointers (with the whole `conversation`) are still read: the
//! walk stops at one.
//!
//! A message is stored as a `[role, content]` pair, or, when it carries tool parts (an
//! assistant's `function_call`s, a `function_call_output`'s call id), as an object with them, so
//! a follow-up with `previous_response_id` has the calls its tool results answer; both forms are
//! read.
//!
//! Quotas: a record older than `responses_ttl_seconds` is expired (not found, and deleted); after
//! each save, the oldest records (by modification time) are deleted until at most
//! `max_stored_responses` and `max_stored_response_bytes` remain. The directory itself is the
//! index (no second copy to keep consistent); the sweep costs one `stat` per stored record, on a
//! blocking thread. All functions here block.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fault::ServiceError;

/// One function call an assistant message made (`function_call` item).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCall {
    pub call_id: String,
    pub name: String,
    /// JSON text.
    pub arguments: String,
}

/// One message as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MessageForm", into = "MessageForm")]
pub struct Message {
    pub role: String,
    pub content: String,
    /// An assistant message's function calls.
    pub calls: Vec<StoredCall>,
    /// A `tool` message: the call it answers.
    pub call_id: Option<String>,
}

impl Message {
    /// A message without tool parts.
    pub fn text(role: &str, content: &str) -> Self {
        Message { role: role.to_owned(), content: content.to_owned(), calls: Vec::new(), call_id: None }
    }
}

/// How a [`Message`] is written: the plain pair when it has no tool parts.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum MessageForm {
    Pair(String, String),
    Full {
        role: String,
        content: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        calls: Vec<StoredCall>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
}

impl From<MessageForm> for Message {
    fn from(form: MessageForm) -> Self {
        match form {
            MessageForm::Pair(role, content) => Message { role, content, calls: Vec::new(), call_id: None },
            MessageForm::Full { role, content, calls, call_id } => Message { role, content, calls, call_id },
        }
    }
}

impl From<Message> for MessageForm {
    fn from(m: Message) -> Self {
        if m.calls.is_empty() && m.call_id.is_none() {
            MessageForm::Pair(m.role, m.content)
        } else {
            MessageForm::Full { role: m.role, content: m.content, calls: m.calls, call_id: m.call_id }
        }
    }
}

/// A run of messages as stored.
pub type Turn = Vec<Message>;

/// What is kept of one response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The response object, as `GET /v1/responses/{id}` returns it.
    pub response: Value,
    /// This response's own turn: its input messages, then the answer.
    #[serde(default)]
    pub turn: Turn,
    /// The `previous_response_id` it followed, if any.
    #[serde(default)]
    pub parent: Option<String>,
    /// The whole conversation, in records written before parent pointers: read, never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Turn>,
}

/// The quotas of the store (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub ttl: Duration,
    pub max_records: usize,
    pub max_bytes: u64,
    pub max_chain: usize,
}

impl Quota {
    /// The quota `[limits]` sets.
    pub fn from_limits(limits: &crate::config::LimitSettings) -> Self {
        Quota {
            ttl: Duration::from_secs(limits.responses_ttl_seconds),
            max_records: limits.max_stored_responses,
            max_bytes: limits.max_stored_response_bytes,
            max_chain: limits.max_response_chain,
        }
    }
}

/// The directory of the records.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("responses")
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found("response", id, format!("no response with id `{id}`"))
}

/// The file of response `id`; an id that cannot be ours is simply not found.
pub fn path(state_dir: &Path, id: &str) -> Result<PathBuf, ServiceError> {
    let ok = id.strip_prefix("resp_").is_some_and(|h| !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !ok {
        return Err(not_found(id));
    }
    Ok(dir(state_dir).join(format!("{id}.json")))
}

/// True when a file last written at `modified` is older than `ttl` now.
fn expired(modified: SystemTime, ttl: Duration) -> bool {
    SystemTime::now().duration_since(modified).is_ok_and(|age| age > ttl)
}

/// Response `id`, unless it is missing or expired (an expired one is deleted).
pub fn load(state_dir: &Path, id: &str, quota: &Quota) -> Result<Record, ServiceError> {
    let path = path(state_dir, id)?;
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(|_| not_found(id))?;
    if expired(modified, quota.ttl) {
        let _ = std::fs::remove_file(&path);
        return Err(ServiceError::not_found("response", id, format!("the response `{id}` has expired (limits.responses_ttl_seconds = {})", quota.ttl.as_secs())));
    }
    let bytes = std::fs::read(&path).map_err(|_| not_found(id))?;
    serde_json::from_slice(&bytes).map_err(|e| ServiceError::Internal(format!("stored response {id} is damaged: {e}")))
}

/// The conversation that ends with response `last`: every turn of its chain, oldest first. A
/// missing or expired link, or a chain longer than `max_chain`, is a 400 about
/// `previous_response_id`.
pub fn conversation(state_dir: &Path, last: &str, quota: &Quota) -> Result<Turn, ServiceError> {
    let mut turns: Vec<Turn> = Vec::new();
    let mut next = Some(last.to_owned());
    while let Some(id) = next {
        if turns.len() == quota.max_chain {
            return Err(ServiceError::invalid(
                "previous_response_id",
                format!("the conversation of `{last}` is longer than limits.max_response_chain = {} responses", quota.max_chain),
            ));
        }
        let record = load(state_dir, &id, quota).map_err(|e| match e {
            ServiceError::NotFound { message: m, .. } if id == last => ServiceError::invalid("previous_response_id", m),
            ServiceError::NotFound { message: m, .. } => ServiceError::invalid(
                "previous_response_id",
                format!("the conversation of `{last}` cannot be rebuilt: its earlier response `{id}` is gone ({m})"),
            ),
            e => e,
        })?;
        if let Some(whole) = record.conversation {
            turns.push(whole); // an old record: it holds everything before it too
            break;
        }
        turns.push(record.turn);
        next = record.parent;
    }
    Ok(turns.into_iter().rev().flatten().collect())
}

/// Store `record` as response `id` (atomically), then apply the quota.
pub fn save(state_dir: &Path, id: &str, record: &Record, quota: &Quota) -> Result<(), ServiceError> {
    let path = path(state_dir, id)?;
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir(state_dir))?;
        crate::durable::write_atomic(&path, &serde_json::to_vec(record).map_err(std::io::Error::other)?)
    };
    write().map_err(|e| ServiceError::Internal(format!("cannot store the response: {e}")))?;
    let removed = sweep(state_dir, quota);
    if removed > 0 {
        tracing::debug!(removed, "Stored responses over the quota or expired were deleted.");
    }
    Ok(())
}

/// Delete expired records, then the oldest until the count and byte quotas hold; how many went.
pub fn sweep(state_dir: &Path, quota: &Quota) -> usize {
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else { return 0 };
    let mut records: Vec<(SystemTime, String, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !(name.starts_with("resp_") && name.ends_with(".json")) {
                return None; // temp files of an atomic write in flight, strangers
            }
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, name, meta.len()))
        })
        .collect();
    records.sort(); // oldest first; the name breaks ties
    let mut count = records.len();
    let mut bytes: u64 = records.iter().map(|r| r.2).sum();
    let mut removed = 0;
    for (modified, name, size) in records {
        let over = count > quota.max_records || bytes > quota.max_bytes;
        if !over && !expired(modified, quota.ttl) {
            continue; // newer ones may still be expired only if clocks moved; keep scanning is cheap
        }
        if std::fs::remove_file(dir(state_dir).join(&name)).is_ok() {
            removed += 1;
        }
        count -= 1;
        bytes -= size;
    }
    removed
}

/// Delete response `id`.
pub fn delete(state_dir: &Path, id: &str) -> Result<(), ServiceError> {
    std::fs::remove_file(path(state_dir, id)?).map_err(|_| not_found(id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use serde_json::json;

    fn quota(max_records: usize, max_bytes: u64) -> Quota {
        Quota { ttl: Duration::from_secs(3600), max_records, max_bytes, max_chain: 10 }
    }

    fn record(text: &str, parent: Option<&str>) -> Record {
        Record {
            response: json!({"output_text": text}),
            turn: vec![Message::text("user", &format!("q {text}")), Message::text("assistant", text)],
            parent: parent.map(str::to_owned),
            conversation: None,
        }
    }

    /// Save a chain resp_0 <- resp_1 <- ... and return the ids.
    fn chain(dir: &Path, n: usize, q: &Quota) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for i in 0..n {
            let id = format!("resp_{i}");
            save(dir, &id, &record(&i.to_string(), ids.last().map(String::as_str)), q).unwrap();
            ids.push(id);
        }
        ids
    }

    #[test]
    fn a_chain_is_rebuilt_oldest_first_from_records_that_do_not_grow() {
        let dir = tempfile::tempdir().unwrap();
        let q = quota(100, 1 << 20);
        let ids = chain(dir.path(), 8, &q);
        let conv = conversation(dir.path(), &ids[7], &q).unwrap();
        assert_eq!(conv.len(), 16);
        assert_eq!(conv[0], Message::text("user", "q 0"));
        assert_eq!(conv[15], Message::text("assistant", "7"));
        let size = |id: &str| std::fs::metadata(path(dir.path(), id).unwrap()).unwrap().len();
        assert!(size(&ids[7]) <= size(&ids[1]) + 8, "{} vs {}", size(&ids[7]), size(&ids[1]));
    }

    #[test]
    fn a_missing_link_or_an_overlong_chain_is_a_400_that_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let q = quota(100, 1 << 20);
        let ids = chain(dir.path(), 12, &q);
        let err = conversation(dir.path(), &ids[11], &q).unwrap_err();
        assert!(err.to_string().contains("limits.max_response_chain = 10"), "{err}");
        assert!(conversation(dir.path(), &ids[9], &q).is_ok());
        delete(dir.path(), &ids[3]).unwrap();
        let err = conversation(dir.path(), &ids[9], &q).unwrap_err();
        assert!(matches!(err, ServiceError::Invalid { .. }) && err.to_string().contains("`resp_3` is gone"), "{err}");
        let err = conversation(dir.path(), "resp_nope", &q).unwrap_err();
        assert!(matches!(err, ServiceError::Invalid { .. }) && err.to_string().contains("resp_nope"), "{err}");
    }

    #[test]
    fn the_oldest_records_go_first_when_over_the_count_or_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let ids = chain(dir.path(), 5, &quota(3, 1 << 20));
        let left: Vec<bool> = ids.iter().map(|id| path(dir.path(), id).unwrap().exists()).collect();
        assert_eq!(left, [false, false, true, true, true]);
        let one = std::fs::metadata(path(dir.path(), &ids[4]).unwrap()).unwrap().len();
        let bytes = quota(100, 2 * one + one / 2);
        save(dir.path(), "resp_new", &record("4", None), &bytes).unwrap();
        let left: Vec<bool> = ["resp_2", "resp_3", "resp_4", "resp_new"].iter().map(|id| path(dir.path(), id).unwrap().exists()).collect();
        assert_eq!(left, [false, false, true, true]);
    }

    #[test]
    fn an_expired_record_is_not_found_and_old_records_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let q = quota(100, 1 << 20);
        save(dir.path(), "resp_a", &record("a", None), &q).unwrap();
        let short = Quota { ttl: Duration::ZERO, ..q };
        std::thread::sleep(Duration::from_millis(5));
        let err = load(dir.path(), "resp_a", &short).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert!(!path(dir.path(), "resp_a").unwrap().exists());
        // A record in the format before parent pointers.
        let legacy = json!({"response": {}, "conversation": [["user", "old q"], ["assistant", "old a"]]});
        std::fs::write(path(dir.path(), "resp_old").unwrap(), legacy.to_string()).unwrap();
        save(dir.path(), "resp_b", &record("b", Some("resp_old")), &q).unwrap();
        let conv = conversation(dir.path(), "resp_b", &q).unwrap();
        assert_eq!(conv.first(), Some(&Message::text("user", "old q")));
        assert_eq!(conv.len(), 4);
    }

    #[test]
    fn function_calls_and_their_outputs_survive_the_store_beside_plain_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let q = quota(100, 1 << 20);
        let call = StoredCall { call_id: "call_1".into(), name: "get_weather".into(), arguments: r#"{"city":"Oslo"}"#.into() };
        let asked = Record {
            response: json!({}),
            turn: vec![Message::text("user", "Weather in Oslo?"), Message { calls: vec![call.clone()], ..Message::text("assistant", "") }],
            parent: None,
            conversation: None,
        };
        save(dir.path(), "resp_a", &asked, &q).unwrap();
        let answered = Record {
            response: json!({}),
            turn: vec![Message { call_id: Some("call_1".into()), ..Message::text("tool", "12 C") }, Message::text("assistant", "It is 12 C.")],
            parent: Some("resp_a".into()),
            conversation: None,
        };
        save(dir.path(), "resp_b", &answered, &q).unwrap();
        let conv = conversation(dir.path(), "resp_b", &q).unwrap();
        assert_eq!(conv.len(), 4);
        assert_eq!(conv[1].calls, vec![call]);
        assert_eq!((conv[2].role.as_str(), conv[2].call_id.as_deref()), ("tool", Some("call_1")));
        // Plain messages are still written as the pairs older records hold.
        let written = std::fs::read_to_string(path(dir.path(), "resp_a").unwrap()).unwrap();
        assert!(written.contains(r#"["user","Weather in Oslo?"]"#) && written.contains(r#""calls":[{"call_id":"call_1""#), "{written}");
    }
}
