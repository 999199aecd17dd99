//! hearth's embedded store: collections (OpenAI vector stores), documents, chunks and hybrid
//! search, crash-safe.
//!
//! Design: sled is the source of truth (documents, chunks, embeddings, metadata); a write is
//! acknowledged only after sled has flushed it. Per collection, a usearch HNSW index (cosine) and
//! a tantivy BM25 index are derived from it: each is saved atomically with the sled sequence
//! number it reflects, caught up from a per-collection change log when behind, and rebuilt from
//! sled when missing or damaged, on a background thread while the store serves and reports the
//! collection as not ready ([`Store::status`]). The crate is synchronous and knows nothing about
//! HTTP or async runtimes; the daemon calls it from blocking threads.
//!
//! Modules: [`model`] (records), [`filter`] (OpenAI attribute filters), [`vector`] (HNSW),
//! [`keyword`] (BM25), `store` (the handle and writes), `recovery` (index upkeep), `search`,
//! [`writers`] (the bounded pool of tantivy writers), [`space`] (the free-space reserve),
//! `upkeep` (the one background thread: idle writers, retries after failed saves).

pub mod error;
pub mod filter;
pub mod keyword;
pub mod model;
mod recovery;
mod search;
pub mod space;
mod store;
mod upkeep;
pub mod vector;
pub mod writers;

pub use error::{Result, StoreError};
pub use filter::{CompareOp, Filter};
pub use model::{
    Attributes, Chunk, ChunkMeta, Collection, Document, DocumentStatus, NewChunk, NewCollection, NewDocument, Quantization,
    VectorIndexConfig,
};
pub use recovery::{CollectionStatus, IndexHealth, StoreStatus};
pub use search::{AuditReport, SearchHit, SearchMode, SearchRequest};
pub use space::{NoSpace, SpaceGuard};
pub use store::{Store, StoreConfig, STORE_FORMAT_VERSION};
pub use writers::WriterLimits;
