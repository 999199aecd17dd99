//! Vector store file batches: several files attached in one call, with one status to poll (what
//! the openai SDK's `file_batches.upload_and_poll` and `create_and_poll` use).
//!
//! A batch is only a list of file ids, kept as `state_dir/ingest/batches/<id>.json`; its status
//! and counts are computed from its files' documents each time, so there is nothing to keep in
//! sync. Cancelling marks the batch and its files that have not finished `cancelled`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use store::{Attributes, DocumentStatus};

use crate::blocking::blocking;
use super::listing::{page, ListQuery, Page};
use super::vector_stores::{status_matches, ChunkingStrategy, FileCounts, VectorStoreFile};
use crate::fault::ServiceError;
use crate::ingest::Ingestion;
use crate::library::Library;

/// `POST /v1/vector_stores/{id}/file_batches`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateBatch {
    pub file_ids: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    pub chunking_strategy: Option<ChunkingStrategy>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    id: String,
    vector_store_id: String,
    created_at: u64,
    file_ids: Vec<String>,
    cancelled: bool,
}

fn dir(library: &Library) -> PathBuf {
    library.state_dir().join("ingest").join("batches")
}

fn load(library: &Library, vector_store_id: &str, batch_id: &str) -> Result<Batch, ServiceError> {
    let missing = || ServiceError::not_found("file batch", batch_id, format!("no file batch `{batch_id}` in vector store `{vector_store_id}`"));
    if !batch_id.strip_prefix("vsfb_").is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err(missing());
    }
    let bytes = std::fs::read(dir(library).join(format!("{batch_id}.json"))).map_err(|_| missing())?;
    let batch: Batch = serde_json::from_slice(&bytes).map_err(|e| ServiceError::Internal(format!("file batch {batch_id} is damaged: {e}")))?;
    if batch.vector_store_id == vector_store_id {
        Ok(batch)
    } else {
        Err(missing())
    }
}

fn save(library: &Library, batch: &Batch) -> Result<(), ServiceError> {
    let write = || -> std::io::Result<()> {
        let dir = dir(library);
        std::fs::create_dir_all(&dir)?;
        crate::durable::write_atomic(&dir.join(format!("{}.json", batch.id)), &serde_json::to_vec(batch).map_err(std::io::Error::other)?)
    };
    write().map_err(|e| ServiceError::Internal(format!("cannot save a file batch: {e}")))
}

/// A batch as the API shows it: its status and its files' counts, computed now.
#[derive(Debug, Clone, PartialEq)]
pub struct FileBatch {
    pub id: String,
    pub vector_store_id: String,
    pub created_at: u64,
    pub status: BatchStatus,
    pub counts: FileCounts,
}

/// A batch's status: cancelled once asked, else in progress while any file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStatus {
    InProgress,
    Completed,
    Cancelled,
}

fn batch_info(library: &Library, batch: &Batch) -> FileBatch {
    let counts = FileCounts::of(batch.file_ids.iter().filter_map(|f| library.store().document(&batch.vector_store_id, f).ok().map(|d| d.status)));
    // A file that is gone still counts in the total.
    let counts = FileCounts { total: batch.file_ids.len(), ..counts };
    let status = if batch.cancelled {
        BatchStatus::Cancelled
    } else if counts.in_progress > 0 {
        BatchStatus::InProgress
    } else {
        BatchStatus::Completed
    };
    FileBatch { id: batch.id.clone(), vector_store_id: batch.vector_store_id.clone(), created_at: batch.created_at, status, counts }
}

/// Attach every file and record the batch.
pub async fn create(ingestion: Arc<Ingestion>, vector_store_id: String, request: CreateBatch) -> Result<FileBatch, ServiceError> {
    if request.file_ids.is_empty() || request.file_ids.len() > 2000 {
        return Err(ServiceError::invalid("file_ids", "file_ids must list between 1 and 2000 files"));
    }
    blocking(move || {
        let library = ingestion.library();
        library.store().collection(&vector_store_id)?;
        let files = request
            .file_ids
            .iter()
            .map(|id| library.files().get(id).map_err(|e| ServiceError::invalid("file_ids", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        super::vector_stores::ensure_space_for(library, &files)?;
        let options = super::vector_stores::chunking(request.chunking_strategy.as_ref())?;
        let batch = Batch {
            id: super::new_id("vsfb").replace('-', "_"),
            vector_store_id: vector_store_id.clone(),
            created_at: super::unix_now(),
            file_ids: request.file_ids.clone(),
            cancelled: false,
        };
        save(library, &batch)?;
        for file in &files {
            ingestion.attach(&vector_store_id, file, options, request.attributes.clone())?;
        }
        Ok(batch_info(library, &batch))
    })
    .await
}

/// A batch's status.
pub async fn get(library: Arc<Library>, vector_store_id: String, batch_id: String) -> Result<FileBatch, ServiceError> {
    blocking(move || Ok(batch_info(&library, &load(&library, &vector_store_id, &batch_id)?))).await
}

/// Cancel: files not yet finished are marked `cancelled` (their jobs find nothing left to do).
pub async fn cancel(library: Arc<Library>, vector_store_id: String, batch_id: String) -> Result<FileBatch, ServiceError> {
    blocking(move || {
        let mut batch = load(&library, &vector_store_id, &batch_id)?;
        for file in &batch.file_ids {
            if library.store().document(&vector_store_id, file).is_ok_and(|d| d.status == DocumentStatus::InProgress) {
                library.store().set_document_status(&vector_store_id, file, DocumentStatus::Cancelled, None)?;
            }
        }
        batch.cancelled = true;
        save(&library, &batch)?;
        Ok(batch_info(&library, &batch))
    })
    .await
}

/// The batch's files.
pub async fn files(library: Arc<Library>, vector_store_id: String, batch_id: String, query: ListQuery) -> Result<Page<VectorStoreFile>, ServiceError> {
    blocking(move || {
        let batch = load(&library, &vector_store_id, &batch_id)?;
        let all = batch
            .file_ids
            .iter()
            .filter_map(|f| library.store().document(&vector_store_id, f).ok())
            .filter(|d| status_matches(d.status, query.filter.as_deref()))
            .map(|d| VectorStoreFile::of(&library, &vector_store_id, d))
            .collect();
        page(all, &query)
    })
    .await
}
