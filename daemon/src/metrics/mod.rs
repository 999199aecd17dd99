//! hearth's metrics: one `prometheus-client` registry per process, scraped at `GET /metrics`.
//!
//! Design:
//! - **vLLM's names** (`vllm:*`, [`vllm`]) so existing vLLM dashboards work unchanged, labelled
//!   `model_name` and `provider` (`local`, or `remote` for a model served by an upstream). The
//!   engine's gauges and counters (running, waiting, KV use, prefix cache, preemptions) are read
//!   from `Backend::stats()` at scrape time by a collector, so the engine thread never touches
//!   the registry. Per-request series (tokens, TTFT, inter-token latency,
//!   end-to-end and queue time, finish reasons) are recorded by the service layer through a
//!   [`RequestTimer`], so handlers stay a few lines.
//! - **hearth's own series** are `hearth_*`: HTTP requests by route and status ([`http`]),
//!   ingestion (files by outcome, pages, chunks, parse failures by reason, queue; [`ingest`]), the
//!   store (documents by status, chunks, vector stores by index state, rebuilds, disk; [`store`],
//!   read at scrape time once the store is open), and GPU telemetry from NVML ([`gpu`]), present
//!   only where NVML loads. Each area owns its families and registers them (or a collector) in
//!   [`Metrics::new`].
//! - **Bounded cardinality**: every label value comes from configuration (model names, GPU
//!   indices) or a closed set (route patterns, status codes, finish reasons), never from a
//!   request's free text.
//! - **Two text formats**: the crate writes OpenMetrics, which Prometheus asks for. Clients that
//!   do not ask for it (curl, promtool, older agents) get the classic 0.0.4 format, derived from
//!   the same output by [`text::to_classic`] (it renames counter descriptors and drops `# EOF`).

pub mod gpu;
pub mod http;
pub mod ingest;
pub mod store;
pub mod text;
pub mod vllm;

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::models::Models;

pub use http::track_http;
pub use vllm::RequestTimer;

/// Content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text exposition.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process's metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    http: http::HttpMetrics,
    ingest: ingest::IngestMetrics,
    models: vllm::ModelRegistry,
    store: store::StoreCollector,
}

/// An encoded scrape.
#[derive(Debug)]
pub struct Exposition {
    pub content_type: &'static str,
    pub body: String,
}

impl Metrics {
    /// Build the registry: HTTP, GPU (when NVML loads) and the per-model vLLM series, whose
    /// models are attached once they are loaded.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http = http::HttpMetrics::register(&mut registry);
        let ingest = ingest::IngestMetrics::register(&mut registry);
        let models = vllm::ModelRegistry::default();
        registry.register_collector(Box::new(models.clone()));
        let store = store::StoreCollector::default();
        registry.register_collector(Box::new(store.clone()));
        if let Some(gpus) = gpu::GpuCollector::open() {
            registry.register_collector(Box::new(gpus));
        }
        Self { inner: Arc::new(Inner { registry, http, ingest, models, store }) }
    }

    /// Start reporting the loaded models.
    pub fn attach_models(&self, models: &Models) {
        self.inner.models.attach(models);
    }

    /// Start reporting the opened store.
    pub fn attach_store(&self, store: Arc<::store::Store>) {
        self.inner.store.attach(store);
    }

    /// A timer for one generation on `model`, submitted with `prompt_tokens` tokens, for a
    /// request that arrived at `arrived`.
    pub fn generation(&self, model: &str, arrived: std::time::Instant, prompt_tokens: u32) -> RequestTimer {
        RequestTimer::new(self.inner.models.get(model), arrived, prompt_tokens)
    }

    /// Record a finished embeddings request.
    pub fn embedding(&self, model: &str, prompt_tokens: usize, elapsed: std::time::Duration) {
        if let Some(m) = self.inner.models.get(model) {
            m.record_embedding(prompt_tokens as u64, elapsed);
        }
    }

    /// Record a file whose ingestion finished (`completed` or `failed`).
    pub fn ingested(&self, status: &'static str, pages: usize, chunks: usize) {
        self.inner.ingest.finished(status, pages, chunks);
    }

    /// Record a file the sandboxed parser could not read, or whose format is unknown (`None`).
    pub fn parse_failed(&self, failure: Option<&::ingest::ParseFailure>) {
        self.inner.ingest.parse_failed(failure.map_or("unknown_format", ingest::parse_failure_reason));
    }

    /// Record the ingestion queue's length.
    pub fn set_ingest_queue(&self, files: usize) {
        self.inner.ingest.set_queue(files);
    }

    pub(crate) fn http(&self) -> &http::HttpMetrics {
        &self.inner.http
    }

    /// Encode a scrape in the format the `Accept` header prefers.
    pub fn encode(&self, accept: Option<&str>) -> Result<Exposition, std::fmt::Error> {
        let mut body = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut body, &self.inner.registry)?;
        if wants_openmetrics(accept) {
            Ok(Exposition { content_type: OPENMETRICS_CONTENT_TYPE, body })
        } else {
            Ok(Exposition { content_type: CLASSIC_CONTENT_TYPE, body: text::to_classic(&body) })
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// True when the client lists OpenMetrics in `Accept` (Prometheus does by default).
fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.split(',').any(|part| part.trim().starts_with("application/openmetrics-text")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_and_others_the_classic_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }

    #[test]
    fn a_registry_encodes_in_both_formats() {
        let metrics = Metrics::new();
        metrics.http().answered(Some("/health"), 200);
        let open = metrics.encode(Some("application/openmetrics-text")).unwrap_or_else(|e| panic!("{e}"));
        assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
        assert!(open.body.contains("# TYPE hearth_http_requests counter"), "{}", open.body);
        let classic = metrics.encode(None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!classic.body.contains("# EOF"), "{}", classic.body);
        assert!(classic.body.contains("# TYPE hearth_http_requests_total counter"), "{}", classic.body);
    }
}
