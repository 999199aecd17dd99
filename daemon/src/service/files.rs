//! The Files API's work: store an upload, list, look up and delete files. The multipart parsing
//! stays in the handler; the registry ([`crate::files`]) owns the disk layout.

use std::sync::Arc;

use serde_json::{json, Value};

use super::blocking;
use super::listing::{page, ListQuery};
use crate::error::ApiError;
use crate::files::{FileError, FileRecord, Upload};
use crate::ingest::Ingestor;

/// Purposes OpenAI accepts.
pub const PURPOSES: [&str; 6] = ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"];

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::TooLarge { .. } => ApiError::BadRequest { message: e.to_string(), param: Some("file".into()), code: "file_too_large" },
            FileError::NotFound(_) => ApiError::ResourceNotFound(e.to_string()),
            FileError::Io { .. } => ApiError::Internal(e.to_string()),
            FileError::NoSpace(no_space) => no_space.into(),
        }
    }
}

/// Make a received upload durable.
pub async fn commit(ingestor: Arc<Ingestor>, upload: Upload, filename: String, purpose: String) -> Result<Value, ApiError> {
    blocking(move || Ok(ingestor.files().commit(upload, &filename, &purpose)?.to_json())).await
}

/// List files, newest first by default; `purpose` filters.
pub async fn list(ingestor: Arc<Ingestor>, query: ListQuery) -> Result<Value, ApiError> {
    blocking(move || {
        let all = ingestor
            .files()
            .list()
            .iter()
            .filter(|f| query.purpose.as_ref().is_none_or(|p| &f.purpose == p))
            .map(FileRecord::to_json)
            .collect();
        page(all, &query)
    })
    .await
}

/// One file.
pub async fn get(ingestor: Arc<Ingestor>, id: String) -> Result<FileRecord, ApiError> {
    blocking(move || Ok(ingestor.files().get(&id)?)).await
}

/// Delete a file. Vector stores it was attached to keep their chunks until it is detached.
pub async fn delete(ingestor: Arc<Ingestor>, id: String) -> Result<Value, ApiError> {
    blocking(move || {
        ingestor.files().delete(&id)?;
        Ok(json!({"id": id, "object": "file", "deleted": true}))
    })
    .await
}
