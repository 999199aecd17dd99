//! Vector stores (OpenAI's and Llama Stack's shape) over the store's collections: stores, their
//! files (store documents, ingested by [`crate::ingest`]), file batches, and search.
//!
//! The services answer with domain types ([`VectorStore`], [`VectorStoreFile`],
//! [`SearchResults`], pages of them); their JSON shapes are the HTTP edge's (`api::types`). A
//! vector store file's id is the file's id. Search is hybrid by default (keyword and vector
//! results fused by reciprocal rank, as for `file_search`), embeds the query with the store's own
//! embedding model, and adds `page` and character offsets to each result, which OpenAI's results
//! lack and citations need.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use store::{Attributes, ChunkMeta, Collection, Document, DocumentStatus, NewCollection, SearchHit, SearchMode, SearchRequest};

use crate::blocking::blocking;
use super::listing::{page, ListQuery, Listed, Page};
use crate::fault::ServiceError;
use crate::ingest::Ingestion;
use crate::library::failure::Failure;
use crate::library::{Library, Progress};

/// `chunking_strategy`: `auto` or `static` with its two sizes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChunkingStrategy {
    Auto,
    Static { r#static: StaticChunking },
}

/// The sizes of a `static` strategy.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticChunking {
    pub max_chunk_size_tokens: usize,
    pub chunk_overlap_tokens: usize,
}

pub(crate) fn chunking(strategy: Option<&ChunkingStrategy>) -> Result<Option<ingest::ChunkingOptions>, ServiceError> {
    match strategy {
        None | Some(ChunkingStrategy::Auto) => Ok(None),
        Some(ChunkingStrategy::Static { r#static: s }) => ingest::ChunkingOptions::new(s.max_chunk_size_tokens, s.chunk_overlap_tokens)
            .map(Some)
            .map_err(|e| ServiceError::invalid("chunking_strategy", e.to_string())),
    }
}

/// `POST /v1/vector_stores`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateVectorStore {
    pub name: Option<String>,
    #[serde(default)]
    pub file_ids: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Attributes,
    pub chunking_strategy: Option<ChunkingStrategy>,
    /// Llama Stack's extension: which embedding model (default: the first configured).
    pub embedding_model: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub expires_after: Option<Value>,
}

/// `POST /v1/vector_stores/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateVectorStore {
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Attributes>,
    #[schema(value_type = Option<Object>)]
    pub expires_after: Option<Value>,
}

/// `POST /v1/vector_stores/{id}/files` (and the `file_ids` of a batch).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AttachFile {
    pub file_id: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    pub chunking_strategy: Option<ChunkingStrategy>,
}

/// `POST /v1/vector_stores/{id}/files/{file_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateFile {
    #[schema(value_type = Object)]
    pub attributes: Attributes,
}

/// `POST /v1/vector_stores/{id}/search`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = VectorStoreSearch)]
pub struct Search {
    pub query: Query,
    pub max_num_results: Option<usize>,
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    pub ranking_options: Option<RankingOptions>,
    pub rewrite_query: Option<bool>,
    /// Llama Stack's `search_mode`: `hybrid` (default: keyword and vector fused by reciprocal rank),
    /// `vector` or `keyword`.
    #[schema(schema_with = crate::wire::search_mode)]
    pub search_mode: Option<SearchMode>,
}

/// A query string or several (joined).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = SearchQuery)]
pub enum Query {
    One(String),
    Many(Vec<String>),
}

impl Query {
    pub fn text(&self) -> String {
        match self {
            Query::One(s) => s.clone(),
            Query::Many(v) => v.join(" "),
        }
    }
}

/// `ranking_options`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RankingOptions {
    pub ranker: Option<String>,
    /// Vector and keyword modes: the lowest score kept. Hybrid mode (the default): the lowest
    /// cosine similarity between the query and a result's chunk.
    pub score_threshold: Option<f32>,
}

/// How many of a vector store's (or a batch's) files are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounts {
    pub in_progress: usize,
    pub completed: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub total: usize,
}

impl FileCounts {
    /// The counts of these statuses.
    pub fn of(statuses: impl IntoIterator<Item = DocumentStatus>) -> FileCounts {
        let mut counts = FileCounts::default();
        for status in statuses {
            counts.total += 1;
            *match status {
                DocumentStatus::InProgress => &mut counts.in_progress,
                DocumentStatus::Completed => &mut counts.completed,
                DocumentStatus::Failed => &mut counts.failed,
                DocumentStatus::Cancelled => &mut counts.cancelled,
            } += 1;
        }
        counts
    }
}

/// A vector store: the store's collection and what its files add up to.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorStore {
    pub collection: Collection,
    pub counts: FileCounts,
    /// The files' bytes together.
    pub usage_bytes: u64,
}

impl VectorStore {
    /// Collection `c` with its documents counted.
    pub fn of(library: &Library, c: Collection) -> VectorStore {
        let docs = library.store().documents(&c.id).unwrap_or_default();
        let counts = FileCounts::of(docs.iter().map(|d| d.status));
        VectorStore { usage_bytes: docs.iter().map(|d| d.size).sum(), counts, collection: c }
    }
}

impl Listed for VectorStore {
    fn list_id(&self) -> &str {
        &self.collection.id
    }
}

/// A file of a vector store: the store's document, why its ingestion failed, where a running one
/// is, and the chunking.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorStoreFile {
    pub vector_store_id: String,
    pub document: Document,
    /// Why ingestion failed, when it did (typed: [`Failure`]).
    pub failure: Option<Failure>,
    /// Where a running ingestion job is; `None` when none runs.
    pub progress: Option<Progress>,
    pub chunking: ingest::ChunkingOptions,
}

impl VectorStoreFile {
    /// Document `d` of vector store `vector_store_id`.
    pub fn of(library: &Library, vector_store_id: &str, d: Document) -> VectorStoreFile {
        VectorStoreFile {
            vector_store_id: vector_store_id.to_owned(),
            progress: library.progress(vector_store_id, &d.id),
            failure: Failure::of(&d),
            chunking: library.default_chunking(),
            document: d,
        }
    }
}

impl Listed for VectorStoreFile {
    fn list_id(&self) -> &str {
        &self.document.id
    }
}

/// A status filter of a file list (`filter`): `in_progress`, `completed`, `failed` or `cancelled`;
/// any other value matches nothing.
pub fn status_matches(status: DocumentStatus, filter: Option<&str>) -> bool {
    filter.is_none_or(|f| serde_json::to_value(status).is_ok_and(|v| v == f))
}

/// The results of a search, with the query as searched.
#[derive(Debug, Clone)]
pub struct SearchResults {
    pub query: String,
    pub hits: Vec<SearchHit>,
}

/// Create a vector store and attach `file_ids`.
pub async fn create(ingestion: Arc<Ingestion>, request: CreateVectorStore) -> Result<VectorStore, ServiceError> {
    let options = chunking(request.chunking_strategy.as_ref())?;
    let library = ingestion.library().clone();
    let engine = match &request.embedding_model {
        Some(name) => library.embedder(name).map_err(|e| ServiceError::invalid("embedding_model", e))?,
        None => library.default_embedder().cloned().ok_or_else(|| ServiceError::invalid("embedding_model", "no embedding model is configured"))?,
    };
    let dimension = Library::dimension(&engine).await?;
    blocking(move || {
        let files = request.file_ids.iter().map(|id| file_record(&library, id)).collect::<Result<Vec<_>, _>>()?;
        ensure_space_for(&library, &files)?;
        let collection = library
            .store()
            .create_collection(NewCollection {
                name: request.name.unwrap_or_default(),
                embedding_model: engine.name().to_owned(),
                dimension,
                metadata: request.metadata,
                index: library.vector_index(),
            })?;
        for file in &files {
            ingestion.attach(&collection.id, file, options, Attributes::new())?;
        }
        Ok(VectorStore::of(&library, collection))
    })
    .await
}

fn file_record(library: &Library, id: &str) -> Result<crate::files::FileRecord, ServiceError> {
    library.files().get(id).map_err(|e| ServiceError::invalid("file_id", e.to_string()))
}

/// Refuses to ingest `files` while the disk is short of `[store] min_free_bytes`: a 507 with the
/// numbers. What their chunks, embeddings and index entries will take is estimated as their size.
pub(crate) fn ensure_space_for(library: &Library, files: &[crate::files::FileRecord]) -> Result<(), ServiceError> {
    let needed = files.iter().map(|f| f.bytes).fold(0u64, u64::saturating_add);
    Ok(library.store().space().check(needed)?)
}

/// List vector stores.
pub async fn list(library: Arc<Library>, query: ListQuery) -> Result<Page<VectorStore>, ServiceError> {
    blocking(move || {
        let all = library.store().collections().into_iter().map(|c| VectorStore::of(&library, c)).collect();
        page(all, &query)
    })
    .await
}

/// One vector store.
pub async fn get(library: Arc<Library>, id: String) -> Result<VectorStore, ServiceError> {
    blocking(move || Ok(VectorStore::of(&library, library.store().collection(&id)?))).await
}

/// Rename a vector store or replace its metadata.
pub async fn update(library: Arc<Library>, id: String, request: UpdateVectorStore) -> Result<VectorStore, ServiceError> {
    blocking(move || {
        let c = library.store().update_collection(&id, request.name, request.metadata)?;
        Ok(VectorStore::of(&library, c))
    })
    .await
}

/// Delete a vector store (its uploaded files stay).
pub async fn delete(library: Arc<Library>, id: String) -> Result<(), ServiceError> {
    blocking(move || Ok(library.store().delete_collection(&id)?)).await
}

/// Attach a file.
pub async fn attach(ingestion: Arc<Ingestion>, vector_store_id: String, request: AttachFile) -> Result<VectorStoreFile, ServiceError> {
    let options = chunking(request.chunking_strategy.as_ref())?;
    blocking(move || {
        let library = ingestion.library();
        library.store().collection(&vector_store_id)?;
        let file = file_record(library, &request.file_id)?;
        ensure_space_for(library, std::slice::from_ref(&file))?;
        let doc = ingestion.attach(&vector_store_id, &file, options, request.attributes)?;
        Ok(VectorStoreFile::of(library, &vector_store_id, doc))
    })
    .await
}

/// List a vector store's files (`filter` = a status).
pub async fn list_files(library: Arc<Library>, vector_store_id: String, query: ListQuery) -> Result<Page<VectorStoreFile>, ServiceError> {
    blocking(move || {
        let mut docs = library.store().documents(&vector_store_id)?;
        docs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let all = docs
            .into_iter()
            .filter(|d| status_matches(d.status, query.filter.as_deref()))
            .map(|d| VectorStoreFile::of(&library, &vector_store_id, d))
            .collect();
        page(all, &query)
    })
    .await
}

/// One vector store file.
pub async fn get_file(library: Arc<Library>, vector_store_id: String, file_id: String) -> Result<VectorStoreFile, ServiceError> {
    blocking(move || {
        let doc = library.store().document(&vector_store_id, &file_id)?;
        Ok(VectorStoreFile::of(&library, &vector_store_id, doc))
    })
    .await
}

/// Replace a vector store file's attributes.
pub async fn update_file(library: Arc<Library>, vector_store_id: String, file_id: String, request: UpdateFile) -> Result<VectorStoreFile, ServiceError> {
    blocking(move || {
        let doc = library.store().update_document(&vector_store_id, &file_id, None, Some(request.attributes))?;
        Ok(VectorStoreFile::of(&library, &vector_store_id, doc))
    })
    .await
}

/// Detach a file: its chunks leave the vector store (the uploaded file stays).
pub async fn delete_file(library: Arc<Library>, vector_store_id: String, file_id: String) -> Result<(), ServiceError> {
    blocking(move || Ok(library.store().delete_document(&vector_store_id, &file_id)?)).await
}

/// A vector store file's chunks, in order, with their pages.
pub async fn file_content(library: Arc<Library>, vector_store_id: String, file_id: String) -> Result<Vec<ChunkMeta>, ServiceError> {
    blocking(move || {
        library.store().document(&vector_store_id, &file_id)?;
        Ok(library.store().chunks(&vector_store_id, &file_id)?.into_iter().map(|c| c.meta).collect())
    })
    .await
}

/// Search one vector store; `default_mode` applies when the request names none.
///
/// In hybrid mode `ranking_options.score_threshold` is a cosine similarity, as for `file_search`:
/// the fused score only orders the results, so each fused hit is kept when its chunk's similarity
/// to the query reaches the threshold. Vector and keyword modes compare their own scores. A
/// defaulted hybrid search while the keyword index is being rebuilt answers from the vectors
/// alone rather than failing; one that asked for hybrid or keyword gets the 503.
pub async fn search_hits(library: &Arc<Library>, vector_store_id: &str, request: &Search, default_mode: SearchMode) -> Result<Vec<SearchHit>, ServiceError> {
    let text = request.query.text();
    if text.trim().is_empty() {
        return Err(ServiceError::invalid("query", "query must not be empty"));
    }
    let max = crate::rag::limits::checked_max_results(request.max_num_results.unwrap_or(10), library.limits(), "max_num_results")?;
    let filter = crate::rag::limits::checked_filter(request.filters.as_ref(), library.limits(), "filters")?;
    let mode = request.search_mode.unwrap_or(default_mode);
    let collection = {
        let (i, id) = (library.clone(), vector_store_id.to_owned());
        blocking(move || i.store().collection(&id).map_err(ServiceError::from)).await?
    };
    let embedding = match mode {
        SearchMode::Keyword => None,
        SearchMode::Vector | SearchMode::Hybrid => Some(embed_query(library, &collection, &text).await?),
    };
    let threshold = request.ranking_options.as_ref().and_then(|r| r.score_threshold);
    let mut req = SearchRequest::new(mode, text, embedding.clone());
    req.max_num_results = max;
    req.filter = filter;
    req.score_threshold = if mode == SearchMode::Hybrid { None } else { threshold };
    let may_fall_back = request.search_mode.is_none() && mode == SearchMode::Hybrid;
    let (i, id) = (library.clone(), vector_store_id.to_owned());
    blocking(move || {
        let mut hits = match i.store().search(&id, &req) {
            Err(store::StoreError::IndexNotReady { .. }) if may_fall_back => {
                req.mode = SearchMode::Vector;
                req.score_threshold = threshold;
                return Ok(i.store().search(&id, &req)?);
            }
            other => other?,
        };
        if let (Some(t), Some(e)) = (threshold, embedding.as_deref()) {
            let keys: Vec<u64> = hits.iter().map(|h| h.key).collect();
            let similar = i.store().similarities(&id, &keys, e)?;
            let mut keep = similar.into_iter().map(|s| s.is_some_and(|s| s >= t));
            hits.retain(|_| keep.next().unwrap_or(false));
        }
        Ok(hits)
    })
    .await
}

/// `POST /v1/vector_stores/{id}/search`: hybrid unless the request's `search_mode` says otherwise.
pub async fn search(library: Arc<Library>, vector_store_id: String, request: Search) -> Result<SearchResults, ServiceError> {
    let hits = search_hits(&library, &vector_store_id, &request, SearchMode::Hybrid).await?;
    Ok(SearchResults { query: request.query.text(), hits })
}

/// The query's embedding, by the collection's own model: cut to its context off the async
/// workers, within the API's share of its admission ([`crate::rag::query`]).
pub async fn embed_query(library: &Library, collection: &Collection, text: &str) -> Result<Vec<f32>, ServiceError> {
    crate::rag::query::embed_query(library, collection, text).await
}
