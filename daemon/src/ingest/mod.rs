//! Ingestion: files become chunks with embeddings in the library's vector stores.
//!
//! Design: attaching a file to a vector store (through the API, a file batch or a watched folder)
//! stores the document as `in_progress` and writes a job to the durable [`queue`]; it answers
//! at once. `ingest.workers` tasks take jobs in order and run the [`pipeline`] (parse in a
//! sandboxed child process, chunk, embed, store); the outcome lands on the document
//! (`completed`, or `failed` with the reason) before the job is removed, so a restart resumes
//! whatever was unfinished. The [`watch`]ed folders feed the same path.
//!
//! The service owns the work — queue, workers, sandbox, watched folders — and writes into the
//! [`Library`] (store, files, embedders), which it holds; the library never calls back into it.
//! Progress of a running job is published on the library, where the API reads it.
//!
//! Transient is not permanent: a step that fails for a reason that passes (a full queue, an
//! upstream 503, a parse worker that could not start, a full disk) is retried with backoff
//! ([`retry`]); only the file's own problems fail a document at once. The API cannot take all of
//! an embedding model's admission: `ingest.workers` slots are kept for ingestion
//! ([`crate::library::admission`]). A failed or cancelled document attached again starts over.

mod confinement;
pub mod pages;
pub mod pipeline;
pub mod queue;
pub mod retry;
pub mod watch;

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use store::{Attributes, Document, DocumentStatus, NewDocument};

use crate::config::IngestSettings;
use crate::fault::ServiceError;
use crate::files::FileRecord;
use crate::library::Library;
use crate::metrics::Metrics;
use queue::{Job, JobQueue, QueueError};

/// The ingestion service; one per process, shared behind an `Arc`.
#[derive(Debug)]
pub struct Ingestion {
    /// What it ingests into.
    library: Arc<Library>,
    queue: JobQueue,
    sandbox: ingest::Sandbox,
    /// Page images for the console's preview, by the same worker (`pages.rs`).
    pages: pages::PageRenderer,
    settings: IngestSettings,
    metrics: Metrics,
}

impl Ingestion {
    /// Opens the queue (jobs from an earlier run stay queued), re-queues documents a crash left
    /// `in_progress` without a job, and starts the workers on the current runtime.
    pub fn start(library: Arc<Library>, settings: &crate::config::Settings, metrics: Metrics) -> anyhow::Result<Arc<Ingestion>> {
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
        let pages = pages::PageRenderer::new(sandbox.clone());
        let ingestion = Arc::new(Ingestion { library, queue, sandbox, pages, settings: ingest, metrics });
        // One line in the log says how confined the parse worker is (it does not delay start-up).
        actix_web::rt::spawn(confinement::check(ingestion.sandbox.clone(), settings.server.state_dir.clone()));
        ingestion.requeue_orphans()?;
        let pending = ingestion.queue.len();
        if pending > 0 {
            tracing::info!(pending, "Resuming {pending} queued ingestion job(s).");
        }
        ingestion.metrics.set_ingest_queue(pending);
        for _ in 0..ingestion.settings.workers {
            let worker = ingestion.clone();
            actix_web::rt::spawn(async move { worker.work().await });
        }
        Ok(ingestion)
    }

    /// The library it ingests into.
    pub fn library(&self) -> &Arc<Library> {
        &self.library
    }

    /// Documents left `in_progress` with no job (a crash between storing one and queueing its job).
    fn requeue_orphans(&self) -> anyhow::Result<()> {
        let store = self.library.store();
        for collection in store.collections() {
            for doc in store.documents(&collection.id)? {
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
            self.library.clear_progress(&job.vector_store_id, &job.file_id);
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
    pub fn attach(&self, vector_store_id: &str, file: &FileRecord, chunking: Option<ingest::ChunkingOptions>, attributes: Attributes) -> Result<Document, ServiceError> {
        self.library.store().collection(vector_store_id)?;
        if let Ok(existing) = self.library.store().document(vector_store_id, &file.id) {
            let finished_badly = matches!(existing.status, DocumentStatus::Failed | DocumentStatus::Cancelled);
            if !finished_badly {
                return Ok(existing);
            }
            return match self.queue.job_state(vector_store_id, &file.id) {
                None => self.restart(vector_store_id, &file.id, chunking),
                // A job still waits (a restart came between its failure and its removal): it runs
                // the file again once the status says so.
                Some(false) => self.library.store().set_document_status(vector_store_id, &file.id, DocumentStatus::InProgress, None).map_err(ServiceError::from),
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
        let doc = self.library.store().add_document(vector_store_id, new, Vec::new())?;
        let mut job = self.default_job(vector_store_id, &file.id);
        if let Some(c) = chunking {
            job.max_chunk_size_tokens = c.max_chunk_size_tokens;
            job.chunk_overlap_tokens = c.chunk_overlap_tokens;
        }
        if let Err(e) = self.queue.push(&job) {
            let _ = self.library.store().delete_document(vector_store_id, &file.id);
            return Err(match e {
                QueueError::Full(_) => ServiceError::Busy(e.to_string()),
                QueueError::Io(_) => ServiceError::Internal(e.to_string()),
            });
        }
        self.metrics.set_ingest_queue(self.queue.len());
        Ok(doc)
    }

    /// Queue a failed or cancelled document again, `in_progress` until its new outcome.
    fn restart(&self, vector_store_id: &str, file_id: &str, chunking: Option<ingest::ChunkingOptions>) -> Result<Document, ServiceError> {
        let doc = self.library.store().set_document_status(vector_store_id, file_id, DocumentStatus::InProgress, None)?;
        let mut job = self.default_job(vector_store_id, file_id);
        if let Some(c) = chunking {
            job.max_chunk_size_tokens = c.max_chunk_size_tokens;
            job.chunk_overlap_tokens = c.chunk_overlap_tokens;
        }
        if let Err(e) = self.queue.push(&job) {
            let reason = format!("could not be queued again: {e}");
            let _ = self.library.store().set_document_status(vector_store_id, file_id, DocumentStatus::Failed, Some(reason));
            return Err(match e {
                QueueError::Full(_) => ServiceError::Busy(e.to_string()),
                QueueError::Io(_) => ServiceError::Internal(e.to_string()),
            });
        }
        tracing::info!(vector_store = %vector_store_id, file = %file_id, "A failed file was attached again; ingesting it anew.");
        self.metrics.set_ingest_queue(self.queue.len());
        Ok(doc)
    }

    /// Files waiting or being ingested.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Publish the queue's length as a metric (after a change the watcher made).
    pub fn report_queue(&self) {
        self.metrics.set_ingest_queue(self.queue.len());
    }

    /// `[ingest]`'s chunking, used when a request names none.
    pub fn default_chunking(&self) -> ingest::ChunkingOptions {
        ingest::ChunkingOptions { max_chunk_size_tokens: self.settings.max_chunk_size_tokens, chunk_overlap_tokens: self.settings.chunk_overlap_tokens }
    }

    /// The page renderer (PDF page images with a passage highlighted).
    pub fn pages(&self) -> &pages::PageRenderer {
        &self.pages
    }

    fn sandbox(&self) -> &ingest::Sandbox {
        &self.sandbox
    }

    fn embed_batch(&self) -> usize {
        self.settings.embed_batch
    }
}
