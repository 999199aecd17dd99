//! A bounded pool of open tantivy writers, shared by every collection of a store.
//!
//! Why: a tantivy `IndexWriter` owns threads for as long as it is open: an indexing worker, a
//! segment updater and a pool of merge threads (four by default). One writer held open per
//! collection made the daemon grow by six threads with every vector store (50 stores took it
//! from 32 to 334 threads) until the service's task limit failed every thread spawn.
//!
//! Design and invariants:
//! - a collection's writer is opened when its keyword index is first written, with one indexing
//!   thread and one merge thread ([`THREADS_PER_WRITER`] threads in all), and closed when it has
//!   been idle for `idle_close` ([`WriterPool::close_idle`], run by the store's upkeep thread) or
//!   when the pool needs its place; so at most `max_open × THREADS_PER_WRITER` writer threads
//!   exist, whatever the number of collections;
//! - at most `max_open` writers are open: opening one more first closes the least recently used
//!   writer that has no uncommitted changes and is not in use; when there is none, the opener
//!   waits until there is (a writer with uncommitted changes is one commit away from closable);
//! - a slot is in the pool's `open` list exactly while it has a writer or is opening one, and a
//!   writer is opened and closed only under its slot's lock, so one directory never has two
//!   writers (tantivy's lock file would refuse the second);
//! - the pool never blocks on a slot's lock it does not hold (`try_lock`), and a slot's owner
//!   takes the pool's lock only briefly, so two writers looking for room cannot deadlock;
//! - closing waits for merges in progress, so their segments are recorded, not thrown away.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use tantivy::indexer::IndexWriterOptions;
use tantivy::{Index, IndexWriter};

use crate::error::Result;

/// Threads an open writer owns: one indexing worker, the segment updater, one merge thread.
pub const THREADS_PER_WRITER: usize = 3;
/// Indexing memory budget of a writer's one indexing thread.
const WRITER_MEMORY: usize = 20_000_000;
/// How long an opener waits between looks for a closable writer.
const RECHECK: Duration = Duration::from_millis(20);

/// How many writers may be open and for how long they stay open unused.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    /// Most writers open at once (at least 1).
    pub max_open: usize,
    /// A writer unused this long is closed by [`WriterPool::close_idle`].
    pub idle_close: Duration,
}

impl Default for WriterLimits {
    fn default() -> Self {
        WriterLimits { max_open: 4, idle_close: Duration::from_secs(10) }
    }
}

/// The writers of a store.
#[derive(Debug)]
pub struct WriterPool {
    /// The bounds.
    limits: WriterLimits,
    /// Slots that have a writer or are opening one.
    open: Mutex<Vec<Arc<WriterSlot>>>,
    /// Signalled when a slot leaves `open` or commits.
    changed: Condvar,
    /// Time origin of the slots' `last_used`.
    epoch: Instant,
}

/// One keyword index's place for a writer.
pub(crate) struct WriterSlot {
    /// The index directory, for logs.
    dir: PathBuf,
    /// The writer, when open.
    writer: Mutex<Option<IndexWriter>>,
    /// True while the writer holds changes not yet committed (it must not be closed then).
    dirty: AtomicBool,
    /// Milliseconds since the pool's epoch at the last use.
    last_used: AtomicU64,
}

impl std::fmt::Debug for WriterSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterSlot").field("dir", &self.dir).field("dirty", &self.dirty.load(Ordering::Relaxed)).finish()
    }
}

impl WriterSlot {
    /// True while the writer holds uncommitted changes.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }
}

/// Closes a writer, waiting for its merges, and logs a failure.
fn close_writer(writer: IndexWriter, dir: &Path) {
    if let Err(e) = writer.wait_merging_threads() {
        tracing::warn!(dir = %dir.display(), error = %e, "Closing a keyword index writer failed.");
    }
}

fn lock_writer(slot: &WriterSlot) -> MutexGuard<'_, Option<IndexWriter>> {
    slot.writer.lock().unwrap_or_else(|p| p.into_inner())
}

fn try_lock_writer(slot: &WriterSlot) -> Option<MutexGuard<'_, Option<IndexWriter>>> {
    match slot.writer.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl WriterPool {
    /// A pool within `limits`.
    pub fn new(limits: WriterLimits) -> Arc<Self> {
        let limits = WriterLimits { max_open: limits.max_open.max(1), ..limits };
        Arc::new(WriterPool { limits, open: Mutex::new(Vec::new()), changed: Condvar::new(), epoch: Instant::now() })
    }

    /// The bounds.
    pub fn limits(&self) -> WriterLimits {
        self.limits
    }

    /// Writers open now.
    pub fn open_writers(&self) -> usize {
        self.lock_open().len()
    }

    fn lock_open(&self) -> MutexGuard<'_, Vec<Arc<WriterSlot>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn slot(&self, dir: &Path) -> Arc<WriterSlot> {
        Arc::new(WriterSlot { dir: dir.to_path_buf(), writer: Mutex::new(None), dirty: AtomicBool::new(false), last_used: AtomicU64::new(self.now_ms()) })
    }

    /// Runs `f` with the slot's writer, opening it on `index` first if needed. `leaves_changes`
    /// says whether `f` leaves uncommitted changes (an add or delete) or commits them.
    pub(crate) fn with_writer<T>(&self, slot: &Arc<WriterSlot>, index: &Index, leaves_changes: bool, f: impl FnOnce(&mut IndexWriter) -> Result<T>) -> Result<T> {
        let mut guard = lock_writer(slot);
        if guard.is_none() {
            self.make_room(slot);
            match open_writer(index) {
                Ok(w) => *guard = Some(w),
                Err(e) => {
                    self.remove(slot);
                    return Err(e);
                }
            }
        }
        slot.last_used.store(self.now_ms(), Ordering::Relaxed);
        let Some(writer) = guard.as_mut() else { return Err(tantivy::TantivyError::InternalError("the keyword writer vanished".into()).into()) };
        let result = f(writer);
        let was_dirty = slot.dirty.swap(leaves_changes, Ordering::AcqRel);
        if was_dirty && !leaves_changes {
            drop(guard);
            self.changed.notify_all();
        }
        result
    }

    /// Runs `f` with the slot's writer if it is open; does nothing otherwise.
    pub(crate) fn with_open_writer(&self, slot: &Arc<WriterSlot>, f: impl FnOnce(&mut IndexWriter) -> Result<()>) -> Result<()> {
        match lock_writer(slot).as_mut() {
            Some(writer) => f(writer),
            None => Ok(()),
        }
    }

    /// Closes the slot's writer now, dropping uncommitted changes (after a failure, or when the
    /// index goes away). `wait_merges` waits for merges in progress to be recorded.
    pub(crate) fn close(&self, slot: &Arc<WriterSlot>, wait_merges: bool) {
        let mut guard = lock_writer(slot);
        if let Some(writer) = guard.take() {
            slot.dirty.store(false, Ordering::Release);
            if wait_merges {
                close_writer(writer, &slot.dir);
            } else {
                drop(writer);
            }
            self.remove(slot);
        }
    }

    /// Whether the slot has a writer open.
    pub(crate) fn is_open(&self, slot: &Arc<WriterSlot>) -> bool {
        self.lock_open().iter().any(|s| Arc::ptr_eq(s, slot))
    }

    /// Closes writers unused for `idle_close` that hold no uncommitted changes; returns how many.
    pub fn close_idle(&self) -> usize {
        let now = self.now_ms();
        let idle_ms = self.limits.idle_close.as_millis() as u64;
        let candidates: Vec<Arc<WriterSlot>> = self.lock_open().clone();
        let mut closed = 0;
        for slot in candidates {
            if now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) < idle_ms || slot.dirty.load(Ordering::Acquire) {
                continue;
            }
            let Some(mut guard) = try_lock_writer(&slot) else { continue };
            if slot.dirty.load(Ordering::Acquire) {
                continue;
            }
            if let Some(writer) = guard.take() {
                self.remove(&slot);
                close_writer(writer, &slot.dir);
                closed += 1;
            }
        }
        closed
    }

    /// Takes a place in `open` for `me` (whose lock the caller holds), closing the least recently
    /// used closable writer when the pool is full, or waiting for one to become closable.
    fn make_room(&self, me: &Arc<WriterSlot>) {
        let mut open = self.lock_open();
        loop {
            if open.len() < self.limits.max_open {
                open.push(me.clone());
                return;
            }
            let mut by_age: Vec<Arc<WriterSlot>> = open.iter().filter(|s| !Arc::ptr_eq(s, me)).cloned().collect();
            by_age.sort_by_key(|s| s.last_used.load(Ordering::Relaxed));
            for victim in by_age {
                if victim.dirty.load(Ordering::Acquire) {
                    continue;
                }
                let Some(mut guard) = try_lock_writer(&victim) else { continue };
                if victim.dirty.load(Ordering::Acquire) {
                    continue;
                }
                let Some(writer) = guard.take() else { continue };
                open.retain(|s| !Arc::ptr_eq(s, &victim));
                open.push(me.clone());
                drop(open);
                // Still under the victim's lock: it cannot open a writer before this one is gone.
                close_writer(writer, &victim.dir);
                drop(guard);
                self.changed.notify_all();
                return;
            }
            open = self.changed.wait_timeout(open, RECHECK).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn remove(&self, slot: &Arc<WriterSlot>) {
        self.lock_open().retain(|s| !Arc::ptr_eq(s, slot));
        self.changed.notify_all();
    }
}

/// Opens a writer with one indexing and one merge thread and collects files that no commit
/// refers to (those of a commit a crash interrupted: tantivy would reuse their names and fail).
fn open_writer(index: &Index) -> Result<IndexWriter> {
    let options = IndexWriterOptions::builder().memory_budget_per_thread(WRITER_MEMORY).num_worker_threads(1).num_merge_threads(1).build();
    let writer: IndexWriter = index.writer_with_options(options)?;
    writer.garbage_collect_files().wait()?;
    Ok(writer)
}
