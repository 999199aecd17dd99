//! Store series, read from the store at scrape time (so the writer never touches the registry):
//!
//! - `hearth_store_documents{status}`: documents by ingestion status (`in_progress`, `completed`,
//!   `failed`, `cancelled`), counted from sled, the source of truth;
//! - `hearth_store_chunks`: chunks of those documents (sled), and `hearth_store_indexed_chunks`:
//!   vectors in the HNSW indexes (0 for a vector store whose index is not ready);
//! - `hearth_store_vector_stores{state}`: vector stores by index state (`ready`, `catching_up`,
//!   `rebuilding`, `failed`);
//! - `hearth_store_rebuilt_vector_stores`: vector stores whose derived indexes were rebuilt from
//!   sled since start-up (the store records the last reason per vector store, not every rebuild,
//!   so this is a gauge of vector stores, not a counter of events);
//! - `hearth_store_disk_bytes`: the store's size on disk, and `hearth_store_free_bytes`: the space
//!   left on its file system (uploads answer 507 once it falls to `[store] min_free_bytes`);
//! - `hearth_store_degraded_vector_stores`: vector stores serving while a failed keyword commit or
//!   index save is retried (a full disk, most often), and `hearth_store_open_index_writers`: the
//!   keyword index writers open now (each owns three threads; `[store]` bounds them).
//!
//! Counting documents reads every document record of every vector store: linear in the
//! documents, a few milliseconds for thousands, on the scrape's blocking thread. Every label
//! value is from a closed set; vector store ids never become labels.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use store::{DocumentStatus, IndexHealth, Store};

const DOCUMENT_STATUSES: [&str; 4] = ["in_progress", "completed", "failed", "cancelled"];
const INDEX_STATES: [&str; 4] = ["ready", "catching_up", "rebuilding", "failed"];

/// The store, once opened. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StoreCollector {
    store: Arc<OnceLock<Arc<Store>>>,
}

impl StoreCollector {
    /// Start reporting this store (once; later calls are ignored).
    pub fn attach(&self, store: Arc<Store>) {
        let _ = self.store.set(store);
    }
}

/// What one scrape reports.
#[derive(Debug, Default, PartialEq)]
struct Snapshot {
    /// Indexed like [`DOCUMENT_STATUSES`].
    documents: [u64; 4],
    chunks: u64,
    indexed_chunks: u64,
    /// Indexed like [`INDEX_STATES`].
    vector_stores: [u64; 4],
    rebuilt: u64,
    disk_bytes: u64,
    free_bytes: u64,
    degraded: u64,
    open_writers: u64,
}

fn status_index(status: &DocumentStatus) -> usize {
    match status {
        DocumentStatus::InProgress => 0,
        DocumentStatus::Completed => 1,
        DocumentStatus::Failed => 2,
        DocumentStatus::Cancelled => 3,
    }
}

fn state_index(health: &IndexHealth) -> usize {
    match health {
        IndexHealth::Ready => 0,
        IndexHealth::CatchingUp => 1,
        IndexHealth::Rebuilding { .. } => 2,
        IndexHealth::Failed { .. } => 3,
    }
}

fn snapshot(store: &Store) -> Snapshot {
    let mut s = Snapshot {
        disk_bytes: store.disk_bytes(),
        free_bytes: store.space().free_bytes().unwrap_or(0),
        open_writers: store.open_writers() as u64,
        ..Snapshot::default()
    };
    for collection in store.status().collections {
        s.vector_stores[state_index(&collection.health)] += 1;
        s.indexed_chunks += collection.indexed_chunks as u64;
        s.rebuilt += u64::from(collection.rebuilt_because.is_some());
        s.degraded += u64::from(collection.degraded.is_some());
        // A vector store deleted between the two reads has no documents left to count.
        for doc in store.documents(&collection.id).unwrap_or_default() {
            s.documents[status_index(&doc.status)] += 1;
            s.chunks += doc.chunk_count;
        }
    }
    s
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.store.get() else { return Ok(()) };
        let s = snapshot(store);
        let mut family = encoder.encode_descriptor("hearth_store_documents", "Documents in the store, by ingestion status.", None, MetricType::Gauge)?;
        for (status, n) in DOCUMENT_STATUSES.iter().zip(s.documents) {
            ConstGauge::new(n as i64).encode(family.encode_family(&[("status", *status)])?)?;
        }
        let mut family =
            encoder.encode_descriptor("hearth_store_vector_stores", "Vector stores, by the state of their derived indexes.", None, MetricType::Gauge)?;
        for (state, n) in INDEX_STATES.iter().zip(s.vector_stores) {
            ConstGauge::new(n as i64).encode(family.encode_family(&[("state", *state)])?)?;
        }
        let plain: [(&str, &str, u64); 7] = [
            ("hearth_store_chunks", "Chunks of the stored documents (sled, the source of truth).", s.chunks),
            ("hearth_store_indexed_chunks", "Vectors in the HNSW indexes of vector stores that are ready.", s.indexed_chunks),
            ("hearth_store_rebuilt_vector_stores", "Vector stores whose indexes were rebuilt from sled since start-up.", s.rebuilt),
            ("hearth_store_disk_bytes", "Bytes the store occupies on disk.", s.disk_bytes),
            ("hearth_store_free_bytes", "Bytes free on the store's file system.", s.free_bytes),
            ("hearth_store_degraded_vector_stores", "Vector stores serving while a failed index commit or save is retried.", s.degraded),
            ("hearth_store_open_index_writers", "Keyword index writers open now.", s.open_writers),
        ];
        for (name, help, value) in plain {
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{NewChunk, NewCollection, NewDocument, StoreConfig};

    fn collection(store: &Store) -> String {
        let new = NewCollection { name: "c".into(), embedding_model: "m".into(), dimension: 2, metadata: Default::default(), index: Default::default() };
        store.create_collection(new).unwrap_or_else(|e| panic!("{e}")).id
    }

    #[test]
    fn documents_chunks_and_vector_stores_are_counted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(StoreConfig::new(dir.path().join("store"))).unwrap_or_else(|e| panic!("{e}"));
        let c = collection(&store);
        let chunk = |t: &str| NewChunk { text: t.into(), embedding: vec![1.0, 0.0], page: None, char_start: 0, char_end: 1, attributes: Default::default() };
        let doc = |status| NewDocument { id: None, name: "d".into(), content_hash: "h".into(), size: 1, attributes: Default::default(), status };
        store.add_document(&c, doc(DocumentStatus::Completed), vec![chunk("a"), chunk("b")]).unwrap_or_else(|e| panic!("{e}"));
        store.add_document(&c, doc(DocumentStatus::Failed), Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        assert!(store.wait_ready(std::time::Duration::from_secs(10)));
        let s = snapshot(&store);
        assert_eq!(s.documents, [0, 1, 1, 0]);
        assert_eq!((s.chunks, s.indexed_chunks), (2, 2));
        assert_eq!(s.vector_stores, [1, 0, 0, 0]);
        assert_eq!(s.rebuilt, 0);
        assert!(s.disk_bytes > 0 && s.free_bytes > 0);
        assert_eq!(s.degraded, 0);
        assert!(s.open_writers >= 1, "the writes above opened a writer");

        let collector = StoreCollector::default();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(collector.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.contains("hearth_store_"), "no series before the store is attached: {out}");
        collector.attach(Arc::new(store));
        out.clear();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("hearth_store_documents{status=\"completed\"} 1\n"), "{out}");
        assert!(out.contains("hearth_store_chunks 2\n"), "{out}");
        assert!(out.contains("hearth_store_vector_stores{state=\"rebuilding\"} 0\n"), "{out}");
        assert!(out.contains("hearth_store_degraded_vector_stores 0\n") && out.contains("hearth_store_free_bytes "), "{out}");
    }
}
