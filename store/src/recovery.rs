//! Keeping the derived indexes in step with sled: applying acknowledged writes, checkpoints,
//! and recovery at start-up.
//!
//! Invariants:
//! - `Indexes::applied_seq` is the last log sequence both indexes reflect; the keyword index
//!   commits it with every write, the vector index when it is saved (checkpoint);
//! - replaying a log entry is idempotent (an add skips keys already present or no longer in
//!   sled, a delete ignores absent keys), so recovery may start from any sequence at or before
//!   the oldest of the two saved ones;
//! - while a collection is not `Ready`, writes go to sled and its log only; the recovery thread
//!   replays the log to its end holding the writer lock, then marks the collection ready, so no
//!   acknowledged write is missed;
//! - the log is trimmed only up to a sequence both indexes have durably saved, and the trim point
//!   (`log_floor`) is recorded first: an index older than it is rebuilt, never half caught up.

use std::sync::atomic::Ordering;
use std::sync::Arc;
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
    /// Recovery failed; searches that need the indexes fail until a restart.
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
}

impl Indexes {
    pub(crate) fn starting() -> Self {
        Indexes { health: IndexHealth::CatchingUp, vector: None, keyword: None, applied_seq: 0, vector_saved_seq: 0, unsaved: 0, rebuilt_because: None }
    }
    pub(crate) fn ready(vector: Arc<VectorIndex>, keyword: Arc<KeywordIndex>, seq: u64) -> Self {
        Indexes { health: IndexHealth::Ready, vector: Some(vector), keyword: Some(keyword), applied_seq: seq, vector_saved_seq: 0, unsaved: 1, rebuilt_because: None }
    }
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

/// Applies an acknowledged add to ready indexes; on failure the collection is rebuilt.
pub(crate) fn apply_add(inner: &Arc<Inner>, coll: &Arc<Coll>, seq: u64, items: &[(u64, &[f32], &str)]) {
    let Some((vector, keyword)) = ready_indexes(coll) else { return };
    let result = (|| -> Result<()> {
        let vecs: Vec<(u64, &[f32])> = items.iter().map(|(k, v, _)| (*k, *v)).collect();
        vector.add_many(&vecs, 1)?;
        let texts: Vec<(u64, &str)> = items.iter().map(|(k, _, t)| (*k, *t)).collect();
        keyword.upsert(&texts)?;
        keyword.commit(seq)
    })();
    after_apply(inner, coll, seq, items.len() as u64, result);
}

/// Applies an acknowledged delete to ready indexes; on failure the collection is rebuilt.
pub(crate) fn apply_delete(inner: &Arc<Inner>, coll: &Arc<Coll>, seq: u64, keys: &[u64]) {
    let Some((vector, keyword)) = ready_indexes(coll) else { return };
    let result = (|| -> Result<()> {
        keys.iter().try_for_each(|k| vector.remove(*k))?;
        keyword.delete(keys);
        keyword.commit(seq)
    })();
    after_apply(inner, coll, seq, keys.len() as u64, result);
}

fn after_apply(inner: &Arc<Inner>, coll: &Arc<Coll>, seq: u64, changed: u64, result: Result<()>) {
    match result {
        Ok(()) => {
            let due = {
                let mut idx = coll.indexes_mut();
                idx.applied_seq = seq;
                idx.unsaved += changed.max(1);
                idx.unsaved >= inner.config.checkpoint_every
            };
            if due {
                if let Err(e) = checkpoint_coll(inner, coll) {
                    tracing::warn!(collection = %coll.meta.id, error = %e, "Vector index checkpoint failed.");
                }
            }
        }
        Err(e) => {
            tracing::error!(collection = %coll.meta.id, error = %e, "Index update failed; rebuilding from sled.");
            let reason = format!("index update failed: {e}");
            *coll.indexes_mut() = Indexes { health: IndexHealth::Rebuilding { reason }, ..Indexes::starting() };
            spawn(inner, coll.clone(), Plan::Rebuild);
        }
    }
}

/// Saves the vector index of a ready collection and trims its log. Caller holds the writer lock
/// or is the writer.
pub(crate) fn checkpoint_coll(inner: &Inner, coll: &Coll) -> Result<()> {
    let (vector, keyword, seq) = {
        let idx = coll.indexes();
        match (&idx.health, &idx.vector, &idx.keyword) {
            (IndexHealth::Ready, Some(v), Some(k)) if idx.unsaved > 0 => (v.clone(), k.clone(), idx.applied_seq),
            _ => return Ok(()),
        }
    };
    vector.save(&coll.vector_path(), seq)?;
    {
        let mut idx = coll.indexes_mut();
        idx.vector_saved_seq = seq;
        idx.unsaved = 0;
    }
    // Both indexes now durably reflect `seq`: record the floor, then trim.
    inner.log_floor.insert(coll.meta.id.as_bytes(), &seq.to_be_bytes())?;
    inner.db.flush()?;
    for key in coll.log.range(..=seq.to_be_bytes()).keys() {
        coll.log.remove(key?)?;
    }
    keyword.garbage_collect();
    Ok(())
}

/// What recovery starts from.
#[derive(Debug, Clone, Copy)]
enum Plan {
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

fn spawn(inner: &Arc<Inner>, coll: Arc<Coll>, plan: Plan) {
    let inner2 = inner.clone();
    let name = format!("store-recover-{}", &coll.meta.id[..coll.meta.id.len().min(12)]);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let mut result = recover(&inner2, &coll, plan);
        if let (Err(e), Plan::Load) = (&result, plan) {
            // What was loaded from disk could not be caught up: start over from sled alone.
            tracing::warn!(collection = %coll.meta.id, error = %e, "Catching up failed; rebuilding.");
            set_health(&coll, IndexHealth::Rebuilding { reason: format!("catching up failed: {e}") });
            result = recover(&inner2, &coll, Plan::Rebuild);
        }
        if let Err(e) = result {
            tracing::error!(collection = %coll.meta.id, error = %e, "Index recovery failed.");
            set_health(&coll, IndexHealth::Failed { reason: e.to_string() });
        }
    });
    match spawned {
        Ok(handle) => inner.recovery.lock().unwrap_or_else(|p| p.into_inner()).push(handle),
        Err(e) => tracing::error!(error = %e, "Could not start an index recovery thread."),
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

/// Replays log entries after `after` into both indexes; returns the last sequence replayed.
fn replay(coll: &Coll, vector: &VectorIndex, keyword: &KeywordIndex, after: u64) -> Result<u64> {
    let mut last = after;
    for (seq, op) in log_after(coll, after)? {
        match op {
            LogOp::Add(keys) => {
                for key in keys {
                    if let Some(chunk) = coll.chunk(key)? {
                        vector.add_many(&[(key, chunk.embedding.as_slice())], 1)?;
                        keyword.upsert(&[(key, chunk.meta.text.as_str())])?;
                    }
                }
            }
            LogOp::Delete(keys) => {
                keys.iter().try_for_each(|k| vector.remove(*k))?;
                keyword.delete(&keys);
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
        match KeywordIndex::open(&coll.keyword_dir())? {
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
            None => KeywordIndex::create(&coll.keyword_dir())?,
        };
        if !fresh_vector || !fresh_keyword {
            // The loaded one first catches up to now, so the scan need only fill the fresh one.
            let loaded_seq = if fresh_vector { kseq } else { vseq };
            replay(coll, &v, &k, loaded_seq)?;
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
    // Catch up without blocking writers, then finish under the writer lock.
    start = replay(coll, &vector, &keyword, start)?;
    let _w = inner.lock_writer();
    if inner.closing.load(Ordering::Relaxed) {
        return Ok(());
    }
    let present = inner.colls.read().unwrap_or_else(|p| p.into_inner()).contains_key(id);
    if !present {
        return Ok(());
    }
    let last = replay(coll, &vector, &keyword, start)?;
    let vector_saved = if needs_scan { 0 } else { vseq };
    keyword.commit(last)?;
    let unsaved = u64::from(last != vector_saved || needs_scan);
    *coll.indexes_mut() = Indexes {
        health: IndexHealth::Ready,
        vector: Some(Arc::new(vector)),
        keyword: Some(Arc::new(keyword)),
        applied_seq: last,
        vector_saved_seq: vector_saved,
        unsaved,
        rebuilt_because,
    };
    if unsaved > 0 {
        checkpoint_coll(inner, coll)?;
    }
    tracing::info!(collection = %id, seq = last, "Indexes ready.");
    Ok(())
}

/// Stops recovery threads and saves ready indexes; called when the store is dropped.
pub(crate) fn shutdown(inner: &Arc<Inner>) {
    inner.closing.store(true, Ordering::Relaxed);
    let handles: Vec<_> = std::mem::take(&mut *inner.recovery.lock().unwrap_or_else(|p| p.into_inner()));
    for h in handles {
        let _ = h.join();
    }
    if let Err(e) = checkpoint_all(inner) {
        tracing::warn!(error = %e, "Checkpoint at close failed.");
    }
}

fn checkpoint_all(inner: &Inner) -> Result<()> {
    let _w = inner.lock_writer();
    let colls: Vec<Arc<Coll>> = inner.colls.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
    for coll in colls {
        checkpoint_coll(inner, &coll)?;
    }
    Ok(())
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
                CollectionStatus {
                    id: c.meta.id.clone(),
                    health: idx.health.clone(),
                    indexed_chunks: idx.vector.as_ref().map_or(0, |v| v.len()),
                    rebuilt_because: idx.rebuilt_because.clone(),
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
