//! Keeping the derived indexes in step with sled: applying acknowledged writes, checkpoints,
//! and recovery at start-up.
//!
//! Invariants:
//! - `Indexes::applied_seq` is the last log sequence the vector index (in memory) reflects and
//!   `keyword_seq` the last the keyword index has committed (equal unless a commit failed); the
//!   keyword index commits with every write, the vector index is saved at checkpoints;
//! - replaying a log entry is idempotent (an add skips keys already present or no longer in
//!   sled, a delete ignores absent keys), so recovery may start from any sequence at or before
//!   the oldest of the two saved ones;
//! - while a collection is not `Ready`, writes go to sled and its log only; the recovery thread
//!   replays the log to its end holding the writer lock, then marks the collection ready, so no
//!   acknowledged write is missed;
//! - the log is trimmed only up to a sequence both indexes have durably saved, and the trim point
//!   (`log_floor`) is recorded first: an index older than it is rebuilt, never half caught up;
//! - a failed keyword commit (a full disk, most often) does not take the collection out of
//!   service: the writer and its uncommitted changes are dropped, searches use the last commit
//!   (and the vector index, which lives in memory, has every write), `keyword_seq` stays where
//!   the index is, and the index catches up from the log every `retry_interval`, at the next write
//!   or on the upkeep thread, until a commit succeeds. Only an index that reports damage
//!   ([`is_index_damage`]) is rebuilt instead (tantivy reports a full disk in several shapes, some
//!   without the cause, so anything else is retried). A failed vector index save is likewise
//!   tried again every `retry_interval`, and a failed recovery too;
//! - recovery runs on at most `recovery_threads` threads, whatever the number of collections.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::keyword::{KeywordIndex, KeywordOutcome};
use crate::model::decode_chunk;
use crate::store::{Coll, Inner, LogOp, Store};
use crate::vector::{LoadOutcome, VectorIndex};

/// State of a collection's derived indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IndexHealth {
    /// Both indexes reflect every acknowledged write.
    Ready,
    /// Loaded from disk, replaying writes made after they were saved.
    CatchingUp,
    /// Missing or damaged; being rebuilt from sled.
    Rebuilding {
        /// What was wrong.
        reason: String,
    },
    /// Recovery failed; searches that need the indexes fail until a retry (every
    /// `retry_interval`) succeeds.
    Failed {
        /// Why.
        reason: String,
    },
}

/// The derived indexes of a collection.
pub(crate) struct Indexes {
    /// Current state.
    pub health: IndexHealth,
    /// The HNSW index, when ready.
    pub vector: Option<Arc<VectorIndex>>,
    /// The BM25 index, when ready.
    pub keyword: Option<Arc<KeywordIndex>>,
    /// Last log sequence both reflect.
    pub applied_seq: u64,
    /// Sequence of the last saved vector index file.
    pub vector_saved_seq: u64,
    /// Chunks changed since the vector index was last saved.
    pub unsaved: u64,
    /// Why the indexes were last rebuilt from sled since the store was opened, if they were.
    pub rebuilt_because: Option<String>,
    /// Last log sequence the keyword index has committed (`applied_seq` unless it lags).
    pub keyword_seq: u64,
    /// Set while the keyword index lags behind after a failed commit.
    pub keyword_lag: Option<Retry>,
    /// Set while the vector index could not be saved.
    pub save_failure: Option<Retry>,
    /// When a failed recovery is tried again.
    pub recover_at: Option<Instant>,
}

/// A failure that is tried again later.
#[derive(Debug, Clone)]
pub(crate) struct Retry {
    /// The last error.
    pub reason: String,
    /// Failures in a row.
    pub failures: u32,
    /// Not tried again before this.
    pub at: Instant,
}

impl Retry {
    /// The next retry after `previous` failed with `reason`.
    fn after(previous: Option<&Retry>, reason: String, interval: Duration) -> Retry {
        Retry { reason, failures: previous.map_or(0, |r| r.failures) + 1, at: Instant::now() + interval }
    }
    fn due(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// True for failures that say the index itself is damaged: a retry cannot mend those, a
/// rebuild from sled does.
fn is_index_damage(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Corrupt { .. } | StoreError::Keyword(tantivy::TantivyError::DataCorruption(_) | tantivy::TantivyError::IncompatibleIndex(_))
    )
}

impl Indexes {
    pub(crate) fn starting() -> Self {
        Indexes {
            health: IndexHealth::CatchingUp,
            vector: None,
            keyword: None,
            applied_seq: 0,
            vector_saved_seq: 0,
            unsaved: 0,
            rebuilt_because: None,
            keyword_seq: 0,
            keyword_lag: None,
            save_failure: None,
            recover_at: None,
        }
    }
    pub(crate) fn ready(vector: Arc<VectorIndex>, keyword: Arc<KeywordIndex>, seq: u64) -> Self {
        Indexes { health: IndexHealth::Ready, vector: Some(vector), keyword: Some(keyword), applied_seq: seq, keyword_seq: seq, unsaved: 1, ..Indexes::starting() }
    }
}

/// Recovery work waiting for a thread, and the threads doing it.
#[derive(Default)]
pub(crate) struct RecoveryQueue {
    /// Collections waiting, with what to start from.
    tasks: VecDeque<(Arc<Coll>, Plan)>,
    /// Threads working through `tasks`.
    running: usize,
    /// Their handles, joined when the store closes.
    handles: Vec<JoinHandle<()>>,
}

/// Health of one collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionStatus {
    /// Collection id.
    pub id: String,
    /// State of its indexes.
    pub health: IndexHealth,
    /// Vectors in its HNSW index (0 while not ready).
    pub indexed_chunks: usize,
    /// Why its indexes were rebuilt from sled since the store was opened, if they were.
    pub rebuilt_because: Option<String>,
    /// What is being retried while the collection keeps serving: a keyword index lagging after
    /// a failed commit (searches use its last commit), a vector index that could not be saved.
    pub degraded: Option<String>,
}

/// Health of the store, for readiness probes and `sd_notify STATUS`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreStatus {
    /// True when every collection is ready.
    pub ready: bool,
    /// Per collection.
    pub collections: Vec<CollectionStatus>,
}

fn set_health(coll: &Coll, health: IndexHealth) {
    coll.indexes_mut().health = health;
}

/// Both indexes of a collection, when they are ready to take live updates.
fn ready_indexes(coll: &Coll) -> Option<(Arc<VectorIndex>, Arc<KeywordIndex>)> {
    let idx = coll.indexes();
    match (&idx.health, &idx.vector, &idx.keyword) {
        (IndexHealth::Ready, Some(v), Some(k)) => Some((Arc::clone(v), Arc::clone(k))),
        _ => None,
    }
}

/// Applies an acknowledged add to ready indexes (the caller holds the writer lock).
pub(crate) fn apply_add(inner: &Arc<Inner>, coll: &Arc<Coll>, seq: u64, items: &[(u64, &[f32], &str)]) {
    let Some((vector, keyword)) = ready_indexes(coll) else { return };
    let vecs: Vec<(u64, &[f32])> = items.iter().map(|(k, v, _)| (*k, *v)).collect();
    if let Err(e) = vector.add_many(&vecs, 1) {
        return rebuild_after(inner, coll, &e);
    }
    let texts: Vec<(u64, &str)> = items.iter().map(|(k, _, t)| (*k, *t)).collect();
    keyword_apply(inner, coll, &keyword, seq, |k| k.upsert(&texts));
    applied(inner, coll, seq, items.len() as u64);
}

/// Applies an acknowledged delete to ready indexes (the caller holds the writer lock).
pub(crate) fn apply_delete(inner: &Arc<Inner>, coll: &Arc<Coll>, seq: u64, keys: &[u64]) {
    let Some((vector, keyword)) = ready_indexes(coll) else { return };
    if let Err(e) = keys.iter().try_for_each(|k| vector.remove(*k)) {
        return rebuild_after(inner, coll, &e);
    }
    keyword_apply(inner, coll, &keyword, seq, |k| k.delete(keys));
    applied(inner, coll, seq, keys.len() as u64);
}

/// Applies a change to the keyword index and commits it as `seq`. While the index lags (an
/// earlier commit failed), the change stays in the log only, and the index catches up from the
/// log once its retry is due.
fn keyword_apply(inner: &Arc<Inner>, coll: &Arc<Coll>, keyword: &KeywordIndex, seq: u64, change: impl FnOnce(&KeywordIndex) -> Result<()>) {
    let lag_due = coll.indexes().keyword_lag.as_ref().map(Retry::due);
    let result = match lag_due {
        None => change(keyword).and_then(|()| keyword.commit(seq)).map(|()| seq),
        Some(false) => return,
        Some(true) => catch_up_keyword(coll, keyword),
    };
    settle_keyword(inner, coll, keyword, result);
}

/// Replays the log into the lagging keyword index and commits; returns the sequence reached.
fn catch_up_keyword(coll: &Coll, keyword: &KeywordIndex) -> Result<u64> {
    let from = coll.indexes().keyword_seq;
    let last = replay(coll, None, keyword, from)?;
    keyword.commit(last)?;
    Ok(last)
}

/// Records the outcome of a keyword update: where the index is, or why it lags.
fn settle_keyword(inner: &Arc<Inner>, coll: &Arc<Coll>, keyword: &KeywordIndex, result: Result<u64>) {
    let id = &coll.meta.id;
    match result {
        Ok(seq) => {
            let mut idx = coll.indexes_mut();
            idx.keyword_seq = seq;
            if let Some(lag) = idx.keyword_lag.take() {
                tracing::info!(collection = %id, seq, failures = lag.failures, "Keyword index caught up.");
            }
        }
        Err(e) => {
            keyword.discard();
            let retry = inner.config.retry_interval;
            let failures = {
                let mut idx = coll.indexes_mut();
                let lag = Retry::after(idx.keyword_lag.as_ref(), e.to_string(), retry);
                let failures = lag.failures;
                idx.keyword_lag = Some(lag);
                failures
            };
            if failures == 1 {
                tracing::warn!(collection = %id, error = %e, retry_s = retry.as_secs_f32(), "Keyword index update failed; searches use its last commit while it catches up from the log.");
            } else {
                tracing::debug!(collection = %id, error = %e, failures, "Keyword index still lags.");
            }
            if is_index_damage(&e) {
                rebuild_after(inner, coll, &e);
            }
        }
    }
}

/// Records an applied change; saves the vector index when enough changes are unsaved.
fn applied(inner: &Arc<Inner>, coll: &Arc<Coll>, seq: u64, changed: u64) {
    let due = {
        let mut idx = coll.indexes_mut();
        idx.applied_seq = seq;
        idx.unsaved += changed.max(1);
        idx.unsaved >= inner.config.checkpoint_every && idx.save_failure.as_ref().is_none_or(Retry::due)
    };
    if due {
        if let Err(e) = checkpoint_coll(inner, coll) {
            tracing::warn!(collection = %coll.meta.id, error = %e, "Vector index checkpoint failed.");
        }
    }
}

/// An index update failed in a way a retry will not mend: rebuild the collection from sled.
fn rebuild_after(inner: &Arc<Inner>, coll: &Arc<Coll>, e: &StoreError) {
    tracing::error!(collection = %coll.meta.id, error = %e, "Index update failed; rebuilding from sled.");
    let reason = format!("index update failed: {e}");
    *coll.indexes_mut() = Indexes { health: IndexHealth::Rebuilding { reason }, ..Indexes::starting() };
    spawn(inner, coll.clone(), Plan::Rebuild);
}

/// Saves the vector index of a ready collection and trims its log. Caller holds the writer lock
/// or is the writer. A failed save is tried again after `retry_interval`.
pub(crate) fn checkpoint_coll(inner: &Inner, coll: &Coll) -> Result<()> {
    let (vector, keyword, seq, keyword_seq) = {
        let idx = coll.indexes();
        match (&idx.health, &idx.vector, &idx.keyword) {
            (IndexHealth::Ready, Some(v), Some(k)) if idx.unsaved > 0 => (v.clone(), k.clone(), idx.applied_seq, idx.keyword_seq),
            _ => return Ok(()),
        }
    };
    if let Err(e) = vector.save(&coll.vector_path(), seq) {
        let mut idx = coll.indexes_mut();
        idx.save_failure = Some(Retry::after(idx.save_failure.as_ref(), e.to_string(), inner.config.retry_interval));
        return Err(e);
    }
    {
        let mut idx = coll.indexes_mut();
        idx.vector_saved_seq = seq;
        idx.unsaved = 0;
        if let Some(failure) = idx.save_failure.take() {
            tracing::info!(collection = %coll.meta.id, seq, failures = failure.failures, "Vector index saved after failed attempts.");
        }
    }
    // Both indexes now durably reflect `floor`: record it, then trim.
    let floor = seq.min(keyword_seq);
    if floor > inner.floor(&coll.meta.id)? {
        inner.log_floor.insert(coll.meta.id.as_bytes(), &floor.to_be_bytes())?;
        inner.db.flush()?;
        for key in coll.log.range(..=floor.to_be_bytes()).keys() {
            coll.log.remove(key?)?;
        }
    }
    keyword.garbage_collect();
    Ok(())
}

/// Retries what is due in one collection: a lagging keyword index, a failed save, a failed
/// recovery. Run by the upkeep thread.
pub(crate) fn retry_due(inner: &Arc<Inner>, coll: &Arc<Coll>) {
    let (lag_due, save_due, recover_due) = {
        let idx = coll.indexes();
        (
            idx.keyword_lag.as_ref().is_some_and(Retry::due),
            idx.save_failure.as_ref().is_some_and(Retry::due),
            matches!(idx.health, IndexHealth::Failed { .. }) && idx.recover_at.is_some_and(|t| Instant::now() >= t),
        )
    };
    if lag_due || save_due {
        let _w = inner.lock_writer();
        if lag_due {
            if let Some((_, keyword)) = ready_indexes(coll) {
                let result = catch_up_keyword(coll, &keyword);
                settle_keyword(inner, coll, &keyword, result);
            }
        }
        if save_due {
            if let Err(e) = checkpoint_coll(inner, coll) {
                tracing::debug!(collection = %coll.meta.id, error = %e, "Vector index save failed again.");
            }
        }
    }
    if recover_due {
        coll.indexes_mut().recover_at = None;
        tracing::info!(collection = %coll.meta.id, "Retrying the recovery of the indexes.");
        spawn(inner, coll.clone(), Plan::Load);
    }
}

/// What recovery starts from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Plan {
    /// Load what is on disk; catch up or rebuild each index as needed.
    Load,
    /// Rebuild both from sled.
    Rebuild,
}

/// Starts recovery of a collection opened at start-up.
pub(crate) fn start(inner: &Arc<Inner>, coll: Arc<Coll>) -> Result<()> {
    spawn(inner, coll, Plan::Load);
    Ok(())
}

/// Queues recovery of `coll`; a recovery thread takes it when one is free.
fn spawn(inner: &Arc<Inner>, coll: Arc<Coll>, plan: Plan) {
    let mut queue = inner.recovery.lock().unwrap_or_else(|p| p.into_inner());
    queue.tasks.push_back((coll, plan));
    start_workers(inner, &mut queue);
}

/// Starts recovery threads while work waits and fewer than `recovery_threads` run.
fn start_workers(inner: &Arc<Inner>, queue: &mut RecoveryQueue) {
    queue.handles.retain(|h| !h.is_finished());
    while queue.running < inner.config.recovery_threads.max(1) && queue.running < queue.tasks.len() {
        let worker = inner.clone();
        match std::thread::Builder::new().name("store-recovery".into()).spawn(move || work(&worker)) {
            Ok(handle) => {
                queue.running += 1;
                queue.handles.push(handle);
            }
            Err(e) => {
                // The work stays queued; the upkeep thread starts a thread for it later.
                tracing::error!(error = %e, "Could not start an index recovery thread.");
                return;
            }
        }
    }
}

/// Starts a recovery thread for queued work that has none (a spawn failed earlier).
pub(crate) fn restart_stalled(inner: &Arc<Inner>) {
    let mut queue = inner.recovery.lock().unwrap_or_else(|p| p.into_inner());
    if !queue.tasks.is_empty() && !inner.closing.load(Ordering::Relaxed) {
        start_workers(inner, &mut queue);
    }
}

/// A recovery thread: takes queued collections until none is left.
fn work(inner: &Arc<Inner>) {
    loop {
        let task = {
            let mut queue = inner.recovery.lock().unwrap_or_else(|p| p.into_inner());
            match queue.tasks.pop_front() {
                Some(task) if !inner.closing.load(Ordering::Relaxed) => task,
                _ => {
                    queue.running -= 1;
                    return;
                }
            }
        };
        let (coll, plan) = task;
        let mut result = recover(inner, &coll, plan);
        if let (Err(e), Plan::Load) = (&result, plan) {
            // What was loaded from disk could not be caught up: start over from sled alone.
            tracing::warn!(collection = %coll.meta.id, error = %e, "Catching up failed; rebuilding.");
            set_health(&coll, IndexHealth::Rebuilding { reason: format!("catching up failed: {e}") });
            result = recover(inner, &coll, Plan::Rebuild);
        }
        if let Err(e) = result {
            let retry = inner.config.retry_interval;
            tracing::error!(collection = %coll.meta.id, error = %e, retry_s = retry.as_secs_f32(), "Index recovery failed; it is tried again later.");
            let mut idx = coll.indexes_mut();
            idx.health = IndexHealth::Failed { reason: e.to_string() };
            idx.recover_at = Some(Instant::now() + retry);
        }
    }
}

fn log_after(coll: &Coll, after: u64) -> Result<Vec<(u64, LogOp)>> {
    let start = after.saturating_add(1).to_be_bytes();
    let mut out = Vec::new();
    for item in coll.log.range(start..) {
        let (k, v) = item?;
        let seq = k.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt { tree: "log".into(), detail: "bad key".into() })?;
        out.push((seq, serde_json::from_slice(&v)?));
    }
    Ok(out)
}

/// Replays log entries after `after` into the keyword index and, when given, the vector
/// index; returns the last sequence replayed.
fn replay(coll: &Coll, vector: Option<&VectorIndex>, keyword: &KeywordIndex, after: u64) -> Result<u64> {
    let mut last = after;
    for (seq, op) in log_after(coll, after)? {
        match op {
            LogOp::Add(keys) => {
                for key in keys {
                    if let Some(chunk) = coll.chunk(key)? {
                        if let Some(vector) = vector {
                            vector.add_many(&[(key, chunk.embedding.as_slice())], 1)?;
                        }
                        keyword.upsert(&[(key, chunk.meta.text.as_str())])?;
                    }
                }
            }
            LogOp::Delete(keys) => {
                if let Some(vector) = vector {
                    keys.iter().try_for_each(|k| vector.remove(*k))?;
                }
                keyword.delete(&keys)?;
            }
        }
        last = seq;
    }
    Ok(last)
}

fn recover(inner: &Arc<Inner>, coll: &Arc<Coll>, plan: Plan) -> Result<()> {
    let id = &coll.meta.id;
    let threads = inner.config.search_threads;
    let floor = inner.floor(id)?;
    let (mut vector, mut vseq, mut reasons) = (None, 0, Vec::new());
    let (mut keyword, mut kseq) = (None, 0);
    if let Plan::Load = plan {
        match VectorIndex::load(&coll.vector_path(), coll.meta.dimension, &coll.meta.index, threads)? {
            LoadOutcome::Loaded(v, s) if s >= floor => (vector, vseq) = (Some(v), s),
            LoadOutcome::Loaded(_, s) => reasons.push(format!("vector index at {s} is older than the log floor {floor}")),
            LoadOutcome::Missing => reasons.push("vector index missing".to_string()),
            LoadOutcome::Damaged(why) => reasons.push(why),
        }
        match KeywordIndex::open(&coll.keyword_dir(), &inner.writers)? {
            KeywordOutcome::Loaded(k, s) if s >= floor => (keyword, kseq) = (Some(*k), s),
            KeywordOutcome::Loaded(_, s) => reasons.push(format!("keyword index at {s} is older than the log floor {floor}")),
            KeywordOutcome::Missing => reasons.push("keyword index missing".to_string()),
            KeywordOutcome::Damaged(why) => reasons.push(why),
        }
    } else {
        let current = coll.indexes().health.clone();
        reasons.push(match current {
            IndexHealth::Rebuilding { reason } => reason,
            _ => "rebuild requested".to_string(),
        });
    }
    let needs_scan = vector.is_none() || keyword.is_none();
    let rebuilt_because = needs_scan.then(|| reasons.join("; "));
    if let Some(reason) = &rebuilt_because {
        tracing::warn!(collection = %id, %reason, "Rebuilding derived indexes from sled.");
        set_health(coll, IndexHealth::Rebuilding { reason: reason.clone() });
    }
    // Anything at or below `start` is reflected in both indexes.
    let mut start = vseq.min(kseq);
    if needs_scan {
        // Every log entry after `mark` is replayed below, so a chunk written during the scan is
        // either seen by it or replayed (idempotently).
        let mark = inner.db.generate_id()?;
        let fresh_vector = vector.is_none();
        let fresh_keyword = keyword.is_none();
        let v = match vector.take() {
            Some(v) => v,
            None => VectorIndex::new(coll.meta.dimension, &coll.meta.index, threads)?,
        };
        let k = match keyword.take() {
            Some(k) => k,
            None => KeywordIndex::create(&coll.keyword_dir(), &inner.writers)?,
        };
        if !fresh_vector || !fresh_keyword {
            // The loaded one first catches up to now, so the scan need only fill the fresh one.
            let loaded_seq = if fresh_vector { kseq } else { vseq };
            replay(coll, Some(&v), &k, loaded_seq)?;
        }
        let mut batch: Vec<(u64, Vec<f32>, String)> = Vec::new();
        let flush_batch = |batch: &mut Vec<(u64, Vec<f32>, String)>| -> Result<()> {
            if fresh_vector {
                let items: Vec<(u64, &[f32])> = batch.iter().map(|(key, e, _)| (*key, e.as_slice())).collect();
                v.add_many(&items, threads)?;
            }
            if fresh_keyword {
                let items: Vec<(u64, &str)> = batch.iter().map(|(key, _, t)| (*key, t.as_str())).collect();
                k.upsert(&items)?;
            }
            batch.clear();
            Ok(())
        };
        for item in coll.chunks.iter() {
            if inner.closing.load(Ordering::Relaxed) {
                return Ok(());
            }
            let (key, value) = item?;
            let key = key.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt { tree: "chunks".into(), detail: "bad key".into() })?;
            let chunk = decode_chunk(key, &value)?;
            batch.push((key, chunk.embedding, chunk.meta.text));
            if batch.len() >= 1024 {
                flush_batch(&mut batch)?;
            }
        }
        flush_batch(&mut batch)?;
        vector = Some(v);
        keyword = Some(k);
        start = mark;
    } else {
        set_health(coll, IndexHealth::CatchingUp);
    }
    let (Some(vector), Some(keyword)) = (vector, keyword) else {
        return Err(StoreError::Vector("recovery lost an index".into()));
    };
    // Catch up without blocking writers, then finish under the writer lock. The commit before
    // taking the lock leaves no uncommitted changes in the writer while waiting for it (a writer
    // with changes cannot make room for another in the pool).
    // A loaded index that had nothing to replay is not committed again: that would open a
    // writer (threads, an fsync) per collection at every start.
    let committed = if needs_scan { None } else { Some(kseq) };
    start = replay(coll, Some(&vector), &keyword, start)?;
    if committed != Some(start) || keyword.has_uncommitted() {
        keyword.commit(start)?;
    }
    let _w = inner.lock_writer();
    if inner.closing.load(Ordering::Relaxed) {
        return Ok(());
    }
    let present = inner.colls.read().unwrap_or_else(|p| p.into_inner()).contains_key(id);
    if !present {
        return Ok(());
    }
    let last = replay(coll, Some(&vector), &keyword, start)?;
    let vector_saved = if needs_scan { 0 } else { vseq };
    if last != start || keyword.has_uncommitted() {
        keyword.commit(last)?;
    }
    let unsaved = u64::from(last != vector_saved || needs_scan);
    *coll.indexes_mut() = Indexes {
        health: IndexHealth::Ready,
        vector: Some(Arc::new(vector)),
        keyword: Some(Arc::new(keyword)),
        applied_seq: last,
        keyword_seq: last,
        vector_saved_seq: vector_saved,
        unsaved,
        rebuilt_because,
        ..Indexes::starting()
    };
    if unsaved > 0 {
        if let Err(e) = checkpoint_coll(inner, coll) {
            // The indexes serve from memory; the save is tried again later.
            tracing::warn!(collection = %id, error = %e, "Saving the recovered vector index failed.");
        }
    }
    tracing::info!(collection = %id, seq = last, "Indexes ready.");
    Ok(())
}

/// Stops recovery threads and saves ready indexes; called when the store is dropped.
pub(crate) fn shutdown(inner: &Arc<Inner>) {
    inner.closing.store(true, Ordering::Relaxed);
    let handles: Vec<_> = std::mem::take(&mut inner.recovery.lock().unwrap_or_else(|p| p.into_inner()).handles);
    for h in handles {
        let _ = h.join();
    }
    if let Err(e) = checkpoint_all(inner) {
        tracing::warn!(error = %e, "Checkpoint at close failed.");
    }
}

/// Saves every collection's vector index that has unsaved changes; one failure does not stop
/// the others. Returns the first error.
fn checkpoint_all(inner: &Inner) -> Result<()> {
    let _w = inner.lock_writer();
    let colls: Vec<Arc<Coll>> = inner.colls.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
    let mut first = Ok(());
    for coll in colls {
        if let Err(e) = checkpoint_coll(inner, &coll) {
            tracing::warn!(collection = %coll.meta.id, error = %e, "Vector index checkpoint failed.");
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

impl Store {
    /// Saves every ready vector index that has unsaved changes and trims the logs. The daemon
    /// calls this periodically and before exit (dropping the store does it too).
    pub fn checkpoint(&self) -> Result<()> {
        checkpoint_all(&self.inner)
    }

    /// Health of every collection's indexes.
    pub fn status(&self) -> StoreStatus {
        let colls: Vec<Arc<Coll>> = self.inner.colls.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut collections: Vec<CollectionStatus> = colls
            .iter()
            .map(|c| {
                let idx = c.indexes();
                let degraded = match (&idx.keyword_lag, &idx.save_failure) {
                    (Some(lag), _) => Some(format!("keyword index lags behind (searches use its last commit): {}", lag.reason)),
                    (None, Some(save)) => Some(format!("vector index not saved (it serves from memory): {}", save.reason)),
                    (None, None) => None,
                };
                CollectionStatus {
                    id: c.meta.id.clone(),
                    health: idx.health.clone(),
                    indexed_chunks: idx.vector.as_ref().map_or(0, |v| v.len()),
                    rebuilt_because: idx.rebuilt_because.clone(),
                    degraded,
                }
            })
            .collect();
        collections.sort_by(|a, b| a.id.cmp(&b.id));
        StoreStatus { ready: collections.iter().all(|c| c.health == IndexHealth::Ready), collections }
    }

    /// Waits until every collection is ready or failed; false on timeout.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            let settled = status.collections.iter().all(|c| matches!(c.health, IndexHealth::Ready | IndexHealth::Failed { .. }));
            if settled {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
