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
//!   fail tantivy's checksums is reported damaged, and the caller rebuilds it from sled.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, QueryParser};
use tantivy::schema::{Field, Schema, FAST, INDEXED, STORED, TEXT};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::{Result, StoreError};

/// Version of the commit payload this build writes and reads.
pub const KEYWORD_FORMAT_VERSION: u32 = 1;
/// Indexing memory budget of the single writer thread.
const WRITER_MEMORY: usize = 20_000_000;

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
    /// The only writer (tantivy allows one per directory).
    writer: Mutex<IndexWriter>,
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
    fn from_index(index: Index, dir: &Path) -> Result<Self> {
        let (_, key, text) = schema();
        let schema = index.schema();
        let (key, text) = match (schema.get_field("key"), schema.get_field("text")) {
            (Ok(k), Ok(t)) => (k, t),
            _ => (key, text),
        };
        let writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        // Files of a commit interrupted by a crash are registered but unreferenced; tantivy would
        // reuse their names (opstamps restart from the last commit) and fail. Collect them now.
        writer.garbage_collect_files().wait()?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(KeywordIndex { index, writer: Mutex::new(writer), reader, key, text, dir: dir.to_path_buf() })
    }

    /// Creates an empty index in `dir`, replacing whatever is there.
    pub fn create(dir: &Path) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| StoreError::io(format!("removing {}", dir.display()), e))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let index = Index::create_in_dir(dir, schema().0)?;
        let me = KeywordIndex::from_index(index, dir)?;
        me.commit(0)?;
        Ok(me)
    }

    /// Opens the index in `dir`, checking format and checksums.
    pub fn open(dir: &Path) -> Result<KeywordOutcome> {
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
            let me = match KeywordIndex::from_index(index, dir) {
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

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces chunks (not visible until [`KeywordIndex::commit`]).
    pub fn upsert(&self, items: &[(u64, &str)]) -> Result<()> {
        let w = self.writer();
        for (key, text) in items {
            w.delete_term(Term::from_field_u64(self.key, *key));
            w.add_document(doc!(self.key => *key, self.text => *text))?;
        }
        Ok(())
    }

    /// Removes chunks (not visible until [`KeywordIndex::commit`]).
    pub fn delete(&self, keys: &[u64]) {
        let w = self.writer();
        for key in keys {
            w.delete_term(Term::from_field_u64(self.key, *key));
        }
    }

    /// Makes pending changes durable and visible, recording sequence number `seq`.
    pub fn commit(&self, seq: u64) -> Result<()> {
        let payload = serde_json::to_string(&Payload { format: KEYWORD_FORMAT_VERSION, seq })?;
        {
            let mut w = self.writer();
            let mut prepared = w.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
        }
        self.reader.reload()?;
        Ok(())
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

    /// Deletes files no commit refers to any more.
    pub fn garbage_collect(&self) {
        if let Err(e) = self.writer().garbage_collect_files().wait() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "Keyword index garbage collection failed.");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn upsert_search_delete_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kw");
        assert!(matches!(KeywordIndex::open(&path).unwrap(), KeywordOutcome::Missing));
        let idx = KeywordIndex::create(&path).unwrap();
        idx.upsert(&[(1, "the quick brown fox"), (2, "a lazy dog sleeps"), (3, "fox and dog are friends")]).unwrap();
        idx.commit(5).unwrap();
        let hits = idx.search("fox", 10).unwrap();
        let keys: Vec<u64> = hits.iter().map(|h| h.0).collect();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&1) && keys.contains(&3));
        // Upsert is idempotent: no duplicate documents.
        idx.upsert(&[(1, "the quick brown fox")]).unwrap();
        idx.delete(&[3]);
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
        match KeywordIndex::open(&path).unwrap() {
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
        let idx = KeywordIndex::create(&path).unwrap();
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
        assert!(matches!(KeywordIndex::open(&path).unwrap(), KeywordOutcome::Damaged(_)));
        std::fs::write(path.join("meta.json"), b"{ not json").unwrap();
        assert!(matches!(KeywordIndex::open(&path).unwrap(), KeywordOutcome::Damaged(_)));
    }
}
