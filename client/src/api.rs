//! The server's JSON as the client commands `hearth status` and `hearth ask` read it: typed views
//! of the OpenAI-shaped objects (with hearth's additions, each optional so another
//! OpenAI-compatible server reads too), one GET helper, and the cursor pagination of list routes.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::target::Target;

/// Why a request to the server did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No connection, or the connection broke.
    #[error("cannot reach {url}: {reason} (is `hearth serve` running there? --target, or HEARTH__SERVER__LISTEN, names another address)")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}: {message}")]
    Status { url: String, status: u16, message: String },
    /// The body is not the object expected.
    #[error("{url}: unexpected answer: {reason}")]
    Body { url: String, reason: String },
}

/// GET `path` and decode the JSON body as `T`.
pub async fn get<T: DeserializeOwned>(target: &Target, http: &reqwest::Client, path: &str) -> Result<T, ApiError> {
    let url = target.url(path);
    let response = target
        .request(http, reqwest::Method::GET, path)
        .send()
        .await
        .map_err(|e| ApiError::Unreachable { url: url.clone(), reason: e.to_string() })?;
    decode(&url, response).await
}

/// The JSON body of `response`, or the error it carries.
pub async fn decode<T: DeserializeOwned>(url: &str, response: reqwest::Response) -> Result<T, ApiError> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| ApiError::Unreachable { url: url.to_owned(), reason: e.to_string() })?;
    if !status.is_success() {
        return Err(ApiError::Status { url: url.to_owned(), status: status.as_u16(), message: error_message(&bytes) });
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Body { url: url.to_owned(), reason: e.to_string() })
}

/// The `error.message` of an OpenAI-shaped error body, or the body itself.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().chars().take(500).collect())
}

/// One page of a list route.
#[derive(Debug, Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

/// Every item of the list route `path` (which has no query), page by page.
pub async fn list_all<T: DeserializeOwned>(target: &Target, http: &reqwest::Client, path: &str) -> Result<Vec<T>, ApiError> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page_path = match &after {
            Some(id) => format!("{path}?limit=100&after={id}"),
            None => format!("{path}?limit=100"),
        };
        let page: Page<T> = get(target, http, &page_path).await?;
        let more = page.has_more && page.last_id.is_some() && !page.data.is_empty();
        items.extend(page.data);
        if !more {
            return Ok(items);
        }
        after = page.last_id;
    }
}

/// A model of `GET /v1/models`.
#[derive(Debug, Clone, Deserialize)]
pub struct Model {
    pub id: String,
    #[serde(default)]
    pub max_model_len: Option<u64>,
    #[serde(default)]
    pub meta: Option<ModelMeta>,
}

impl Model {
    /// `chat` or `embedding` where the server says (hearth does), else `None`.
    pub fn kind(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.kind.as_deref())
    }
}

/// hearth's `meta` of a model.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelMeta {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub on_gpu: Option<bool>,
    #[serde(default)]
    pub devices: Vec<Device>,
}

/// A compute device, as a local model's `meta.devices` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub memory_total: u64,
    #[serde(default)]
    pub memory_free: u64,
}

/// A vector store of `GET /v1/vector_stores`.
#[derive(Debug, Clone, Deserialize)]
pub struct VectorStore {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub file_counts: FileCounts,
}

/// A vector store's `file_counts`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct FileCounts {
    #[serde(default)]
    pub in_progress: u64,
    #[serde(default)]
    pub completed: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub cancelled: u64,
    #[serde(default)]
    pub total: u64,
}

/// A file of `GET /v1/vector_stores/{id}/files`.
#[derive(Debug, Clone, Deserialize)]
pub struct VectorStoreFile {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub chunk_count: Option<u64>,
    #[serde(default)]
    pub progress: Option<Progress>,
    #[serde(default)]
    pub last_error: Option<FileError>,
}

/// hearth's `progress` of a file being ingested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// `parsing` or `embedding`.
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks_embedded: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks_total: Option<u64>,
}

/// hearth's `GET /v1/console/session`: the configured watched folders (a server without it, or
/// another OpenAI-compatible one, answers 404 and they stay unknown).
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    #[serde(default)]
    pub watched_folders: Vec<WatchedFolderConfig>,
}

/// One configured `[[ingest.watch]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedFolderConfig {
    /// The folder on the server.
    pub path: String,
    /// The vector store its files go to.
    pub vector_store: String,
}

/// A failed file's `last_error`.
#[derive(Debug, Clone, Deserialize)]
pub struct FileError {
    #[serde(default)]
    pub message: String,
}
