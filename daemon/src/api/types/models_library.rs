//! The model library's admin answers (`/v1/models/library...`). A library entry is the manifest
//! record itself (`models_library::Entry`), sent as the manifest stores it.

use serde::Serialize;

use crate::models_library::Entry;

/// `GET /v1/models/library`.
#[derive(Debug, Serialize)]
pub struct LibraryList {
    pub object: &'static str,
    pub data: Vec<Entry>,
}

/// `POST /v1/models/library/import`.
#[derive(Debug, Serialize)]
pub struct Imported {
    pub entry: Entry,
    /// How long the import took.
    pub seconds: f64,
}

/// `POST /v1/models/library/pull`.
#[derive(Debug, Serialize)]
pub struct Pulled {
    pub entry: Entry,
    /// How long the download took.
    pub seconds: f64,
    /// Bytes received in this pull.
    pub received: u64,
    /// Times the download was resumed after a cut connection.
    pub resumed: u32,
}
