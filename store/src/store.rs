//! The store handle: opening the data directory, collections, documents and chunks.
//!
//! Layout under the data directory: `sled/` (the source of truth) and `indexes/<collection>/`
//! (`vectors.hnsw` and `keyword/`, both derived). sled trees: `meta` (format version),
//! `collections`, `log_floor`, and per collection `c/<id>/docs`, `c/<id>/chunks` (chunk key →
//! record), `c/<id>/doc_chunks` (document id, 0, key → ()) and `c/<id>/log` (sequence → change).
//!
//! Invariants:
//! - writes are serialised by one writer lock; each takes a fresh sequence number from sled's
//!   monotonic id generator and commits the rows and a log entry in one sled transaction, then
//!   flushes; only then is it applied to the indexes and acknowledged;
//! - log entries at or below a collection's `log_floor` have been trimmed; an index saved at an
//!   older sequence than the floor cannot be caught up and is rebuilt;
//! - a document and its chunks are written and deleted together, so sled never holds a chunk
//!   without its document;
//! - new content (a document, chunks) is refused with [`StoreError::NoSpace`] while the disk is
//!   short of [`StoreConfig::min_free_bytes`], so sled never meets a full disk on that path
//!   (sled answers every operation with its first failed write until a restart); deletes and
//!   status changes still go through;
//! - the threads a store owns do not grow with its collections: one upkeep thread
//!   ([`crate::upkeep`]), at most `recovery_threads` recovery threads, and at most
//!   `writers.max_open` tantivy writers of [`crate::writers::THREADS_PER_WRITER`] threads each.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use sled::{Transactional, Tree};

use crate::error::{Result, StoreError};
use crate::keyword::KeywordIndex;
use crate::model::*;
use crate::recovery::{Indexes, RecoveryQueue};
use crate::space::SpaceGuard;
use crate::vector::VectorIndex;
use crate::writers::{WriterLimits, WriterPool};

/// Version of the sled layout this build writes and reads.
pub const STORE_FORMAT_VERSION: u32 = 1;
const FORMAT_KEY: &[u8] = b"format_version";

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Data directory (created if absent).
    pub path: PathBuf,
    /// Concurrent searches the vector index serves; more callers wait.
    pub search_threads: usize,
    /// Save a collection's vector index after this many changed chunks (it is also saved on
    /// [`Store::checkpoint`] and when the store is dropped).
    pub checkpoint_every: u64,
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
    /// Most collections the store holds; creating one more fails with
    /// [`StoreError::CollectionLimit`].
    pub max_collections: usize,
    /// Free disk space (bytes) that new documents and chunks may not eat into; 0 turns the guard
    /// off. See [`crate::space`].
    pub min_free_bytes: u64,
    /// How many tantivy writers may be open at once, and when an unused one is closed.
    pub writers: WriterLimits,
    /// Threads recovering collections' indexes at once (start-up, rebuilds).
    pub recovery_threads: usize,
    /// How often a failed index save, keyword commit or recovery is tried again.
    pub retry_interval: Duration,
}

impl StoreConfig {
    /// Defaults for a data directory: no disk reserve, 1,000 collections, four open writers
    /// closed after 10 s unused, two recovery threads, retries every 30 s.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        StoreConfig {
            path: path.into(),
            search_threads: threads,
            checkpoint_every: 10_000,
            cache_bytes: 256 << 20,
            max_collections: 1000,
            min_free_bytes: 0,
            writers: WriterLimits::default(),
            recovery_threads: 2,
            retry_interval: Duration::from_secs(30),
        }
    }
}

/// One change in a collection's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum LogOp {
    /// These chunks were added.
    Add(Vec<u64>),
    /// These chunks were deleted.
    Delete(Vec<u64>),
}

/// An open collection: its record, trees and derived indexes.
pub(crate) struct Coll {
    /// The collection record.
    pub meta: Collection,
    /// Documents by id.
    pub docs: Tree,
    /// Chunk records by key.
    pub chunks: Tree,
    /// (document id, 0, chunk key) → ().
    pub doc_chunks: Tree,
    /// Sequence number → [`LogOp`].
    pub log: Tree,
    /// Directory of the derived indexes.
    pub dir: PathBuf,
    /// The derived indexes and their state.
    pub idx: RwLock<Indexes>,
}

impl Coll {
    pub(crate) fn vector_path(&self) -> PathBuf {
        self.dir.join("vectors.hnsw")
    }
    pub(crate) fn keyword_dir(&self) -> PathBuf {
        self.dir.join("keyword")
    }
    pub(crate) fn indexes(&self) -> std::sync::RwLockReadGuard<'_, Indexes> {
        self.idx.read().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn indexes_mut(&self) -> std::sync::RwLockWriteGuard<'_, Indexes> {
        self.idx.write().unwrap_or_else(|p| p.into_inner())
    }
    /// Reads one chunk.
    pub(crate) fn chunk(&self, key: u64) -> Result<Option<Chunk>> {
        self.chunks.get(key.to_be_bytes())?.map(|v| decode_chunk(key, &v)).transpose()
    }
    /// Reads one document.
    pub(crate) fn document(&self, id: &str) -> Result<Option<Document>> {
        self.docs.get(id.as_bytes())?.map(|v| serde_json::from_slice(&v).map_err(StoreError::from)).transpose()
    }
}

/// Shared state behind [`Store`].
pub(crate) struct Inner {
    /// The sled database.
    pub db: sled::Db,
    /// The configuration.
    pub config: StoreConfig,
    /// Collection records.
    pub collections_tree: Tree,
    /// Collection id → highest trimmed log sequence.
    pub log_floor: Tree,
    /// Serialises writes.
    pub writer: Mutex<()>,
    /// Open collections.
    pub colls: RwLock<HashMap<String, Arc<Coll>>>,
    /// Recovery work and the threads doing it.
    pub recovery: Mutex<RecoveryQueue>,
    /// Set on drop: recovery threads stop early.
    pub closing: AtomicBool,
    /// The tantivy writers of every collection.
    pub writers: Arc<WriterPool>,
    /// The free-space reserve for new content.
    pub space: SpaceGuard,
}

/// The embedded store. Cheap to share behind an `Arc`; every method is synchronous.
///
/// Dropping it stops recovery threads, saves the indexes, closes sled and returns once sled's
/// file lock is free, so the same data directory can be opened again at once.
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    /// The upkeep thread; stopped first when the store is dropped.
    upkeep: Option<crate::upkeep::Upkeep>,
    /// Declared after `inner`: fields drop in order, so this waits only after sled's handles
    /// (all inside `inner`) are gone.
    _lock_released: SledLockRelease,
}

/// How long dropping a store waits for sled's I/O threads to let go of the database file.
const LOCK_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Waits, when dropped, until sled's exclusive lock on its database file is released.
///
/// sled takes a `flock` on `sled/db` at open and releases it when the file is closed. Dropping
/// the last sled handle flushes and returns, but an asynchronous log write or file truncation
/// on sled's shared I/O thread pool may still hold the file (through its own reference to the
/// configuration) for a few milliseconds; opening the store again in that window fails with
/// `WouldBlock` (measured: 12 of 450 drops under load left the lock held for 0.3–7.6 ms). A
/// `flock` belongs to an open file description, so a second descriptor of the same file can
/// probe it: once it can take the lock, sled has closed the file.
struct SledLockRelease {
    /// `<data dir>/sled/db`.
    file: PathBuf,
}

impl Drop for SledLockRelease {
    fn drop(&mut self) {
        use fs4::fs_std::FileExt;
        let Ok(file) = std::fs::File::open(&self.file) else { return };
        let deadline = Instant::now() + LOCK_RELEASE_WAIT;
        loop {
            match file.try_lock_exclusive() {
                // Closing `file` releases the probe's own lock.
                Ok(true) => return,
                Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
                Ok(false) => {
                    tracing::warn!(file = %self.file.display(), "sled still holds its lock after the store was dropped.");
                    return;
                }
                Err(e) => {
                    tracing::warn!(file = %self.file.display(), error = %e, "Could not check that sled released its lock.");
                    return;
                }
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.config.path).finish()
    }
}

fn u64_key(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

fn doc_chunk_key(doc: &str, key: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(doc.len() + 9);
    k.extend_from_slice(doc.as_bytes());
    k.push(0);
    k.extend_from_slice(&key.to_be_bytes());
    k
}

fn doc_prefix(doc: &str) -> Vec<u8> {
    let mut k = doc.as_bytes().to_vec();
    k.push(0);
    k
}

impl Inner {
    pub(crate) fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn coll(&self, id: &str) -> Result<Arc<Coll>> {
        let colls = self.colls.read().unwrap_or_else(|p| p.into_inner());
        colls.get(id).cloned().ok_or_else(|| StoreError::CollectionNotFound(id.to_string()))
    }

    pub(crate) fn floor(&self, id: &str) -> Result<u64> {
        Ok(self.log_floor.get(id.as_bytes())?.and_then(|v| u64_key(&v)).unwrap_or(0))
    }

    fn open_coll(&self, meta: Collection) -> Result<Coll> {
        let t = |suffix: &str| self.db.open_tree(format!("c/{}/{suffix}", meta.id));
        let dir = self.config.path.join("indexes").join(&meta.id);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            // A full disk must not stop the store from opening: recovery fails and is retried.
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot create the index directory.");
        }
        crate::vector::remove_stale_temp_files(&dir);
        crate::vector::remove_stale_temp_files(&dir.join("keyword"));
        Ok(Coll { docs: t("docs")?, chunks: t("chunks")?, doc_chunks: t("doc_chunks")?, log: t("log")?, dir, meta, idx: RwLock::new(Indexes::starting()) })
    }
}

impl Store {
    /// Opens (or creates) the store. Derived indexes that are behind, missing or damaged are
    /// recovered on background threads; [`Store::status`] reports them until they are ready.
    pub fn open(config: StoreConfig) -> Result<Store> {
        let root = &config.path;
        std::fs::create_dir_all(root).map_err(|e| StoreError::io(format!("creating {}", root.display()), e))?;
        let db = sled::Config::new().path(root.join("sled")).cache_capacity(config.cache_bytes).open()?;
        let meta = db.open_tree("meta")?;
        match meta.get(FORMAT_KEY)? {
            Some(v) => {
                let found = v.as_ref().try_into().map(u32::from_be_bytes).map_err(|_| StoreError::Corrupt {
                    tree: "meta".into(),
                    detail: "format_version is not 4 bytes".into(),
                })?;
                if found > STORE_FORMAT_VERSION {
                    return Err(StoreError::UnsupportedFormat { path: root.clone(), found, supported: STORE_FORMAT_VERSION });
                }
            }
            None => {
                meta.insert(FORMAT_KEY, &STORE_FORMAT_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        let (config_writers, config_reserve) = (config.writers, config.min_free_bytes);
        let root = root.clone();
        let inner = Arc::new(Inner {
            collections_tree: db.open_tree("collections")?,
            log_floor: db.open_tree("log_floor")?,
            db,
            config,
            writer: Mutex::new(()),
            colls: RwLock::new(HashMap::new()),
            recovery: Mutex::new(RecoveryQueue::default()),
            closing: AtomicBool::new(false),
            writers: WriterPool::new(config_writers),
            space: SpaceGuard::new(root.clone(), config_reserve),
        });
        let mut opened = Vec::new();
        for item in inner.collections_tree.iter() {
            let (_, v) = item?;
            let meta: Collection = serde_json::from_slice(&v)?;
            let coll = Arc::new(inner.open_coll(meta)?);
            inner.colls.write().unwrap_or_else(|p| p.into_inner()).insert(coll.meta.id.clone(), coll.clone());
            opened.push(coll);
        }
        for coll in opened {
            crate::recovery::start(&inner, coll)?;
        }
        let lock_file = inner.config.path.join("sled").join("db");
        let upkeep = crate::upkeep::Upkeep::start(&inner);
        Ok(Store { inner, upkeep, _lock_released: SledLockRelease { file: lock_file } })
    }

    /// Creates a collection with empty, ready indexes.
    pub fn create_collection(&self, new: NewCollection) -> Result<Collection> {
        if new.dimension == 0 {
            return Err(StoreError::Invalid("dimension must be positive".into()));
        }
        if new.index.connectivity < 2 || new.index.expansion_add == 0 || new.index.expansion_search == 0 {
            return Err(StoreError::Invalid("connectivity must be at least 2 and expansions positive".into()));
        }
        let meta = Collection {
            id: format!("vs_{}", uuid::Uuid::new_v4().simple()),
            name: new.name,
            embedding_model: new.embedding_model,
            dimension: new.dimension,
            metadata: new.metadata,
            index: new.index,
            created_at: now_secs(),
        };
        let _w = self.inner.lock_writer();
        let limit = self.inner.config.max_collections;
        if self.inner.colls.read().unwrap_or_else(|p| p.into_inner()).len() >= limit {
            return Err(StoreError::CollectionLimit { limit });
        }
        let coll = self.inner.open_coll(meta.clone())?;
        let vector = VectorIndex::new(meta.dimension, &meta.index, self.inner.config.search_threads)?;
        let keyword = KeywordIndex::create(&coll.keyword_dir(), &self.inner.writers)?;
        *coll.indexes_mut() = Indexes::ready(Arc::new(vector), Arc::new(keyword), 0);
        self.inner.collections_tree.insert(meta.id.as_bytes(), serde_json::to_vec(&meta)?)?;
        self.inner.db.flush()?;
        self.inner.colls.write().unwrap_or_else(|p| p.into_inner()).insert(meta.id.clone(), Arc::new(coll));
        tracing::info!(collection = %meta.id, name = %meta.name, "Vector store created.");
        Ok(meta)
    }

    /// One collection. (Its record is read from sled: the name and metadata can change, see
    /// [`Store::update_collection`]; the open collection keeps the parts that cannot.)
    pub fn collection(&self, id: &str) -> Result<Collection> {
        let coll = self.inner.coll(id)?;
        match self.inner.collections_tree.get(id.as_bytes())? {
            Some(v) => Ok(serde_json::from_slice(&v)?),
            None => Ok(coll.meta.clone()),
        }
    }

    /// All collections, oldest first.
    pub fn collections(&self) -> Vec<Collection> {
        let ids: Vec<String> = self.inner.colls.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        let mut all: Vec<Collection> = ids.iter().filter_map(|id| self.collection(id).ok()).collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    /// Renames a collection or replaces its metadata; flushed before returning.
    pub fn update_collection(&self, id: &str, name: Option<String>, metadata: Option<Attributes>) -> Result<Collection> {
        let _w = self.inner.lock_writer();
        let mut meta = self.collection(id)?;
        if let Some(name) = name {
            meta.name = name;
        }
        if let Some(metadata) = metadata {
            meta.metadata = metadata;
        }
        self.inner.collections_tree.insert(id.as_bytes(), serde_json::to_vec(&meta)?)?;
        self.inner.db.flush()?;
        Ok(meta)
    }

    /// Deletes a collection, its documents, chunks and indexes.
    pub fn delete_collection(&self, id: &str) -> Result<()> {
        let _w = self.inner.lock_writer();
        let coll = self.inner.coll(id)?;
        self.inner.collections_tree.remove(id.as_bytes())?;
        self.inner.log_floor.remove(id.as_bytes())?;
        self.inner.db.flush()?;
        self.inner.colls.write().unwrap_or_else(|p| p.into_inner()).remove(id);
        *coll.indexes_mut() = Indexes::starting();
        for suffix in ["docs", "chunks", "doc_chunks", "log"] {
            self.inner.db.drop_tree(format!("c/{id}/{suffix}"))?;
        }
        if let Err(e) = std::fs::remove_dir_all(&coll.dir) {
            tracing::warn!(collection = %id, error = %e, "Could not remove the index directory.");
        }
        Ok(())
    }

    /// Adds a document and its chunks atomically; returns the stored document.
    /// Acknowledged (returns) only after sled has flushed.
    pub fn add_document(&self, collection: &str, new: NewDocument, chunks: Vec<NewChunk>) -> Result<Document> {
        let coll = self.inner.coll(collection)?;
        for c in &chunks {
            validate_embedding(&c.embedding, coll.meta.dimension)?;
        }
        let doc = Document {
            id: new.id.unwrap_or_else(|| format!("file-{}", uuid::Uuid::new_v4().simple())),
            name: new.name,
            content_hash: new.content_hash,
            size: new.size,
            attributes: new.attributes,
            status: new.status,
            last_error: None,
            last_error_code: None,
            chunk_count: chunks.len() as u64,
            created_at: now_secs(),
        };
        if doc.id.is_empty() || doc.id.contains('\0') {
            return Err(StoreError::Invalid("a file id must be non-empty and free of NUL".into()));
        }
        self.inner.space.check(bytes_needed(&chunks))?;
        let _w = self.inner.lock_writer();
        if coll.docs.contains_key(doc.id.as_bytes())? {
            return Err(StoreError::DocumentExists { collection: collection.into(), document: doc.id });
        }
        self.write_chunks(&coll, &doc, &chunks)?;
        tracing::debug!(collection = %collection, document = %doc.id, chunks = chunks.len(), "Document stored.");
        Ok(doc)
    }

    /// Appends chunks to an existing document (ingestion: create it `InProgress`, add its chunks
    /// batch by batch, then set it `Completed`); atomic per call, acknowledged after the flush.
    pub fn add_chunks(&self, collection: &str, document: &str, chunks: Vec<NewChunk>) -> Result<Document> {
        let coll = self.inner.coll(collection)?;
        for c in &chunks {
            validate_embedding(&c.embedding, coll.meta.dimension)?;
        }
        self.inner.space.check(bytes_needed(&chunks))?;
        let _w = self.inner.lock_writer();
        let mut doc = coll
            .document(document)?
            .ok_or_else(|| StoreError::DocumentNotFound { collection: collection.into(), document: document.into() })?;
        doc.chunk_count += chunks.len() as u64;
        self.write_chunks(&coll, &doc, &chunks)?;
        Ok(doc)
    }

    /// Writes `doc` and `chunks` with a log entry in one transaction, flushes, then updates the
    /// indexes. The caller holds the writer lock.
    fn write_chunks(&self, coll: &Arc<Coll>, doc: &Document, chunks: &[NewChunk]) -> Result<()> {
        let mut rows = Vec::with_capacity(chunks.len());
        for c in chunks {
            let key = self.inner.db.generate_id()?;
            let meta = ChunkMeta {
                document_id: doc.id.clone(),
                text: c.text.clone(),
                page: c.page,
                char_start: c.char_start,
                char_end: c.char_end,
                attributes: c.attributes.clone(),
            };
            rows.push((key, encode_chunk(&meta, &c.embedding)?));
        }
        let keys: Vec<u64> = rows.iter().map(|r| r.0).collect();
        let seq = self.inner.db.generate_id()?;
        let log_entry = serde_json::to_vec(&LogOp::Add(keys.clone()))?;
        let doc_bytes = serde_json::to_vec(doc)?;
        (&coll.docs, &coll.chunks, &coll.doc_chunks, &coll.log).transaction(|(docs, chunk_tree, doc_chunks, log)| {
            docs.insert(doc.id.as_bytes(), doc_bytes.as_slice())?;
            for (key, bytes) in &rows {
                chunk_tree.insert(&key.to_be_bytes(), bytes.as_slice())?;
                doc_chunks.insert(doc_chunk_key(&doc.id, *key), &[])?;
            }
            log.insert(&seq.to_be_bytes(), log_entry.as_slice())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        self.inner.db.flush()?;
        let items: Vec<(u64, &[f32], &str)> =
            keys.iter().zip(chunks).map(|(k, c)| (*k, c.embedding.as_slice(), c.text.as_str())).collect();
        crate::recovery::apply_add(&self.inner, coll, seq, &items);
        Ok(())
    }

    /// Deletes a document and its chunks from sled and from every index.
    pub fn delete_document(&self, collection: &str, document: &str) -> Result<()> {
        let coll = self.inner.coll(collection)?;
        let _w = self.inner.lock_writer();
        if !coll.docs.contains_key(document.as_bytes())? {
            return Err(StoreError::DocumentNotFound { collection: collection.into(), document: document.into() });
        }
        let keys = self.chunk_keys_of(&coll, document)?;
        let seq = self.inner.db.generate_id()?;
        let log_entry = serde_json::to_vec(&LogOp::Delete(keys.clone()))?;
        (&coll.docs, &coll.chunks, &coll.doc_chunks, &coll.log).transaction(|(docs, chunk_tree, doc_chunks, log)| {
            docs.remove(document.as_bytes())?;
            for key in &keys {
                chunk_tree.remove(&key.to_be_bytes())?;
                doc_chunks.remove(doc_chunk_key(document, *key))?;
            }
            log.insert(&seq.to_be_bytes(), log_entry.as_slice())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        self.inner.db.flush()?;
        crate::recovery::apply_delete(&self.inner, &coll, seq, &keys);
        Ok(())
    }

    fn chunk_keys_of(&self, coll: &Coll, document: &str) -> Result<Vec<u64>> {
        let prefix = doc_prefix(document);
        coll.doc_chunks
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k?;
                u64_key(&k[prefix.len()..]).ok_or_else(|| StoreError::Corrupt { tree: "doc_chunks".into(), detail: "bad key".into() })
            })
            .collect()
    }

    /// Sets a document's status (and error message); flushed before returning.
    pub fn set_document_status(&self, collection: &str, document: &str, status: DocumentStatus, last_error: Option<String>) -> Result<Document> {
        self.modify_document(collection, document, |doc| {
            doc.status = status;
            doc.last_error = last_error;
            doc.last_error_code = None;
        })
    }

    /// Marks a document `failed` with the caller's stable `code` for the reason and a `message`
    /// for people (`last_error_code`, `last_error`); flushed before returning.
    pub fn set_document_failed(&self, collection: &str, document: &str, code: &str, message: String) -> Result<Document> {
        self.modify_document(collection, document, |doc| {
            doc.status = DocumentStatus::Failed;
            doc.last_error = Some(message);
            doc.last_error_code = Some(code.to_owned());
        })
    }

    /// Renames a document or replaces its attributes (a renamed file keeps its chunks; OpenAI's
    /// "update vector store file attributes"); flushed before returning.
    pub fn update_document(&self, collection: &str, document: &str, name: Option<String>, attributes: Option<Attributes>) -> Result<Document> {
        self.modify_document(collection, document, |doc| {
            if let Some(name) = name {
                doc.name = name;
            }
            if let Some(attributes) = attributes {
                doc.attributes = attributes;
            }
        })
    }

    /// Read-modify-write of one document record under the writer lock.
    fn modify_document(&self, collection: &str, document: &str, change: impl FnOnce(&mut Document)) -> Result<Document> {
        let coll = self.inner.coll(collection)?;
        let _w = self.inner.lock_writer();
        let mut doc = coll
            .document(document)?
            .ok_or_else(|| StoreError::DocumentNotFound { collection: collection.into(), document: document.into() })?;
        change(&mut doc);
        coll.docs.insert(document.as_bytes(), serde_json::to_vec(&doc)?)?;
        self.inner.db.flush()?;
        Ok(doc)
    }

    /// One document.
    pub fn document(&self, collection: &str, document: &str) -> Result<Document> {
        self.inner
            .coll(collection)?
            .document(document)?
            .ok_or_else(|| StoreError::DocumentNotFound { collection: collection.into(), document: document.into() })
    }

    /// All documents of a collection, by id.
    pub fn documents(&self, collection: &str) -> Result<Vec<Document>> {
        let coll = self.inner.coll(collection)?;
        coll.docs.iter().values().map(|v| Ok(serde_json::from_slice(&v?)?)).collect()
    }

    /// The document with this content hash, if any (a renamed file is not re-ingested).
    pub fn find_by_hash(&self, collection: &str, content_hash: &str) -> Result<Option<Document>> {
        Ok(self.documents(collection)?.into_iter().find(|d| d.content_hash == content_hash))
    }

    /// A document's chunks, in insertion order.
    pub fn chunks(&self, collection: &str, document: &str) -> Result<Vec<Chunk>> {
        let coll = self.inner.coll(collection)?;
        let keys = self.chunk_keys_of(&coll, document)?;
        keys.into_iter().filter_map(|k| coll.chunk(k).transpose()).collect()
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.config.path
    }

    /// The free-space reserve the store keeps for new content (uploads elsewhere on the same
    /// disk may share it).
    pub fn space(&self) -> &SpaceGuard {
        &self.inner.space
    }

    /// Tantivy writers open now (at most `writers.max_open` of the configuration).
    pub fn open_writers(&self) -> usize {
        self.inner.writers.open_writers()
    }

    /// Bytes the store occupies on disk (sled plus indexes).
    pub fn disk_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| match e.metadata() {
                            Ok(m) if m.is_dir() => walk(&e.path()),
                            Ok(m) => m.len(),
                            Err(_) => 0,
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.inner.config.path)
    }
}

/// What a write of `chunks` may take on disk: twice their text, embeddings and records (sled
/// keeps old versions of pages until it compacts them), plus the indexes' share; 4 KiB at least.
fn bytes_needed(chunks: &[NewChunk]) -> u64 {
    let raw: usize = chunks.iter().map(|c| c.text.len() * 2 + c.embedding.len() * 4 + 256).sum();
    (raw as u64).saturating_mul(2).max(4096)
}

impl Drop for Store {
    fn drop(&mut self) {
        drop(self.upkeep.take());
        crate::recovery::shutdown(&self.inner);
        if Arc::strong_count(&self.inner) > 1 {
            // Recovery threads are joined above and nothing else keeps the shared state.
            tracing::warn!(path = %self.inner.config.path.display(), "The store's state outlives the store; sled closes when it is released.");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn future_format_version_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(StoreConfig::new(dir.path())).unwrap());
        {
            let db = sled::open(dir.path().join("sled")).unwrap();
            db.open_tree("meta").unwrap().insert(FORMAT_KEY, &99u32.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(StoreConfig::new(dir.path())).unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedFormat { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("99"));
    }

    #[test]
    fn doc_chunk_keys_do_not_collide_across_prefixes() {
        assert!(!doc_chunk_key("ab", 1).starts_with(&doc_prefix("a")));
        assert!(doc_chunk_key("a", 1).starts_with(&doc_prefix("a")));
    }

    #[test]
    fn store_can_be_shared_across_threads() {
        fn assert_shared<T: Send + Sync>() {}
        assert_shared::<Store>();
    }

    #[test]
    fn dropping_the_lock_guard_waits_for_the_lock_to_be_released() {
        use fs4::fs_std::FileExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // Stands in for sled's I/O thread: holds the lock a while after the store is gone.
        let held = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).unwrap();
        assert!(held.try_lock_exclusive().unwrap());
        let released = Arc::new(AtomicBool::new(false));
        let flag = released.clone();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            flag.store(true, Ordering::SeqCst);
            drop(held);
        });
        let started = Instant::now();
        drop(SledLockRelease { file: path.clone() });
        assert!(released.load(Ordering::SeqCst), "returned after {:?} while the lock was still held", started.elapsed());
        holder.join().unwrap();
        let probe = std::fs::File::open(&path).unwrap();
        assert!(probe.try_lock_exclusive().unwrap(), "the guard must not keep the lock itself");
    }

    #[test]
    fn log_ops_round_trip() {
        let op = LogOp::Delete(vec![1, 2]);
        let back: LogOp = serde_json::from_slice(&serde_json::to_vec(&op).unwrap()).unwrap();
        assert_eq!(op, back);
    }
}
