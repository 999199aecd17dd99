//! hearth's embedded store (collections, documents, chunks, hybrid search).
//!
//! Design, to be built under its own issue: sled is the source of truth (documents, chunks,
//! embeddings, metadata; a write is acknowledged only after sled has flushed it); the usearch HNSW
//! index and the keyword index are derived, saved atomically with the sled sequence number they
//! reflect, and rebuilt or caught up at start-up. This crate is synchronous and knows nothing about
//! HTTP or async runtimes.
