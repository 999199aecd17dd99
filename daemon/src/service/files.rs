//! The Files API's work: store an upload, list, look up and delete files. The multipart parsing
//! stays in the handler; the registry ([`crate::files`]) owns the disk layout.

use std::sync::Arc;

use crate::blocking::blocking;
use super::listing::{page, ListQuery, Listed, Page};
use crate::fault::ServiceError;
use crate::files::{FileRecord, Upload};
use crate::library::Library;

/// Purposes OpenAI accepts.
pub const PURPOSES: [&str; 6] = ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"];

/// Make a received upload durable.
pub async fn commit(library: Arc<Library>, upload: Upload, filename: String, purpose: String) -> Result<FileRecord, ServiceError> {
    blocking(move || Ok(library.files().commit(upload, &filename, &purpose)?)).await
}

/// List files, newest first by default; `purpose` filters.
pub async fn list(library: Arc<Library>, query: ListQuery) -> Result<Page<FileRecord>, ServiceError> {
    blocking(move || {
        let all = library.files().list().into_iter().filter(|f| query.purpose.as_ref().is_none_or(|p| &f.purpose == p)).collect();
        page(all, &query)
    })
    .await
}

/// One file.
pub async fn get(library: Arc<Library>, id: String) -> Result<FileRecord, ServiceError> {
    blocking(move || Ok(library.files().get(&id)?)).await
}

/// Delete a file. Vector stores it was attached to keep their chunks until it is detached.
pub async fn delete(library: Arc<Library>, id: String) -> Result<(), ServiceError> {
    blocking(move || Ok(library.files().delete(&id)?)).await
}

impl Listed for FileRecord {
    fn list_id(&self) -> &str {
        &self.id
    }
}
