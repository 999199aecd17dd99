//! The durable queue of ingestion jobs: one JSON file per job in `state_dir/ingest/queue/`.
//!
//! Design: a job is written (temp file, fsync, rename) before the request that asked for it is
//! answered, and removed only after its outcome is stored, so a restart mid-ingestion finds every
//! unfinished job and runs it again. File names start with a zero-padded sequence number, so the
//! directory's sorted listing is the queue's order. Workers claim a job in memory; a claimed job
//! is invisible to the others until it is finished. The queue is bounded by `max_pending`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// One file to ingest into one vector store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The vector store (store collection) id.
    pub vector_store_id: String,
    /// The file id (also the store document id).
    pub file_id: String,
    /// Chunking for this file.
    pub max_chunk_size_tokens: usize,
    /// Chunking for this file.
    pub chunk_overlap_tokens: usize,
}

/// A job handed to a worker; give it back with [`JobQueue::finish`].
#[derive(Debug)]
pub struct Claimed {
    /// The job.
    pub job: Job,
    name: String,
}

/// Why a job was not queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the ingestion queue is full ({0} files waiting); retry later")]
    Full(usize),
    #[error("cannot write the ingestion queue: {0}")]
    Io(#[from] std::io::Error),
}

/// The queue directory and the workers' claims.
#[derive(Debug)]
pub struct JobQueue {
    dir: PathBuf,
    max_pending: usize,
    next_seq: AtomicU64,
    claimed: Mutex<HashSet<String>>,
    wake: Notify,
}

impl JobQueue {
    /// Opens (creates) the queue directory; jobs left by an earlier run stay queued.
    pub fn open(dir: PathBuf, max_pending: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let queue = JobQueue { dir, max_pending, next_seq: AtomicU64::new(0), claimed: Mutex::new(HashSet::new()), wake: Notify::new() };
        let last = queue.names().last().and_then(|n| n.split('-').next()?.parse::<u64>().ok()).unwrap_or(0);
        queue.next_seq.store(last + 1, Ordering::SeqCst);
        Ok(queue)
    }

    /// Queued job file names, in order (claimed ones included).
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
    }

    /// Jobs waiting or running.
    pub fn len(&self) -> usize {
        self.names().len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when a job for this file in this store is queued or running.
    pub fn contains(&self, vector_store_id: &str, file_id: &str) -> bool {
        self.job_state(vector_store_id, file_id).is_some()
    }

    /// Whether a job for this file in this store is queued: `Some(true)` when a worker has it.
    pub fn job_state(&self, vector_store_id: &str, file_id: &str) -> Option<bool> {
        let suffix = format!("-{vector_store_id}-{file_id}.json");
        let name = self.names().into_iter().find(|n| n.ends_with(&suffix))?;
        Some(self.claimed.lock().unwrap_or_else(|p| p.into_inner()).contains(&name))
    }

    /// Adds a job durably (blocking: fsync).
    pub fn push(&self, job: &Job) -> Result<(), QueueError> {
        let pending = self.len();
        if pending >= self.max_pending {
            return Err(QueueError::Full(pending));
        }
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let name = format!("{seq:020}-{}-{}.json", job.vector_store_id, job.file_id);
        crate::durable::write_atomic(&self.dir.join(&name), &serde_json::to_vec(job).map_err(std::io::Error::other)?)?;
        self.wake.notify_one();
        Ok(())
    }

    /// The oldest unclaimed job, waiting for one when there is none.
    pub async fn next(&self) -> Claimed {
        loop {
            if let Some(claimed) = self.try_claim() {
                return claimed;
            }
            // A missed wake-up costs at most this long.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.wake.notified()).await;
        }
    }

    fn try_claim(&self) -> Option<Claimed> {
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        for name in self.names() {
            if claimed.contains(&name) {
                continue;
            }
            match std::fs::read(self.dir.join(&name)).map(|b| serde_json::from_slice::<Job>(&b)) {
                Ok(Ok(job)) => {
                    claimed.insert(name.clone());
                    return Some(Claimed { job, name });
                }
                Ok(Err(e)) => {
                    tracing::error!(job = %name, error = %e, "Dropping an unreadable ingestion job.");
                    let _ = std::fs::remove_file(self.dir.join(&name));
                }
                Err(_) => {} // removed meanwhile
            }
        }
        None
    }

    /// The job's outcome is stored: forget it.
    pub fn finish(&self, claimed: Claimed) {
        if let Err(e) = std::fs::remove_file(self.dir.join(&claimed.name)) {
            tracing::warn!(job = %claimed.name, error = %e, "Could not remove a finished ingestion job.");
        }
        self.claimed.lock().unwrap_or_else(|p| p.into_inner()).remove(&claimed.name);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    fn job(file: &str) -> Job {
        Job { vector_store_id: "vs_1".into(), file_id: file.into(), max_chunk_size_tokens: 800, chunk_overlap_tokens: 400 }
    }

    #[tokio::test]
    async fn jobs_survive_a_reopen_in_order_and_the_queue_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let q = JobQueue::open(dir.path().to_path_buf(), 3).unwrap();
        for f in ["file-a", "file-b", "file-c"] {
            q.push(&job(f)).unwrap();
        }
        assert!(matches!(q.push(&job("file-d")), Err(QueueError::Full(3))));
        let first = q.next().await;
        assert_eq!(first.job.file_id, "file-a");
        let second = q.next().await;
        assert_eq!(second.job.file_id, "file-b", "a claimed job is not handed out twice");
        q.finish(first);
        drop(q); // a "crash": file-b was claimed but not finished

        let q = JobQueue::open(dir.path().to_path_buf(), 3).unwrap();
        assert_eq!(q.len(), 2);
        assert!(q.contains("vs_1", "file-b"));
        assert_eq!(q.next().await.job.file_id, "file-b");
        assert_eq!(q.next().await.job.file_id, "file-c");
        q.push(&job("file-e")).unwrap();
        assert_eq!(q.next().await.job.file_id, "file-e", "sequence numbers continue after a reopen");
    }
}
