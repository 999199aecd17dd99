//! Ingestion series: `hearth_ingest_files_total{status}` (files finished, `completed` or
//! `failed`), `hearth_ingest_pages_total` and `hearth_ingest_chunks_total` (what completed files
//! contributed), and the gauge `hearth_ingest_queue_files` (files waiting or being ingested).
//! `status` is a closed set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set of `hearth_ingest_files_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `completed` or `failed`.
    pub status: &'static str,
}

/// The ingestion families.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    files: Family<StatusLabel, Counter>,
    pages: Counter,
    chunks: Counter,
    queue: Gauge,
}

impl IngestMetrics {
    /// Create the families and register them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = IngestMetrics { files: Family::default(), pages: Counter::default(), chunks: Counter::default(), queue: Gauge::default() };
        registry.register("hearth_ingest_files", "Files whose ingestion finished, by outcome", m.files.clone());
        registry.register("hearth_ingest_pages", "Pages parsed from ingested files", m.pages.clone());
        registry.register("hearth_ingest_chunks", "Chunks embedded and stored from ingested files", m.chunks.clone());
        registry.register("hearth_ingest_queue_files", "Files waiting for or in ingestion", m.queue.clone());
        for status in ["completed", "failed"] {
            let _ = m.files.get_or_create(&StatusLabel { status });
        }
        m
    }

    /// One file finished.
    pub fn finished(&self, status: &'static str, pages: usize, chunks: usize) {
        self.files.get_or_create(&StatusLabel { status }).inc();
        self.pages.inc_by(pages as u64);
        self.chunks.inc_by(chunks as u64);
    }

    /// The queue's current length.
    pub fn set_queue(&self, files: usize) {
        self.queue.set(i64::try_from(files).unwrap_or(i64::MAX));
    }
}
