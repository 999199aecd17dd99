//! Shared application state: the settings, the metrics, and — once loaded — the models, the
//! library (vector stores, files, embedders) and the ingestion service that writes into it.
//!
//! The HTTP server starts before the models finish loading so that `/health` answers and `/ready`
//! can say 503; requests that need a model get 503 until then.

use std::sync::{Arc, OnceLock};

use crate::config::Settings;
use crate::fault::ServiceError;
use crate::ingest::Ingestion;
use crate::library::Library;
use crate::metrics::Metrics;
use crate::models::Models;

/// Cheap to clone; one per process.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    metrics: Metrics,
    models: OnceLock<Models>,
    library: OnceLock<Arc<Library>>,
    ingestion: OnceLock<Arc<Ingestion>>,
}

impl AppState {
    /// State with no models loaded yet.
    pub fn new(settings: Settings) -> Self {
        Self { inner: Arc::new(Inner { settings, metrics: Metrics::new(), models: OnceLock::new(), library: OnceLock::new(), ingestion: OnceLock::new() }) }
    }

    /// The settings hearth started with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Publish the loaded models; hearth is ready from here on.
    pub fn set_models(&self, models: Models) {
        self.inner.metrics.attach_models(&models);
        let _ = self.inner.models.set(models);
    }

    /// The models, or `Unavailable` (a 503) while they load.
    pub fn models(&self) -> Result<&Models, ServiceError> {
        self.inner.models.get().ok_or_else(|| ServiceError::Unavailable("models are still loading; retry shortly".into()))
    }

    /// Publish the library: vector stores, files and search answer from here on.
    pub fn set_library(&self, library: Arc<Library>) {
        let _ = self.inner.library.set(library);
    }

    /// Publish the ingestion service (queue, workers, watched folders); hearth is ready once the
    /// models are loaded too.
    pub fn set_ingestion(&self, ingestion: Arc<Ingestion>) {
        let _ = self.inner.ingestion.set(ingestion);
    }

    /// The library (vector stores, files, embedders), or 503 while the store opens.
    pub fn library(&self) -> Result<&Arc<Library>, ServiceError> {
        self.inner.library.get().ok_or_else(|| ServiceError::Unavailable("the store is still opening; retry shortly".into()))
    }

    /// The ingestion service, or 503 while the store opens.
    pub fn ingestion(&self) -> Result<&Arc<Ingestion>, ServiceError> {
        self.inner.ingestion.get().ok_or_else(|| ServiceError::Unavailable("the store is still opening; retry shortly".into()))
    }

    /// True once every model is loaded and the store is open.
    pub fn is_ready(&self) -> bool {
        self.inner.models.get().is_some() && self.inner.ingestion.get().is_some()
    }
}
