//! Transient is not permanent: which failures of an ingestion step are worth another try, and the
//! backoff between tries.
//!
//! Only the file itself can make a job fail for good: the parser said what is wrong with it, or it
//! crashed, ran out of time or memory on it ([`ingest::ParseFailure::is_file_problem`]), or the
//! embedding model refused its text as invalid. Everything else that can pass is retried with
//! exponential backoff ([`Backoff::INGEST`]: 0.5 s doubling to 30 s, ten tries, about two
//! minutes): a full admission queue (429, from hearth's engine or a remote upstream), a remote
//! upstream that is unreachable, unavailable or slow (502, 503, 504), an engine that is
//! restarting, the parse worker that could not be started (a fork failing under `TasksMax`, a
//! broken pipe), an index that is rebuilding, a disk that is full. A step that still fails after
//! the last try fails the document with the reason and the number of tries; re-attaching the file
//! starts it again.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use ingest::{Format, ParseFailure, ParsedDocument};
use store::StoreError;

use super::Ingestion;
use crate::fault::ServiceError;
use crate::provider::{Backend, EmbedInput};

/// How one attempt ended, when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another try later; the reason is for the log and, after the last try, the document.
    Transient(String),
    /// Trying again cannot help.
    Final(String),
}

/// Exponential backoff: `first`, doubling up to `max`, for at most `attempts` tries in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub attempts: u32,
}

impl Backoff {
    /// Ingestion's policy: 0.5, 1, 2, 4, 8, 16, 30, 30, 30 s between ten tries (about two minutes).
    pub const INGEST: Backoff = Backoff { first: Duration::from_millis(500), max: Duration::from_secs(30), attempts: 10 };

    /// The wait after failed try number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// Run `op` until it succeeds, fails for good, or has been tried `policy.attempts` times; the
/// error is the reason to record on the document.
pub async fn retrying<T, F, Fut>(policy: &Backoff, what: &str, mut op: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Ok(value) => return Ok(value),
            Err(Failure::Final(reason)) => return Err(reason),
            Err(Failure::Transient(reason)) if attempt >= policy.attempts => {
                return Err(format!("{reason} (a temporary failure that persisted through {attempt} tries; re-attach the file to try again)"));
            }
            Err(Failure::Transient(reason)) => {
                let wait = policy.delay(attempt);
                tracing::info!(%reason, attempt, wait_ms = wait.as_millis() as u64, "Ingestion step {what} failed for now; retrying.");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// An embedding call's error: a full queue, an upstream or engine that failed or is unavailable
/// for now, and a full disk pass ([`ServiceError::is_transient`]); a refused input and our own
/// faults do not.
pub fn embedding(e: &ServiceError) -> Failure {
    let reason = format!("embedding failed: {e}");
    if e.is_transient() {
        Failure::Transient(reason)
    } else {
        Failure::Final(reason)
    }
}

/// A parse's error: the file's own problems are final; a worker that could not run is not.
pub fn parse(e: &ParseFailure) -> Failure {
    if e.is_file_problem() {
        Failure::Final(e.to_string())
    } else {
        Failure::Transient(e.to_string())
    }
}

/// A store write's error: a full disk or a rebuilding index passes.
pub fn store(e: &StoreError) -> Failure {
    let reason = format!("the store failed: {e}");
    // `is_out_of_space` also covers the store's own free-space reserve (`StoreError::NoSpace`).
    if matches!(e, StoreError::IndexNotReady { .. }) || e.is_out_of_space() || disk_full(e) {
        Failure::Transient(reason)
    } else {
        Failure::Final(reason)
    }
}

/// Linux's "disk quota exceeded".
const EDQUOT: i32 = 122;

/// True when an I/O error in `e`'s source chain says the disk (or the quota) is full.
fn disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(EDQUOT) {
                return true;
            }
        }
        next = err.source();
    }
    false
}

/// Parse the file in the sandbox, retrying a worker that could not run: the first try is `first`
/// (the caller's parse of the file it already opened), a later one parses `path` afresh (a failed
/// try may have moved a shared file offset).
pub(super) async fn parse_file(
    ingestion: &Ingestion,
    first: impl Future<Output = Result<ParsedDocument, ParseFailure>>,
    path: &Path,
    format: Format,
) -> Result<ParsedDocument, String> {
    let mut first = Some(Box::pin(first));
    retrying(&Backoff::INGEST, "parse", || {
        let attempt = first.take();
        async move {
            let parsed = match attempt {
                Some(first) => first.await,
                None => ingestion.sandbox().parse(path, format).await,
            };
            parsed.map_err(|e| {
                let failure = parse(&e);
                if matches!(failure, Failure::Final(_)) {
                    ingestion.metrics.parse_failed(Some(&e));
                }
                failure
            })
        }
    })
    .await
}

/// Embed `texts` with `embedder`, retrying a full queue or a failing upstream. A local model's
/// texts are tokenized once, on a blocking thread, before the first try.
pub(super) async fn embed(embedder: &Backend, texts: Vec<String>) -> Result<Vec<Vec<f32>>, String> {
    let input = crate::library::embed_limits::tokenized(embedder, EmbedInput::Texts(texts), usize::MAX)
        .await
        .map_err(|e| format!("embedding failed: {e}"))?;
    retrying(&Backoff::INGEST, "embed", || {
        let input = input.clone();
        async move { embedder.embed(input, None).await.map(|e| e.vectors).map_err(|e| embedding(&e)) }
    })
    .await
}

/// Run a store write on a blocking thread, retrying a full disk or a rebuilding index; the last
/// error as it was, so the caller tells a deleted document from a failure.
pub(super) async fn store_write<F>(write: F) -> Result<(), StoreError>
where
    F: Fn() -> Result<(), StoreError> + Clone + Send + 'static,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let once = write.clone();
        let result = tokio::task::spawn_blocking(once).await.unwrap_or_else(|e| Err(StoreError::Vector(format!("a blocking task failed: {e}"))));
        match result {
            Err(e) if attempt < Backoff::INGEST.attempts && matches!(store(&e), Failure::Transient(_)) => {
                let wait = Backoff::INGEST.delay(attempt);
                tracing::info!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "Storing chunks failed for now; retrying.");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use super::*;

    const FAST: Backoff = Backoff { first: Duration::from_millis(5), max: Duration::from_millis(20), attempts: 5 };

    #[test]
    fn the_delay_doubles_up_to_its_cap() {
        let d: Vec<u64> = (1..=9).map(|a| Backoff::INGEST.delay(a).as_millis() as u64).collect();
        assert_eq!(d, [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        assert_eq!(Backoff::INGEST.delay(100), Duration::from_secs(30), "no overflow");
    }

    #[test]
    fn a_full_queue_and_a_failing_upstream_pass_but_the_files_own_problems_do_not() {
        let transient = |f: Failure| matches!(f, Failure::Transient(_));
        assert!(transient(embedding(&ServiceError::Busy("the queue is full".into()))));
        assert!(transient(embedding(&ServiceError::Unavailable("the engine stopped".into()))));
        assert!(!transient(embedding(&ServiceError::invalid("input", "input[0] has no tokens"))));
        assert!(!transient(embedding(&ServiceError::Internal("inference failed".into()))));
        assert!(transient(parse(&ParseFailure::Io("could not start the parser /proc/self/exe: Resource temporarily unavailable".into()))));
        assert!(transient(parse(&ParseFailure::BadOutput("EOF".into()))));
        assert!(!transient(parse(&ParseFailure::TimedOut { kind: ingest::sandbox::TimeLimit::Wall, limit: Duration::from_secs(1) })));
        assert!(!transient(parse(&ParseFailure::OutOfMemory { limit_bytes: 1 << 30 })));
        assert!(!transient(parse(&ParseFailure::Crashed { signal: Some(11), exit_code: None, stderr_tail: String::new() })));
        let full = StoreError::Io { context: "writing the index".into(), source: std::io::Error::from_raw_os_error(28) };
        assert!(transient(store(&full)), "ENOSPC");
        let other = StoreError::Io { context: "writing the index".into(), source: std::io::Error::from_raw_os_error(13) };
        assert!(!transient(store(&other)), "EACCES");
        assert!(transient(store(&StoreError::IndexNotReady { collection: "vs".into(), index: "vector" })));
        let reserve = store::NoSpace { path: "/var/lib/hearth".into(), free: 1, needed: 2, reserve: 3 };
        assert!(transient(store(&StoreError::NoSpace(reserve))), "the free-space reserve passes too");
        assert!(!transient(store(&StoreError::Invalid("dimension".into()))));
    }

    #[tokio::test]
    async fn transient_failures_are_retried_with_backoff_until_success() {
        let calls = &AtomicU32::new(0);
        let started = Instant::now();
        let result = retrying(&FAST, "test", || async move {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0..=2 => Err(Failure::Transient("429".into())),
                _ => Ok("done"),
            }
        })
        .await;
        assert_eq!(result, Ok("done"));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(started.elapsed() >= Duration::from_millis(5 + 10 + 20), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_final_failure_stops_at_once_and_a_persistent_one_after_the_last_try() {
        let calls = &AtomicU32::new(0);
        let result: Result<(), String> = retrying(&FAST, "test", || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure::Final("the PDF is encrypted".into()))
        })
        .await;
        assert_eq!((result, calls.load(Ordering::SeqCst)), (Err("the PDF is encrypted".into()), 1));
        let calls = &AtomicU32::new(0);
        let result: Result<(), String> = retrying(&FAST, "test", || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure::Transient("the queue is full".into()))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        let reason = result.err().unwrap_or_default();
        assert!(reason.starts_with("the queue is full") && reason.contains("5 tries") && reason.contains("re-attach"), "{reason}");
    }
}
