//! OpenAI's file object.

use serde::Serialize;
use utoipa::ToSchema;

use crate::files::FileRecord;

/// An uploaded file (`POST /v1/files`, `GET /v1/files/{id}`, and the items of `GET /v1/files`).
#[derive(Debug, Serialize, ToSchema)]
pub struct FileObject {
    pub id: String,
    #[schema(value_type = String, pattern = "^file$")]
    pub object: &'static str,
    pub bytes: u64,
    pub created_at: u64,
    pub filename: String,
    pub purpose: String,
    /// Always `processed`: a file is usable once its upload is answered.
    #[schema(value_type = String, pattern = "^processed$")]
    pub status: &'static str,
    /// Always null: uploads do not expire.
    pub expires_at: Option<u64>,
    /// Always null.
    pub status_details: Option<String>,
}

impl From<FileRecord> for FileObject {
    fn from(f: FileRecord) -> Self {
        FileObject {
            id: f.id,
            object: "file",
            bytes: f.bytes,
            created_at: f.created_at,
            filename: f.filename,
            purpose: f.purpose,
            status: "processed",
            expires_at: None,
            status_details: None,
        }
    }
}
