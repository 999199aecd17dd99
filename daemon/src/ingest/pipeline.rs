//! One ingestion job, start to end: parse (in the sandboxed child process), chunk with the
//! embedding model's tokenizer, embed in batches through the engine, store batch by batch.
//!
//! The stored file is opened once: its head (for format detection) is read from that descriptor,
//! and the same descriptor becomes the parser child's stdin (the child gets no path).
//!
//! Every step's failure becomes the document's `failed` status with a reason a person can act
//! on; nothing here can take the daemon down. Progress (chunks embedded of chunks planned) is
//! kept in memory for the API while a job runs; the store's `chunk_count` is the durable part.

use ingest::{ChunkingOptions, Format, TokenCounter};
use store::{DocumentStatus, NewChunk, NewDocument, StoreError};

use super::queue::Job;
use crate::provider::Backend;
use super::Ingestion;
use crate::library::failure::Failure;
use crate::library::Progress;

/// Special tokens the embedding model adds around every input ([CLS] … [SEP]).
const SPECIAL_TOKENS: usize = 2;

/// Counts tokens with the embedding model's own tokenizer (an estimate for a remote model).
struct EmbedderTokens<'a>(&'a Backend);

impl TokenCounter for EmbedderTokens<'_> {
    fn count(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
}

/// An embedding model's context when it does not say (BERT-style models' 512).
const DEFAULT_EMBEDDING_CONTEXT: usize = 512;

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// Chunks stored; the document is searchable.
    Completed { chunks: usize, pages: usize },
    /// The file cannot be ingested; the failure (its kind and reason) is stored on the document.
    Failed(Failure),
    /// The document or its vector store was deleted meanwhile; nothing to record.
    Gone,
}

/// Run one job and record its outcome on the document.
pub async fn run(ingestion: &Ingestion, job: &Job) -> Outcome {
    let outcome = match ingest_file(ingestion, job).await {
        Ok(outcome) => outcome,
        Err(step) => step.failure().map_or(Outcome::Gone, Outcome::Failed),
    };
    let store = ingestion.library().store().clone();
    let (vs, file) = (job.vector_store_id.clone(), job.file_id.clone());
    if store.document(&vs, &file).is_ok_and(|d| d.status == DocumentStatus::Cancelled) {
        return Outcome::Gone; // cancelled meanwhile: the cancellation stands
    }
    let recorded = match &outcome {
        Outcome::Completed { .. } => blocking(move || store.set_document_status(&vs, &file, DocumentStatus::Completed, None)).await,
        Outcome::Failed(failure) => {
            let failure = failure.clone();
            blocking(move || store.set_document_failed(&vs, &file, failure.kind.code(), failure.message)).await
        }
        Outcome::Gone => Ok(()),
    };
    match recorded {
        Ok(()) => outcome,
        Err(step) => step.failure().map_or(outcome, Outcome::Failed),
    }
}

/// Why a step stopped.
enum Step {
    Failed(String),
    /// No parser takes the file's format.
    Unsupported(String),
    Gone,
}

impl Step {
    /// The failure to record, `None` for a document that is gone.
    fn failure(self) -> Option<Failure> {
        match self {
            Step::Failed(reason) => Some(Failure::invalid(reason)),
            Step::Unsupported(reason) => Some(Failure::unsupported(reason)),
            Step::Gone => None,
        }
    }
}

impl From<StoreError> for Step {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CollectionNotFound(_) | StoreError::DocumentNotFound { .. } => Step::Gone,
            other => Step::Failed(format!("the store failed: {other}")),
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<(), Step> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(Step::Failed(format!("internal error: {e}"))),
    }
}

async fn ingest_file(ingestion: &Ingestion, job: &Job) -> Result<Outcome, Step> {
    let library = ingestion.library();
    let files = library.files();
    let record = files.get(&job.file_id).map_err(|_| Step::Failed("the file was deleted before it could be ingested".into()))?;
    let path = files.content_path(&record.id).map_err(|e| Step::Failed(e.to_string()))?;
    let store = library.store().clone();
    let collection = store.collection(&job.vector_store_id)?;
    let engine = library.embedder(&collection.embedding_model).map_err(Step::Failed)?;

    // A job resumed after a restart starts its document over.
    let doc = store.document(&job.vector_store_id, &job.file_id)?;
    if doc.status == DocumentStatus::Cancelled {
        return Err(Step::Gone);
    }
    if doc.chunk_count > 0 {
        let (vs, id) = (job.vector_store_id.clone(), doc.id.clone());
        let again = NewDocument {
            id: Some(doc.id.clone()),
            name: doc.name.clone(),
            content_hash: doc.content_hash.clone(),
            size: doc.size,
            attributes: doc.attributes.clone(),
            status: DocumentStatus::InProgress,
        };
        let s = store.clone();
        blocking(move || s.delete_document(&vs, &id).and_then(|()| s.add_document(&vs, again, Vec::new()))).await?;
    }

    // One descriptor for everything: the head read here, and the parser child's stdin.
    let file = std::fs::File::open(&path).map_err(|e| Step::Failed(format!("cannot read the file: {e}")))?;
    let head = crate::files::read_head(&file).map_err(|e| Step::Failed(format!("cannot read the file: {e}")))?;
    let format = Format::detect(Some(&record.filename), &head).ok_or_else(|| {
        ingestion.metrics.parse_failed(None);
        Step::Unsupported(format!("unsupported file type: `{}` is not PDF, DOCX, PPTX, XLSX/ODS, ODT, EPUB, e-mail (.eml), Markdown, HTML or UTF-8 text", record.filename))
    })?;
    library.set_progress(&job.vector_store_id, &job.file_id, Progress::Parsing);
    // A worker that could not start is retried; the file's own problems fail it (retry.rs).
    let parsed = super::retry::parse_file(ingestion, ingestion.sandbox().parse_file(file, format), &path, format).await.map_err(Step::Failed)?;

    let context = engine.max_model_len().map_or(DEFAULT_EMBEDDING_CONTEXT, |n| n as usize);
    let max_tokens = job.max_chunk_size_tokens.min(context.saturating_sub(SPECIAL_TOKENS).max(1));
    let options = ChunkingOptions::new(max_tokens, job.chunk_overlap_tokens.min(max_tokens / 2)).map_err(|e| Step::Failed(e.to_string()))?;
    let chunker_engine = engine.clone();
    let (parsed, chunks) = tokio::task::spawn_blocking(move || {
        let chunks = ingest::chunk_document(&parsed, &options, &EmbedderTokens(&chunker_engine));
        (parsed, chunks)
    })
    .await
    .map_err(|e| Step::Failed(format!("internal error while chunking: {e}")))?;
    if chunks.is_empty() {
        return Err(Step::Failed("the file has no text to index".into()));
    }

    let total = chunks.len();
    library.set_progress(&job.vector_store_id, &job.file_id, Progress::Embedding { done: 0, total });
    let batch = ingestion.embed_batch();
    for (i, group) in chunks.chunks(batch).enumerate() {
        let texts = group.iter().map(|c| c.text.clone()).collect();
        let vectors = super::retry::embed(&engine, texts).await.map_err(Step::Failed)?;
        let new_chunks: Vec<NewChunk> = group
            .iter()
            .zip(vectors)
            .map(|(c, embedding)| NewChunk {
                text: c.text.clone(),
                embedding,
                page: Some(c.page),
                char_start: c.char_start as u64,
                char_end: c.char_end as u64,
                attributes: chunk_attributes(c),
            })
            .collect();
        let (s, vs, id) = (store.clone(), job.vector_store_id.clone(), job.file_id.clone());
        super::retry::store_write(move || s.add_chunks(&vs, &id, new_chunks.clone()).map(drop)).await?;
        library.set_progress(&job.vector_store_id, &job.file_id, Progress::Embedding { done: (i * batch + group.len()).min(total), total });
    }
    // The file records which engine read it (`parser`: pdf-extract, pdfium, ocr, docx...).
    let mut attributes = store.document(&job.vector_store_id, &job.file_id)?.attributes;
    attributes.insert("parser".into(), parsed.parser.clone().into());
    let (s, vs, id) = (store.clone(), job.vector_store_id.clone(), job.file_id.clone());
    blocking(move || s.update_document(&vs, &id, None, Some(attributes))).await?;
    attach_children(ingestion, job, &record.filename, parsed.attachments).await;
    Ok(Outcome::Completed { chunks: total, pages: parsed.pages.len() })
}

/// A chunk's attributes: `section` (its heading path, `A > B`), `page_label` (slide title, sheet
/// name, chapter), `ocr` (true where its page was recognized from an image).
fn chunk_attributes(c: &ingest::Chunk) -> store::Attributes {
    let mut a = store::Attributes::new();
    if !c.section_path.is_empty() {
        a.insert("section".into(), c.section_path.join(" > ").into());
    } else if let Some(h) = &c.heading {
        a.insert("section".into(), h.as_str().into());
    }
    if let Some(label) = &c.label {
        a.insert("page_label".into(), label.as_str().into());
    }
    if c.ocr {
        a.insert("ocr".into(), true.into());
    }
    a
}

/// An e-mail's attachments become files of their own, attached to the same vector store with
/// `attachment_of` (the message's file id and name): each is parsed in its own sandboxed child
/// and cited by its own pages. One that cannot be stored is logged and skipped.
async fn attach_children(ingestion: &Ingestion, job: &Job, parent_name: &str, attachments: Vec<ingest::Attachment>) {
    for child in attachments {
        let files = ingestion.library().files().clone();
        let name = child.filename.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let mut upload = files.upload()?;
            upload.write(&child.bytes)?;
            files.commit(upload, &child.filename, "assistants")
        })
        .await;
        let record = match stored {
            Ok(Ok(record)) => record,
            Ok(Err(e)) => {
                tracing::warn!(file = %job.file_id, attachment = %name, "attachment not stored: {e}");
                continue;
            }
            Err(e) => {
                tracing::warn!(file = %job.file_id, attachment = %name, "attachment not stored: {e}");
                continue;
            }
        };
        let mut attributes = store::Attributes::new();
        attributes.insert("attachment_of".into(), job.file_id.clone().into());
        attributes.insert("attachment_of_name".into(), parent_name.into());
        let chunking = ingest::ChunkingOptions { max_chunk_size_tokens: job.max_chunk_size_tokens, chunk_overlap_tokens: job.chunk_overlap_tokens };
        if let Err(e) = ingestion.attach(&job.vector_store_id, &record, Some(chunking), attributes) {
            tracing::warn!(file = %job.file_id, attachment = %name, "attachment not queued: {e}");
        }
    }
}
