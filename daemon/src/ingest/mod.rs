//! Ingestion: files become chunks with embeddings in a vector store.
//!
//! Design: attaching a file to a vector store (through the API, a file batch or a watched folder)
//! stores the document as `in_progress` and writes a job to the durable [`queue`]; it answers
//! at once. `ingest.workers` tasks take jobs in order and run the [`pipeline`] (parse in a
//! sandboxed child process, chunk, embed, store); the outcome lands on the document
//! (`completed`, or `failed` with the reason) before the job is removed, so a restart resumes
//! whatever was unfinished. The [`watch`]ed folders feed the same path.
//!
//! Transient is not permanent: a step that fails for a reason that passes (a full queue, an
//! upstream 503, a parse worker that could not start, a full disk) is retried with backoff
//! ([`retry`]); only the file's own problems fail a document at once. The API cannot take all of
//! an embedding model's admission: `ingest.workers` slots are kept for ingestion ([`admission`]).
//! A failed or cancelled document attached again starts over.

mod confinement;
pub mod admission;
pub mod pipeline;
pub mod queue;
pub mod retry;
pub mod watch;

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::ModelKind;
use store::{Attributes, Document, DocumentStatus, NewDocument, Store, StoreError};

use crate::config::{IngestSettings, LimitSettings};
use crate::error::ApiError;
use crate::files::{FileRecord, FileRegistry};
use crate::metrics::Metrics;
use crate::provider::{Backend, EmbedInput};
use queue::{Job, JobQueue, QueueError};

/// Where a running job is, for the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The parser child is reading the file.
    Parsing,
    /// Chunks embedded and stored so far, of all the file's chunks.
    Embedding { done: usize, total: usize },
}

/// (vector store id, file id)
type JobKey = (String, String);

/// The ingestion service; one per process, shared behind an `Arc`.
#[derive(Debug)]
pub struct Ingestor {
    store: Arc<Store>,
    files: FileRegistry,
    queue: JobQueue,
    sandbox: ingest::Sandbox,
    settings: IngestSettings,
    /// The vector index a new vector store gets (`[store]`).
    index: store::VectorIndexConfig,
    state_dir: std::path::PathBuf,
    embedders: Vec<Backend>,
    metrics: Metrics,
    progress: Mutex<HashMap<JobKey, Progress>>,
    /// `[limits]`, for the searches that go through here.
    limits: LimitSettings,
    /// The API's share of each embedding model's admission; the rest is ingestion's.
    api_admission: admission::ApiAdmission,
}

impl Ingestor {
    /// Opens the queue (jobs from an earlier run stay queued), re-queues documents a crash left
    /// `in_progress` without a job, and starts the workers on the current runtime.
    pub fn start(
        store: Arc<Store>,
        files: FileRegistry,
        settings: &crate::config::Settings,
        engines: &[Backend],
        metrics: Metrics,
    ) -> anyhow::Result<Arc<Ingestor>> {
        let ingest = settings.ingest.clone();
        let queue = JobQueue::open(settings.server.state_dir.join("ingest").join("queue"), ingest.max_pending)?;
        // /proc/self/exe still runs this build after a package upgrade replaced the file on disk.
        let program = match std::path::PathBuf::from("/proc/self/exe") {
            p if p.exists() => p,
            _ => std::env::current_exe()?,
        };
        let limits = ingest::Limits {
            memory_bytes: ingest.parse_memory_mb << 20,
            cpu_seconds: ingest.parse_cpu_seconds,
            wall: Duration::from_secs(ingest.parse_timeout_seconds),
            ..ingest::Limits::default()
        };
        let engines = ingest::EngineOptions { ocr_languages: ingest.ocr_languages.clone(), ocr_seconds: ingest.ocr_seconds, pdfium_library: None };
        let sandbox = ingest::Sandbox::new(program, vec![OsString::from("parse-worker")], limits).with_engines(engines);
        let embedders = engines.iter().filter(|e| e.kind() == ModelKind::Embedding).cloned().collect();
        let ingestor = Arc::new(Ingestor {
            store,
            files,
            queue,
            sandbox,
            settings: ingest,
            index: settings.store.index(),
            state_dir: settings.server.state_dir.clone(),
            embedders,
            metrics,
            progress: Mutex::new(HashMap::new()),
            limits: settings.limits.clone(),
            api_admission: admission::ApiAdmission::new(&settings.models, settings.ingest.workers.max(1)),
        });
        // One line in the log says how confined the parse worker is (it does not delay start-up).
        actix_web::rt::spawn(confinement::check(ingestor.sandbox.clone(), ingestor.state_dir.clone()));
        ingestor.requeue_orphans()?;
        let pending = ingestor.queue.len();
        if pending > 0 {
            tracing::info!(pending, "Resuming {pending} queued ingestion job(s).");
        }
        ingestor.metrics.set_ingest_queue(pending);
        for _ in 0..ingestor.settings.workers {
            let worker = ingestor.clone();
            actix_web::rt::spawn(async move { worker.work().await });
        }
        Ok(ingestor)
    }

    /// Documents left `in_progress` with no job (a crash between storing one and queueing its job).
    fn requeue_orphans(&self) -> anyhow::Result<()> {
        for collection in self.store.collections() {
            for doc in self.store.documents(&collection.id)? {
                if doc.status == DocumentStatus::InProgress && !self.queue.contains(&collection.id, &doc.id) {
                    tracing::info!(vector_store = %collection.id, file = %doc.id, "Re-queueing an interrupted ingestion.");
                    self.queue.push(&self.default_job(&collection.id, &doc.id))?;
                }
            }
        }
        Ok(())
    }

    async fn work(&self) {
        loop {
            let claimed = self.queue.next().await;
            let job = &claimed.job;
            let started = std::time::Instant::now();
            let outcome = pipeline::run(self, job).await;
            match &outcome {
                pipeline::Outcome::Completed { chunks, pages } => {
                    tracing::info!(vector_store = %job.vector_store_id, file = %job.file_id, chunks, pages, elapsed_ms = started.elapsed().as_millis() as u64, "File ingested.");
                    self.metrics.ingested("completed", *pages, *chunks);
                }
                pipeline::Outcome::Failed(reason) => {
                    tracing::warn!(vector_store = %job.vector_store_id, file = %job.file_id, %reason, "File not ingested.");
                    self.metrics.ingested("failed", 0, 0);
                }
                pipeline::Outcome::Gone => tracing::info!(vector_store = %job.vector_store_id, file = %job.file_id, "File removed while it was being ingested."),
            }
            self.progress.lock().unwrap_or_else(|p| p.into_inner()).remove(&(job.vector_store_id.clone(), job.file_id.clone()));
            self.queue.finish(claimed);
            self.metrics.set_ingest_queue(self.queue.len());
        }
    }

    fn default_job(&self, vector_store_id: &str, file_id: &str) -> Job {
        Job {
            vector_store_id: vector_store_id.to_owned(),
            file_id: file_id.to_owned(),
            max_chunk_size_tokens: self.settings.max_chunk_size_tokens,
            chunk_overlap_tokens: self.settings.chunk_overlap_tokens,
        }
    }

    /// Attach a stored file to a vector store and queue its ingestion (blocking: fsyncs).
    /// Attaching a file that is already there returns it unchanged, unless its ingestion failed
    /// or was cancelled: then it starts over.
    pub fn attach(&self, vector_store_id: &str, file: &FileRecord, chunking: Option<ingest::ChunkingOptions>, attributes: Attributes) -> Result<Document, ApiError> {
        self.store.collection(vector_store_id).map_err(store_error)?;
        if let Ok(existing) = self.store.document(vector_store_id, &file.id) {
            let finished_badly = matches!(existing.status, DocumentStatus::Failed | DocumentStatus::Cancelled);
            if !finished_badly {
                return Ok(existing);
            }
            return match self.queue.job_state(vector_store_id, &file.id) {
                None => self.restart(vector_store_id, &file.id, chunking),
                // A job still waits (a restart came between its failure and its removal): it runs
                // the file again once the status says so.
                Some(false) => self.store.set_document_status(vector_store_id, &file.id, DocumentStatus::InProgress, None).map_err(store_error),
                // A worker has the job: a failure is stored as its last act (it is only being
                // removed), so a new job may follow; a cancelled one may still be winding down.
                Some(true) if existing.status == DocumentStatus::Failed => self.restart(vector_store_id, &file.id, chunking),
                Some(true) => Ok(existing),
            };
        }
        let new = NewDocument {
            id: Some(file.id.clone()),
            name: file.filename.clone(),
            content_hash: file.sha256.clone(),
            size: file.bytes,
            attributes,
            status: DocumentStatus::InProgress,
        };
        let doc = self.store.add_document(vector_store_id, new, Vec::new()).map_err(store_error)?;
        let mut job = self.default_job(vector_store_id, &file.id);
        if let Some(c) = chunking {
            job.max_chunk_size_tokens = c.max_chunk_size_tokens;
            job.chunk_overlap_tokens = c.chunk_overlap_tokens;
        }
        if let Err(e) = self.queue.push(&job) {
            let _ = self.store.delete_document(vector_store_id, &file.id);
            return Err(match e {
                QueueError::Full(_) => ApiError::Overloaded(e.to_string()),
                QueueError::Io(_) => ApiError::Internal(e.to_string()),
            });
        }
        self.metrics.set_ingest_queue(self.queue.len());
        Ok(doc)
    }

    /// Queue a failed or cancelled document again, `in_progress` until its new outcome.
    fn restart(&self, vector_store_id: &str, file_id: &str, chunking: Option<ingest::ChunkingOptions>) -> Result<Document, ApiError> {
        let doc = self.store.set_document_status(vector_store_id, file_id, DocumentStatus::InProgress, None).map_err(store_error)?;
        let mut job = self.default_job(vector_store_id, file_id);
        if let Some(c) = chunking {
            job.max_chunk_size_tokens = c.max_chunk_size_tokens;
            job.chunk_overlap_tokens = c.chunk_overlap_tokens;
        }
        if let Err(e) = self.queue.push(&job) {
            let reason = format!("could not be queued again: {e}");
            let _ = self.store.set_document_status(vector_store_id, file_id, DocumentStatus::Failed, Some(reason));
            return Err(match e {
                QueueError::Full(_) => ApiError::Overloaded(e.to_string()),
                QueueError::Io(_) => ApiError::Internal(e.to_string()),
            });
        }
        tracing::info!(vector_store = %vector_store_id, file = %file_id, "A failed file was attached again; ingesting it anew.");
        self.metrics.set_ingest_queue(self.queue.len());
        Ok(doc)
    }

    /// A permit for one API embedding request to `model` (`/v1/embeddings`, a search's
    /// question), within the API's share of the model's admission; a 429 when it is used up.
    pub fn api_embed_permit(&self, model: &str) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ApiError> {
        self.api_admission.permit(model)
    }

    /// `[limits]`.
    pub fn limits(&self) -> &LimitSettings {
        &self.limits
    }

    /// The embedding model named `model`.
    pub fn embedder(&self, model: &str) -> Result<Backend, String> {
        self.embedders
            .iter()
            .find(|e| e.name() == model)
            .cloned()
            .ok_or_else(|| format!("the vector store's embedding model `{model}` is not served by this configuration"))
    }

    /// The embedding model new vector stores use: the first configured.
    pub fn default_embedder(&self) -> Option<&Backend> {
        self.embedders.first()
    }

    /// The width of `embedder`'s vectors: a local model knows it; a remote one is asked once.
    pub async fn dimension(embedder: &Backend) -> Result<usize, ApiError> {
        if let Some(engine) = embedder.as_local() {
            return Ok(engine.info().n_embd as usize);
        }
        let probe = embedder.embed(EmbedInput::Texts(vec!["dimension probe".into()]), None).await?;
        probe.vectors.first().map(Vec::len).filter(|&d| d > 0).ok_or_else(|| ApiError::Internal(format!("`{}` returned no embedding", embedder.name())))
    }

    /// Progress of a running job, if it is running.
    pub fn progress(&self, vector_store_id: &str, file_id: &str) -> Option<Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).get(&(vector_store_id.to_owned(), file_id.to_owned())).copied()
    }

    fn set_progress(&self, key: &JobKey, progress: Progress) {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), progress);
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The uploaded files.
    pub fn files(&self) -> &FileRegistry {
        &self.files
    }

    /// Files waiting or being ingested.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// The state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// `[ingest]`'s chunking, used when a request names none.
    /// The vector index configuration of a vector store created now.
    pub fn vector_index(&self) -> store::VectorIndexConfig {
        self.index
    }

    pub fn default_chunking(&self) -> ingest::ChunkingOptions {
        ingest::ChunkingOptions { max_chunk_size_tokens: self.settings.max_chunk_size_tokens, chunk_overlap_tokens: self.settings.chunk_overlap_tokens }
    }

    fn sandbox(&self) -> &ingest::Sandbox {
        &self.sandbox
    }

    fn embed_batch(&self) -> usize {
        self.settings.embed_batch
    }
}

/// The store's errors as API errors: the caller's mistakes are 4xx, an index rebuilding is 503.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::CollectionNotFound(_) | StoreError::DocumentNotFound { .. } => ApiError::ResourceNotFound(e.to_string()),
        StoreError::IndexNotReady { .. } => ApiError::Unavailable(e.to_string()),
        e if e.is_user_error() => ApiError::BadRequest { message: e.to_string(), param: None, code: "invalid_value" },
        e => ApiError::Internal(e.to_string()),
    }
}
