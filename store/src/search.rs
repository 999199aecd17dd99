//! Search: vector (HNSW), keyword (BM25) and hybrid (reciprocal rank fusion), with attribute
//! filters, `max_num_results` and `score_threshold`; plus the consistency audit.
//!
//! Design:
//! - filters are applied after retrieval on the chunk's attributes over its document's; when a
//!   filter drops candidates the search is repeated with four times as many, until enough pass or
//!   the whole collection has been considered, so a selective filter still gets exact answers;
//! - scores: vector mode returns cosine similarity, keyword mode the BM25 score, hybrid mode the
//!   fused score `Σ 1/(rrf_k + rank)` over the two lists (rank from 1); `score_threshold` applies
//!   to the score of the mode used;
//! - while a collection's indexes are not ready, vector search scans sled exactly (slower, still
//!   correct) and keyword or hybrid search answers [`StoreError::IndexNotReady`].

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::filter::Filter;
use crate::model::{decode_chunk, Attributes, Chunk, Document};
use crate::recovery::IndexHealth;
use crate::store::{Coll, Store};
use crate::vector::normalized;

/// How to rank (Llama Stack's `search_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Nearest embeddings.
    #[default]
    Vector,
    /// BM25 over the text.
    Keyword,
    /// Both, fused by reciprocal rank.
    Hybrid,
}

/// A search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// The query text (keyword and hybrid modes).
    pub text: String,
    /// The query embedding (vector and hybrid modes).
    pub embedding: Option<Vec<f32>>,
    /// Ranking mode.
    pub mode: SearchMode,
    /// At most this many results (OpenAI allows 1..=50).
    pub max_num_results: usize,
    /// Drop results scoring below this.
    pub score_threshold: Option<f32>,
    /// Attribute filter.
    pub filter: Option<Filter>,
    /// The `k` of reciprocal rank fusion (60 is the usual choice).
    pub rrf_k: f32,
}

impl SearchRequest {
    /// A request with defaults: 10 results, no threshold, no filter, `rrf_k` 60.
    pub fn new(mode: SearchMode, text: impl Into<String>, embedding: Option<Vec<f32>>) -> Self {
        SearchRequest { text: text.into(), embedding, mode, max_num_results: 10, score_threshold: None, filter: None, rrf_k: 60.0 }
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// Chunk key.
    pub key: u64,
    /// Owning document.
    pub document_id: String,
    /// Its file name.
    pub document_name: String,
    /// Score in the request's mode (higher is better).
    pub score: f32,
    /// The chunk text.
    pub text: String,
    /// Page number.
    pub page: Option<u32>,
    /// Character offsets in the document.
    pub char_start: u64,
    /// One past the last character.
    pub char_end: u64,
    /// Document attributes overlaid with the chunk's.
    pub attributes: Attributes,
}

/// Result of [`Store::audit`]: sled compared with both indexes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditReport {
    /// Chunks in sled.
    pub chunks: usize,
    /// Vectors in the HNSW index.
    pub vector_len: usize,
    /// Documents in the keyword index.
    pub keyword_len: usize,
    /// Sled chunks absent from the HNSW index.
    pub missing_in_vector: Vec<u64>,
    /// Sled chunks absent from the keyword index.
    pub missing_in_keyword: Vec<u64>,
    /// Keyword documents with no sled chunk, or present more than once.
    pub extra_in_keyword: Vec<u64>,
    /// Chunks whose document is missing.
    pub orphan_chunks: Vec<u64>,
    /// Chunks with an all-zero or non-finite embedding.
    pub bad_vectors: Vec<u64>,
    /// Documents whose `chunk_count` differs from the chunks stored for them.
    pub miscounted_documents: Vec<String>,
}

impl AuditReport {
    /// True when sled and both indexes agree exactly.
    pub fn is_consistent(&self) -> bool {
        self.vector_len == self.chunks
            && self.keyword_len == self.chunks
            && self.missing_in_vector.is_empty()
            && self.missing_in_keyword.is_empty()
            && self.extra_in_keyword.is_empty()
            && self.orphan_chunks.is_empty()
            && self.bad_vectors.is_empty()
            && self.miscounted_documents.is_empty()
    }
}

/// Candidate retrieval plus the filter, grown until `want` pass or nothing more exists.
struct Resolver<'a> {
    coll: &'a Coll,
    filter: Option<&'a Filter>,
    docs: HashMap<String, Option<Document>>,
}

impl Resolver<'_> {
    /// The chunk and its document, if it exists and passes the filter.
    fn resolve(&mut self, key: u64) -> Result<Option<(Chunk, Document)>> {
        let Some(chunk) = self.coll.chunk(key)? else { return Ok(None) };
        let doc_id = chunk.meta.document_id.clone();
        if !self.docs.contains_key(&doc_id) {
            let d = self.coll.document(&doc_id)?;
            self.docs.insert(doc_id.clone(), d);
        }
        let Some(Some(doc)) = self.docs.get(&doc_id) else { return Ok(None) };
        if let Some(f) = self.filter {
            if !f.matches(&doc.attributes, &chunk.meta.attributes) {
                return Ok(None);
            }
        }
        Ok(Some((chunk, doc.clone())))
    }

    /// Runs `fetch(n)` with growing `n` until `want` candidates pass; returns them ranked.
    fn ranked(&mut self, want: usize, total: usize, fetch: &dyn Fn(usize) -> Result<Vec<(u64, f32)>>) -> Result<Vec<(Chunk, Document, f32)>> {
        let mut n = if self.filter.is_some() { want.saturating_mul(4) } else { want }.max(1);
        loop {
            let raw = fetch(n)?;
            let exhausted = raw.len() < n || n >= total;
            let mut out = Vec::new();
            for (key, score) in raw {
                if let Some((c, d)) = self.resolve(key)? {
                    out.push((c, d, score));
                    if out.len() == want {
                        return Ok(out);
                    }
                }
            }
            if exhausted {
                return Ok(out);
            }
            n = n.saturating_mul(4);
        }
    }
}

fn hit(chunk: Chunk, doc: Document, score: f32) -> SearchHit {
    let mut attributes = doc.attributes;
    attributes.extend(chunk.meta.attributes);
    SearchHit {
        key: chunk.key,
        document_id: doc.id,
        document_name: doc.name,
        score,
        text: chunk.meta.text,
        page: chunk.meta.page,
        char_start: chunk.meta.char_start,
        char_end: chunk.meta.char_end,
        attributes,
    }
}

/// Exact cosine scan over sled, for collections whose index is not ready.
fn exact_scan(coll: &Coll, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>> {
    let q = normalized(query);
    let mut all = Vec::new();
    for item in coll.chunks.iter() {
        let (key, value) = item?;
        let key = key.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt { tree: "chunks".into(), detail: "bad key".into() })?;
        let chunk = decode_chunk(key, &value)?;
        let e = normalized(&chunk.embedding);
        all.push((key, q.iter().zip(&e).map(|(a, b)| a * b).sum::<f32>()));
    }
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.truncate(k);
    Ok(all)
}

impl Store {
    /// Searches a collection.
    pub fn search(&self, collection: &str, req: &SearchRequest) -> Result<Vec<SearchHit>> {
        let coll = self.inner.coll(collection)?;
        let want = req.max_num_results;
        if want == 0 {
            return Err(StoreError::Invalid("max_num_results must be at least 1".into()));
        }
        let embedding = match req.mode {
            SearchMode::Vector | SearchMode::Hybrid => {
                let e = req.embedding.as_deref().ok_or_else(|| StoreError::Invalid("this search mode needs a query embedding".into()))?;
                crate::model::validate_embedding(e, coll.meta.dimension)?;
                Some(e)
            }
            SearchMode::Keyword => None,
        };
        let (health, vector, keyword) = {
            let idx = coll.indexes();
            (idx.health.clone(), idx.vector.clone(), idx.keyword.clone())
        };
        let ready = health == IndexHealth::Ready;
        // sled's `len` walks the whole tree: count from the index when it is there.
        let total = match (&vector, ready) {
            (Some(v), true) => v.len(),
            _ => coll.chunks.len(),
        };
        let mut resolver = Resolver { coll: &coll, filter: req.filter.as_ref(), docs: HashMap::new() };
        let vector_ranked = |resolver: &mut Resolver<'_>, want: usize| -> Result<Vec<(Chunk, Document, f32)>> {
            let Some(e) = embedding else { return Ok(Vec::new()) };
            match (&vector, ready) {
                (Some(v), true) => resolver.ranked(want, total, &|n| v.search(e, n)),
                _ => resolver.ranked(want, total, &|n| exact_scan(&coll, e, n)),
            }
        };
        let keyword_ranked = |resolver: &mut Resolver<'_>, want: usize| -> Result<Vec<(Chunk, Document, f32)>> {
            match (&keyword, ready) {
                (Some(k), true) => resolver.ranked(want, total, &|n| k.search(&req.text, n)),
                _ => Err(StoreError::IndexNotReady { collection: collection.to_string(), index: "keyword" }),
            }
        };
        let mut hits: Vec<SearchHit> = match req.mode {
            SearchMode::Vector => vector_ranked(&mut resolver, want)?.into_iter().map(|(c, d, s)| hit(c, d, s)).collect(),
            SearchMode::Keyword => keyword_ranked(&mut resolver, want)?.into_iter().map(|(c, d, s)| hit(c, d, s)).collect(),
            SearchMode::Hybrid => {
                let pool = want.saturating_mul(3).max(30);
                let by_vector = vector_ranked(&mut resolver, pool)?;
                let by_keyword = keyword_ranked(&mut resolver, pool)?;
                fuse(by_vector, by_keyword, req.rrf_k)
            }
        };
        if let Some(t) = req.score_threshold {
            hits.retain(|h| h.score >= t);
        }
        hits.truncate(want);
        Ok(hits)
    }

    /// The cosine similarity of each chunk of `keys` to `query` (`None` for a key no longer
    /// stored): the absolute relevance that a fused or reranked order has no score for.
    pub fn similarities(&self, collection: &str, keys: &[u64], query: &[f32]) -> Result<Vec<Option<f32>>> {
        let coll = self.inner.coll(collection)?;
        crate::model::validate_embedding(query, coll.meta.dimension)?;
        let q = normalized(query);
        keys.iter()
            .map(|&key| Ok(coll.chunk(key)?.map(|c| q.iter().zip(&normalized(&c.embedding)).map(|(a, b)| a * b).sum::<f32>())))
            .collect()
    }

    /// Compares sled with both indexes of a collection (for tests and `hearth store verify`).
    pub fn audit(&self, collection: &str) -> Result<AuditReport> {
        let coll = self.inner.coll(collection)?;
        let _w = self.inner.lock_writer();
        let (vector, keyword) = {
            let idx = coll.indexes();
            (idx.vector.clone(), idx.keyword.clone())
        };
        let (Some(vector), Some(keyword)) = (vector, keyword) else {
            return Err(StoreError::IndexNotReady { collection: collection.to_string(), index: "vector" });
        };
        let mut report = AuditReport { vector_len: vector.len(), ..AuditReport::default() };
        let mut per_doc: HashMap<String, u64> = HashMap::new();
        let mut sled_keys = HashSet::new();
        for item in coll.chunks.iter() {
            let (key, value) = item?;
            let key = key.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt { tree: "chunks".into(), detail: "bad key".into() })?;
            let chunk = decode_chunk(key, &value)?;
            report.chunks += 1;
            sled_keys.insert(key);
            if chunk.embedding.iter().all(|x| *x == 0.0) || chunk.embedding.iter().any(|x| !x.is_finite()) {
                report.bad_vectors.push(key);
            }
            if !vector.contains(key) {
                report.missing_in_vector.push(key);
            }
            if coll.docs.contains_key(chunk.meta.document_id.as_bytes())? {
                *per_doc.entry(chunk.meta.document_id).or_default() += 1;
            } else {
                report.orphan_chunks.push(key);
            }
        }
        let kw = keyword.keys()?;
        report.keyword_len = kw.len();
        let mut seen = HashSet::new();
        for key in kw {
            if !sled_keys.contains(&key) || !seen.insert(key) {
                report.extra_in_keyword.push(key);
            }
        }
        report.missing_in_keyword = sled_keys.iter().copied().filter(|k| !seen.contains(k)).collect();
        for doc in coll.docs.iter().values() {
            let doc: Document = serde_json::from_slice(&doc?)?;
            if per_doc.get(&doc.id).copied().unwrap_or(0) != doc.chunk_count {
                report.miscounted_documents.push(doc.id);
            }
        }
        Ok(report)
    }
}

/// Reciprocal rank fusion of two ranked lists.
fn fuse(by_vector: Vec<(Chunk, Document, f32)>, by_keyword: Vec<(Chunk, Document, f32)>, rrf_k: f32) -> Vec<SearchHit> {
    let mut fused: HashMap<u64, (f32, Option<(Chunk, Document)>)> = HashMap::new();
    for list in [by_vector, by_keyword] {
        for (rank, (chunk, doc, _)) in list.into_iter().enumerate() {
            let entry = fused.entry(chunk.key).or_insert((0.0, None));
            entry.0 += 1.0 / (rrf_k + rank as f32 + 1.0);
            if entry.1.is_none() {
                entry.1 = Some((chunk, doc));
            }
        }
    }
    let mut hits: Vec<SearchHit> = fused.into_values().filter_map(|(s, cd)| cd.map(|(c, d)| hit(c, d, s))).collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.key.cmp(&b.key)));
    hits
}

