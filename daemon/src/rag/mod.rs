//! RAG: retrieval over the vector stores, prompt assembly for the prefix cache ([`prompt`]) and
//! page-level citations ([`citations`]). The Responses API ([`crate::service::responses`]) and
//! `hearth eval` use it.
//!
//! Retrieval embeds the question once per embedding model, ranks each vector store's chunks in
//! the requested mode (hybrid by default: keyword and vector fused by reciprocal rank), and
//! merges the stores' results. Whether anything relevant was found at all is decided by the best
//! cosine similarity of a plain vector search, since fused scores have no absolute meaning:
//! below `rag.min_relevance` (or the request's `score_threshold`) nothing is returned, and the
//! answer says that the documents do not cover the question.

pub mod citations;
pub mod limits;
pub mod prompt;
pub mod query;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use store::{SearchHit, SearchMode, SearchRequest};

use crate::fault::ServiceError;
use crate::library::Library;
use crate::blocking::blocking;
use query::embed_query;

/// Most vector stores one `file_search` searches (each is a search of its own).
const MAX_VECTOR_STORES: usize = 16;

/// A `file_search` tool as the Responses API gives it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct FileSearch {
    pub vector_store_ids: Vec<String>,
    pub max_num_results: Option<usize>,
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    pub ranking_options: Option<RankingOptions>,
    /// Llama Stack's extension; hybrid when absent.
    #[schema(schema_with = crate::wire::search_mode)]
    pub search_mode: Option<SearchMode>,
}

/// `ranking_options` of a `file_search` tool.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(as = FileSearchRankingOptions)]
pub struct RankingOptions {
    pub ranker: Option<String>,
    /// A cosine similarity: below it, nothing counts as relevant.
    pub score_threshold: Option<f32>,
}

/// What retrieval found.
#[derive(Debug, Clone)]
pub struct Retrieval {
    /// Relevant chunks, best first (empty when nothing was relevant).
    pub hits: Vec<SearchHit>,
    /// The best cosine similarity of any chunk to the question.
    pub best_similarity: f32,
}

/// Search every vector store of `tool` for `query`.
pub async fn retrieve(library: &Arc<Library>, tool: &FileSearch, query: &str, min_relevance: f32) -> Result<Retrieval, ServiceError> {
    let max = limits::checked_max_results(tool.max_num_results.unwrap_or(5), library.limits(), "tools[0].max_num_results")?;
    if tool.vector_store_ids.is_empty() {
        return Err(ServiceError::invalid("tools[0].vector_store_ids", "file_search needs at least one vector store id"));
    }
    if tool.vector_store_ids.len() > MAX_VECTOR_STORES {
        return Err(ServiceError::invalid(
            "tools[0].vector_store_ids",
            format!("file_search searches at most {MAX_VECTOR_STORES} vector stores, got {}", tool.vector_store_ids.len()),
        ));
    }
    let filter = limits::checked_filter(tool.filters.as_ref(), library.limits(), "tools[0].filters")?;
    let mode = tool.search_mode.unwrap_or(SearchMode::Hybrid);
    let gate = tool.ranking_options.as_ref().and_then(|r| r.score_threshold).unwrap_or(min_relevance);
    let mut embeddings: HashMap<String, Vec<f32>> = HashMap::new();
    let mut hits = Vec::new();
    let mut best_similarity = f32::MIN;
    for id in &tool.vector_store_ids {
        // An id, or (for people typing requests by hand) a vector store's name such as `inbox`.
        let collection = {
            let (i, id) = (library.clone(), id.clone());
            blocking(move || match i.store().collection(&id) {
                Err(store::StoreError::CollectionNotFound(_)) => i
                    .store()
                    .collections()
                    .into_iter()
                    .find(|c| c.name == id)
                    .ok_or_else(|| ServiceError::invalid("tools[0].vector_store_ids", format!("no vector store with the id or name `{id}`"))),
                other => Ok(other?),
            })
            .await?
        };
        let id = &collection.id;
        let embedding = match embeddings.get(&collection.embedding_model) {
            Some(e) => e.clone(),
            None => {
                let e = embed_query(library, &collection, query).await?;
                embeddings.insert(collection.embedding_model.clone(), e.clone());
                e
            }
        };
        let mut similar = SearchRequest::new(SearchMode::Vector, query, Some(embedding.clone()));
        similar.max_num_results = max;
        similar.filter = filter.clone();
        let mut ranked = similar.clone();
        ranked.mode = mode;
        let (i, id) = (library.clone(), id.clone());
        let (vector_hits, ranked_hits) = blocking(move || {
            let v = i.store().search(&id, &similar)?;
            let r = if mode == SearchMode::Vector { v.clone() } else { i.store().search(&id, &ranked)? };
            Ok((v, r))
        })
        .await?;
        if let Some(top) = vector_hits.first() {
            best_similarity = best_similarity.max(top.score);
        }
        hits.extend(ranked_hits);
    }
    if best_similarity < gate {
        hits.clear();
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(max);
    Ok(Retrieval { hits, best_similarity })
}
