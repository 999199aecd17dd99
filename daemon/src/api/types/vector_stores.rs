//! The Vector Stores API's objects: vector stores, their files (with hearth's `filename`,
//! `chunk_count` and `progress`), file batches, a file's parsed content, and search results (with
//! hearth's `page` and character offsets, which citations need and OpenAI's results lack).

use serde::Serialize;
use store::{Attributes, ChunkMeta, DocumentStatus, SearchHit};
use utoipa::ToSchema;

use crate::library::Progress;
use crate::service::file_batches::{self, BatchStatus};
use crate::service::vector_stores::{self as vs, FileCounts, SearchResults};

/// A vector store.
#[derive(Debug, Serialize, ToSchema)]
pub struct VectorStore {
    pub id: String,
    #[schema(value_type = String, pattern = "^vector_store$")]
    pub object: &'static str,
    pub created_at: u64,
    pub name: String,
    /// The files' bytes together.
    pub usage_bytes: u64,
    pub file_counts: Counts,
    /// `in_progress` while a file is being ingested, else `completed`.
    pub status: Status,
    /// Always null: vector stores do not expire.
    #[schema(value_type = Option<Object>)]
    pub expires_after: Option<()>,
    pub expires_at: Option<u64>,
    pub last_active_at: u64,
    #[schema(value_type = Object)]
    pub metadata: Attributes,
    /// Llama Stack's: the embedding model and its vector width.
    pub embedding_model: String,
    pub embedding_dimension: usize,
}

/// How many files are in each state.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FileCounts)]
pub struct Counts {
    pub in_progress: usize,
    pub completed: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub total: usize,
}

/// A vector store's, a file's or a batch's state.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = IngestStatus)]
pub enum Status {
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

/// A file of a vector store.
#[derive(Debug, Serialize, ToSchema)]
pub struct VectorStoreFile {
    /// The file's id.
    pub id: String,
    #[schema(value_type = String, pattern = "^vector_store\\.file$")]
    pub object: &'static str,
    pub created_at: u64,
    pub vector_store_id: String,
    pub status: Status,
    /// Why ingestion failed, when it did.
    pub last_error: Option<FileError>,
    pub usage_bytes: u64,
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    pub chunking_strategy: Chunking,
    /// hearth's: the file's name, its chunks, and where a running ingestion is.
    pub filename: String,
    pub chunk_count: u64,
    pub progress: Option<IngestProgress>,
}

/// A failed file's error.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = VectorStoreFileError)]
pub struct FileError {
    /// `unsupported_file` (no parser for its format) or `invalid_file` (it could not be read,
    /// parsed or embedded).
    #[schema(value_type = String, pattern = "^(unsupported_file|invalid_file)$")]
    pub code: &'static str,
    pub message: String,
}

/// The chunking a file was ingested with: `{"type": "static", "static": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FileChunkingStrategy)]
pub struct Chunking {
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^static$")]
    pub kind: &'static str,
    pub r#static: ChunkSizes,
}

/// A static strategy's sizes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkSizes {
    pub max_chunk_size_tokens: usize,
    pub chunk_overlap_tokens: usize,
}

/// Where a running ingestion is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum IngestProgress {
    /// The sandboxed parser is reading the file.
    Parsing,
    /// Chunks embedded and stored so far, of all the file's chunks.
    Embedding { chunks_embedded: usize, chunks_total: usize },
}

/// A file batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileBatch {
    pub id: String,
    #[schema(value_type = String, pattern = "^vector_store\\.files_batch$")]
    pub object: &'static str,
    pub created_at: u64,
    pub vector_store_id: String,
    /// `cancelled` once cancelled, else `in_progress` while any of its files is, else `completed`.
    pub status: Status,
    pub file_counts: Counts,
}

/// A vector store file's parsed text, chunk by chunk, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileContentPage {
    #[schema(value_type = String, pattern = "^vector_store\\.file_content\\.page$")]
    pub object: &'static str,
    pub data: Vec<ContentChunk>,
    /// Always false: one page holds every chunk.
    pub has_more: bool,
    pub next_page: Option<String>,
}

/// One chunk's text and where it lies in the file.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContentChunk {
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^text$")]
    pub kind: &'static str,
    pub text: String,
    /// The 1-based page, for formats that have pages.
    pub page: Option<u32>,
    pub char_start: u64,
    pub char_end: u64,
}

/// `POST /v1/vector_stores/{id}/search`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResultsPage {
    #[schema(value_type = String, pattern = "^vector_store\\.search_results\\.page$")]
    pub object: &'static str,
    /// The query as searched (several strings joined).
    pub search_query: String,
    pub data: Vec<SearchResult>,
    /// Always false: one page holds every result.
    pub has_more: bool,
    pub next_page: Option<String>,
}

/// One search result: OpenAI's fields, then hearth's `page`, `char_start` and `char_end`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    pub file_id: String,
    pub filename: String,
    pub score: f32,
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    pub content: Vec<TextContent>,
    pub page: Option<u32>,
    pub char_start: u64,
    pub char_end: u64,
}

/// `{"type": "text", "text"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextContent {
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^text$")]
    pub kind: &'static str,
    pub text: String,
}

impl From<FileCounts> for Counts {
    fn from(c: FileCounts) -> Self {
        Counts { in_progress: c.in_progress, completed: c.completed, failed: c.failed, cancelled: c.cancelled, total: c.total }
    }
}

impl From<DocumentStatus> for Status {
    fn from(s: DocumentStatus) -> Self {
        match s {
            DocumentStatus::InProgress => Status::InProgress,
            DocumentStatus::Completed => Status::Completed,
            DocumentStatus::Failed => Status::Failed,
            DocumentStatus::Cancelled => Status::Cancelled,
        }
    }
}

impl From<vs::VectorStore> for VectorStore {
    fn from(v: vs::VectorStore) -> Self {
        let c = v.collection;
        VectorStore {
            object: "vector_store",
            name: c.name,
            usage_bytes: v.usage_bytes,
            status: if v.counts.in_progress > 0 { Status::InProgress } else { Status::Completed },
            file_counts: v.counts.into(),
            expires_after: None,
            expires_at: None,
            last_active_at: c.created_at,
            created_at: c.created_at,
            metadata: c.metadata,
            embedding_model: c.embedding_model,
            embedding_dimension: c.dimension,
            id: c.id,
        }
    }
}

impl From<vs::VectorStoreFile> for VectorStoreFile {
    fn from(f: vs::VectorStoreFile) -> Self {
        let d = f.document;
        let last_error = f.failure.map(|failure| FileError { code: failure.kind.code(), message: failure.message });
        VectorStoreFile {
            id: d.id,
            object: "vector_store.file",
            created_at: d.created_at,
            vector_store_id: f.vector_store_id,
            status: d.status.into(),
            last_error,
            usage_bytes: d.size,
            attributes: d.attributes,
            chunking_strategy: Chunking {
                kind: "static",
                r#static: ChunkSizes { max_chunk_size_tokens: f.chunking.max_chunk_size_tokens, chunk_overlap_tokens: f.chunking.chunk_overlap_tokens },
            },
            filename: d.name,
            chunk_count: d.chunk_count,
            progress: f.progress.map(|p| match p {
                Progress::Parsing => IngestProgress::Parsing,
                Progress::Embedding { done, total } => IngestProgress::Embedding { chunks_embedded: done, chunks_total: total },
            }),
        }
    }
}

impl From<file_batches::FileBatch> for FileBatch {
    fn from(b: file_batches::FileBatch) -> Self {
        FileBatch {
            id: b.id,
            object: "vector_store.files_batch",
            created_at: b.created_at,
            vector_store_id: b.vector_store_id,
            status: match b.status {
                BatchStatus::InProgress => Status::InProgress,
                BatchStatus::Completed => Status::Completed,
                BatchStatus::Cancelled => Status::Cancelled,
            },
            file_counts: b.counts.into(),
        }
    }
}

impl From<Vec<ChunkMeta>> for FileContentPage {
    fn from(chunks: Vec<ChunkMeta>) -> Self {
        let data = chunks
            .into_iter()
            .map(|c| ContentChunk { kind: "text", text: c.text, page: c.page, char_start: c.char_start, char_end: c.char_end })
            .collect();
        FileContentPage { object: "vector_store.file_content.page", data, has_more: false, next_page: None }
    }
}

impl From<SearchHit> for SearchResult {
    fn from(h: SearchHit) -> Self {
        SearchResult {
            file_id: h.document_id,
            filename: h.document_name,
            score: h.score,
            attributes: h.attributes,
            content: vec![TextContent { kind: "text", text: h.text }],
            page: h.page,
            char_start: h.char_start,
            char_end: h.char_end,
        }
    }
}

impl From<SearchResults> for SearchResultsPage {
    fn from(r: SearchResults) -> Self {
        SearchResultsPage {
            object: "vector_store.search_results.page",
            search_query: r.query,
            data: r.hits.into_iter().map(SearchResult::from).collect(),
            has_more: false,
            next_page: None,
        }
    }
}
