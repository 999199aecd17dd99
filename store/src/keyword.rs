//! The keyword (BM25) index of one collection: a tantivy index in its own directory, derived
//! from sled.
//!
//! Invariants:
//! - one tantivy document per chunk, identified by the chunk key (an indexed, fast `u64` field);
//!   [`KeywordIndex::upsert`] deletes the key before adding it, so replaying a change is idempotent;
//! - every commit carries the payload `{"format": 1, "seq": N}`: the sled sequence number the
//!   index reflects. Tantivy writes its `meta.json` atomically (temp file, fsync, rename), so the
//!   payload and the segments it lists change together;
//! - an index that does not open, whose payload is missing or of another format, or whose files
//!   fail tantivy's checksums is reported damaged, and the caller rebuilds it from sled;
//! - the index holds no writer (and so no threads) of its own: one is taken from the store's
//!   [`WriterPool`] for a write and closed when idle or when another collection needs its place
//!   (see [`crate::writers`]); after a failed write, [`KeywordIndex::discard`] drops the writer
//!   with its uncommitted changes and the next write opens a fresh one on the last commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, QueryParser};
use tantivy::schema::{Field, Schema, FAST, INDEXED, STORED, TEXT};
use tantivy::{doc, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Result, StoreError};
use crate::writers::{WriterPool, WriterSlot};

/// Version of the commit payload this build writes and reads.
pub const KEYWORD_FORMAT_VERSION: u32 = 1;

/// The commit payload.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    /// Format version.
    format: u32,
    /// Sled sequence number reflected.
    seq: u64,
}

/// Result of opening an existing index directory.
#[derive(Debug)]
pub enum KeywordOutcome {
    /// Opened; it reflects sled up to this sequence number.
    Loaded(Box<KeywordIndex>, u64),
    /// No index there.
    Missing,
    /// Damaged or of another format; the reason says how.
    Damaged(String),
}

/// A BM25 index over chunk texts.
pub struct KeywordIndex {
    /// The tantivy index.
    index: Index,
    /// The pool lending the writer (tantivy allows one per directory).
    pool: Arc<WriterPool>,
    /// This index's place in the pool.
    slot: Arc<WriterSlot>,
    /// Reader, reloaded after each commit.
    reader: IndexReader,
    /// Chunk key field.
    key: Field,
    /// Chunk text field.
    text: Field,
    /// Directory of the index.
    dir: PathBuf,
}

impl std::fmt::Debug for KeywordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeywordIndex").field("dir", &self.dir).finish()
    }
}

fn schema() -> (Schema, Field, Field) {
    let mut b = Schema::builder();
    let key = b.add_u64_field("key", INDEXED | FAST | STORED);
    let text = b.add_text_field("text", TEXT);
    (b.build(), key, text)
}

impl KeywordIndex {
    fn from_index(index: Index, dir: &Path, pool: &Arc<WriterPool>) -> Result<Self> {
        let (_, key, text) = schema();
        let schema = index.schema();
        let (key, text) = match (schema.get_field("key"), schema.get_field("text")) {
            (Ok(k), Ok(t)) => (k, t),
            _ => (key, text),
        };
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(KeywordIndex { index, pool: pool.clone(), slot: pool.slot(dir), reader, key, text, dir: dir.to_path_buf() })
    }

    /// Creates an empty index in `dir`, replacing whatever is there; writers come from `pool`.
    pub fn create(dir: &Path, pool: &Arc<WriterPool>) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| StoreError::io(format!("removing {}", dir.display()), e))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let index = Index::create_in_dir(dir, schema().0)?;
        let me = KeywordIndex::from_index(index, dir, pool)?;
        me.commit(0)?;
        Ok(me)
    }

    /// Opens the index in `dir`, checking format and checksums; writers come from `pool`.
    pub fn open(dir: &Path, pool: &Arc<WriterPool>) -> Result<KeywordOutcome> {
        if !dir.join("meta.json").exists() {
            return Ok(KeywordOutcome::Missing);
        }
        let attempt = std::panic::catch_unwind(|| -> Result<std::result::Result<(KeywordIndex, u64), String>> {
            let index = match Index::open_in_dir(dir) {
                Ok(i) => i,
                Err(e) => return Ok(Err(format!("does not open: {e}"))),
            };
            let metas = match index.load_metas() {
                Ok(m) => m,
                Err(e) => return Ok(Err(format!("unreadable meta.json: {e}"))),
            };
            let payload: Payload = match metas.payload.as_deref().map(serde_json::from_str) {
                Some(Ok(p)) => p,
                _ => return Ok(Err("commit payload missing or unreadable".into())),
            };
            if payload.format != KEYWORD_FORMAT_VERSION {
                return Ok(Err(format!("format version {}, this build reads {KEYWORD_FORMAT_VERSION}", payload.format)));
            }
            match index.validate_checksum() {
                Ok(bad) if bad.is_empty() => {}
                Ok(bad) => return Ok(Err(format!("damaged files: {bad:?}"))),
                Err(e) => return Ok(Err(format!("checksum validation failed: {e}"))),
            }
            let me = match KeywordIndex::from_index(index, dir, pool) {
                Ok(me) => me,
                Err(e) => return Ok(Err(format!("does not load: {e}"))),
            };
            // Touch every segment once so a damaged file shows now, not at the first query.
            if let Err(e) = me.reader.searcher().search(&AllQuery, &tantivy::collector::Count) {
                return Ok(Err(format!("does not search: {e}")));
            }
            Ok(Ok((me, payload.seq)))
        });
        match attempt {
            Ok(Ok(Ok((me, seq)))) => Ok(KeywordOutcome::Loaded(Box::new(me), seq)),
            Ok(Ok(Err(why))) => Ok(KeywordOutcome::Damaged(format!("{}: {why}", dir.display()))),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(KeywordOutcome::Damaged(format!("{}: tantivy panicked while opening it", dir.display()))),
        }
    }

    /// Adds or replaces chunks (not visible until [`KeywordIndex::commit`]).
    pub fn upsert(&self, items: &[(u64, &str)]) -> Result<()> {
        self.pool.with_writer(&self.slot, &self.index, true, |w| {
            for (key, text) in items {
                w.delete_term(Term::from_field_u64(self.key, *key));
                w.add_document(doc!(self.key => *key, self.text => *text))?;
            }
            Ok(())
        })
    }

    /// Removes chunks (not visible until [`KeywordIndex::commit`]).
    pub fn delete(&self, keys: &[u64]) -> Result<()> {
        self.pool.with_writer(&self.slot, &self.index, true, |w| {
            for key in keys {
                w.delete_term(Term::from_field_u64(self.key, *key));
            }
            Ok(())
        })
    }

    /// Makes pending changes durable and visible, recording sequence number `seq`.
    pub fn commit(&self, seq: u64) -> Result<()> {
        let payload = serde_json::to_string(&Payload { format: KEYWORD_FORMAT_VERSION, seq })?;
        self.pool.with_writer(&self.slot, &self.index, false, |w| {
            let mut prepared = w.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
            Ok(())
        })?;
        self.reader.reload()?;
        Ok(())
    }

    /// Drops the writer and every change not yet committed (after a failed write: tantivy's
    /// writer may be dead then); the next write opens a fresh writer on the last commit.
    pub fn discard(&self) {
        self.pool.close(&self.slot, false);
    }

    /// Whether changes were made since the last commit.
    pub fn has_uncommitted(&self) -> bool {
        self.slot.is_dirty()
    }

    /// Whether a writer is open for this index now.
    pub fn writer_is_open(&self) -> bool {
        self.pool.is_open(&self.slot)
    }

    /// The `k` best chunks for `query` by BM25, best first. Query syntax errors are forgiven.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<(u64, f32)>> {
        if k == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let parser = QueryParser::for_index(&self.index, vec![self.text]);
        // The index has one text field, so `word:` in a user's text is punctuation, never a field
        // name; left in, `effects: *` became an exists-query on a field `effects` that fails at
        // search time although the lenient parse took it.
        let (q, _errors) = parser.parse_query_lenient(&query.replace(':', " "));
        let searcher = self.reader.searcher();
        let top = searcher.search(&q, &TopDocs::with_limit(k).order_by_score())?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let stored: TantivyDocument = searcher.doc(addr)?;
            let key = stored.get_first(self.key).and_then(|v| tantivy::schema::Value::as_u64(&v));
            match key {
                Some(key) => out.push((key, score)),
                None => return Err(StoreError::Keyword(tantivy::TantivyError::InternalError("document without key".into()))),
            }
        }
        Ok(out)
    }

    /// Every live key (with repetitions, if any), for audits.
    pub fn keys(&self) -> Result<Vec<u64>> {
        let searcher = self.reader.searcher();
        let mut keys = Vec::new();
        for segment in searcher.segment_readers() {
            let column = segment.fast_fields().u64("key")?;
            for doc in segment.doc_ids_alive() {
                keys.extend(column.values_for_doc(doc));
            }
        }
        Ok(keys)
    }

    /// Deletes files no commit refers to any more, if a writer is open (a writer also does
    /// this when it opens).
    pub fn garbage_collect(&self) {
        if let Err(e) = self.pool.with_open_writer(&self.slot, |w| {
            w.garbage_collect_files().wait()?;
            Ok(())
        }) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "Keyword index garbage collection failed.");
        }
    }
}

impl Drop for KeywordIndex {
    fn drop(&mut self) {
        self.pool.close(&self.slot, true);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use crate::writers::WriterLimits;

    fn pool() -> Arc<WriterPool> {
        WriterPool::new(WriterLimits::default())
    }

    #[test]
    fn upsert_search_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kw");
        let pool = pool();
        assert!(matches!(KeywordIndex::open(&path, &pool).unwrap(), KeywordOutcome::Missing));
        let idx = KeywordIndex::create(&path, &pool).unwrap();
        idx.upsert(&[(1, "the quick brown fox"), (2, "a lazy dog sleeps"), (3, "fox and dog are friends")]).unwrap();
        idx.commit(5).unwrap();
        let hits = idx.search("fox", 10).unwrap();
        let keys: Vec<u64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&1) && keys.contains(&3));
        // Upsert is idempotent: no duplicate documents.
        idx.upsert(&[(1, "the quick brown fox")]).unwrap();
        idx.delete(&[3]).unwrap();
        idx.commit(6).unwrap();
        let mut all = idx.keys().unwrap();
        all.sort_unstable();
        assert_eq!(all, vec![1, 2]);
        assert!(idx.search("AND OR ((", 10).is_ok(), "bad syntax is forgiven");
        // Text from real documents reads as field queries and wildcards (found by ann_bench).
        for text in ["The following key combinations in the REPL have these special effects: *", "Status: obsolete When: 1.16.x", "fox: *", "effects:dog"] {
            assert!(idx.search(text, 10).is_ok(), "{text:?} is searchable");
        }
        drop(idx);
        match KeywordIndex::open(&path, &pool).unwrap() {
            KeywordOutcome::Loaded(idx, seq) => {
                assert_eq!(seq, 6);
                assert_eq!(idx.search("dog", 10).unwrap()[0].0, 2);
            }
            other => panic!("expected loaded, got {other:?}"),
        }
    }

    #[test]
    fn damaged_index_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kw");
        let pool = pool();
        let idx = KeywordIndex::create(&path, &pool).unwrap();
        idx.upsert(&[(1, "alpha beta gamma"), (2, "delta epsilon")]).unwrap();
        idx.commit(1).unwrap();
        drop(idx);
        // Truncate every segment file to half its length.
        for entry in std::fs::read_dir(&path).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".idx") || name.ends_with(".term") || name.ends_with(".store") {
                let bytes = std::fs::read(entry.path()).unwrap();
                std::fs::write(entry.path(), &bytes[..bytes.len() / 2]).unwrap();
            }
        }
        assert!(matches!(KeywordIndex::open(&path, &pool).unwrap(), KeywordOutcome::Damaged(_)));
        std::fs::write(path.join("meta.json"), b"{ not json").unwrap();
        assert!(matches!(KeywordIndex::open(&path, &pool).unwrap(), KeywordOutcome::Damaged(_)));
    }

    #[test]
    fn writers_are_lazy_bounded_and_closed_when_idle() {
        let dir = tempfile::tempdir().unwrap();
        let pool = WriterPool::new(WriterLimits { max_open: 2, idle_close: std::time::Duration::from_millis(50) });
        let indexes: Vec<KeywordIndex> = (0..12).map(|i| KeywordIndex::create(&dir.path().join(format!("kw{i}")), &pool).unwrap()).collect();
        assert!(pool.open_writers() <= 2, "{} writers open", pool.open_writers());
        for (i, idx) in indexes.iter().enumerate() {
            idx.upsert(&[(i as u64, &format!("common word{i}"))]).unwrap();
            idx.commit(1).unwrap();
            assert!(idx.writer_is_open());
            assert!(pool.open_writers() <= 2);
        }
        // Closing a writer for another index's sake keeps what it committed.
        for (i, idx) in indexes.iter().enumerate() {
            assert_eq!(idx.search(&format!("word{i}"), 5).unwrap().iter().map(|h| h.0).collect::<Vec<_>>(), vec![i as u64]);
        }
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(pool.close_idle(), 2);
        assert_eq!(pool.open_writers(), 0);
        assert!(indexes.iter().all(|i| !i.writer_is_open()));
        // Reads need no writer; a write opens one again.
        assert_eq!(indexes[3].search("common", 20).unwrap().len(), 1);
        indexes[3].delete(&[3]).unwrap();
        indexes[3].commit(2).unwrap();
        assert!(indexes[3].search("word3", 5).unwrap().is_empty());
        assert_eq!(pool.open_writers(), 1);
    }

    #[test]
    fn uncommitted_changes_are_never_dropped_to_make_room() {
        let dir = tempfile::tempdir().unwrap();
        let pool = WriterPool::new(WriterLimits { max_open: 1, idle_close: std::time::Duration::ZERO });
        let a = KeywordIndex::create(&dir.path().join("a"), &pool).unwrap();
        let b = Arc::new(KeywordIndex::create(&dir.path().join("b"), &pool).unwrap());
        a.upsert(&[(1, "pending words")]).unwrap();
        assert_eq!(pool.close_idle(), 0, "a writer with uncommitted changes stays open");
        // `b` needs the only place: it waits until `a` commits.
        let (started, b2) = (std::time::Instant::now(), b.clone());
        let writer = std::thread::spawn(move || {
            b2.upsert(&[(2, "other words")]).unwrap();
            b2.commit(1).unwrap();
            started.elapsed()
        });
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(!writer.is_finished(), "b must wait for a's commit");
        a.commit(1).unwrap();
        let waited = writer.join().unwrap();
        assert!(waited >= std::time::Duration::from_millis(150), "{waited:?}");
        assert_eq!(a.search("pending", 5).unwrap()[0].0, 1);
        assert_eq!(b.search("other", 5).unwrap()[0].0, 2);
        assert!(b.writer_is_open() && !a.writer_is_open());
    }

    #[test]
    fn a_discarded_writer_loses_only_uncommitted_changes() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool();
        let idx = KeywordIndex::create(&dir.path().join("kw"), &pool).unwrap();
        idx.upsert(&[(1, "kept")]).unwrap();
        idx.commit(1).unwrap();
        idx.upsert(&[(2, "lost")]).unwrap();
        idx.discard();
        assert!(!idx.writer_is_open());
        idx.commit(2).unwrap();
        assert_eq!(idx.keys().unwrap(), vec![1]);
    }
}
