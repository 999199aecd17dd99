//! Shared application state: the settings, the metrics, and the models once they are loaded.
//!
//! The HTTP server starts before the models finish loading so that `/health` answers and `/ready`
//! can say 503; requests that need a model get 503 until then.

use std::sync::{Arc, OnceLock};

use crate::config::Settings;
use crate::error::ApiError;
use crate::ingest::Ingestor;
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
    ingest: OnceLock<Arc<Ingestor>>,
}

impl AppState {
    /// State with no models loaded yet.
    pub fn new(settings: Settings) -> Self {
        Self { inner: Arc::new(Inner { settings, metrics: Metrics::new(), models: OnceLock::new(), ingest: OnceLock::new() }) }
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

    /// The models, or 503 while they load.
    pub fn models(&self) -> Result<&Models, ApiError> {
        self.inner.models.get().ok_or_else(|| ApiError::Unavailable("models are still loading; retry shortly".into()))
    }

    /// Publish the ingestion service (files, vector stores, watched folders).
    pub fn set_ingest(&self, ingestor: Arc<Ingestor>) {
        let _ = self.inner.ingest.set(ingestor);
    }

    /// The ingestion service, or 503 while the models load.
    pub fn ingest(&self) -> Result<&Arc<Ingestor>, ApiError> {
        self.inner.ingest.get().ok_or_else(|| ApiError::Unavailable("the store is still opening; retry shortly".into()))
    }

    /// True once every model is loaded and the store is open.
    pub fn is_ready(&self) -> bool {
        self.inner.models.get().is_some() && self.inner.ingest.get().is_some()
    }
}
