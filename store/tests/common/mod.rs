//! Helpers shared by the store's integration tests.
#![allow(dead_code, reason = "each test binary uses a part")]
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

use store::{Attributes, DocumentStatus, NewChunk, NewCollection, NewDocument, Store, StoreConfig, VectorIndexConfig};

pub const DIM: usize = 16;

/// A deterministic, never-zero embedding for a seed.
pub fn embedding(seed: u64) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v: Vec<f32> = (0..DIM).map(|_| rng.f32() - 0.5).collect();
    v[0] += 0.01;
    v
}

pub fn config(path: &std::path::Path) -> StoreConfig {
    StoreConfig { search_threads: 2, checkpoint_every: 25, ..StoreConfig::new(path) }
}

pub fn new_collection() -> NewCollection {
    NewCollection {
        name: "docs".into(),
        embedding_model: "test".into(),
        dimension: DIM,
        metadata: Attributes::new(),
        index: VectorIndexConfig::default(),
    }
}

/// A document `id` with `n` chunks whose texts and embeddings derive from `id`.
pub fn document(id: &str, n: usize, attributes: Attributes) -> (NewDocument, Vec<NewChunk>) {
    let doc = NewDocument {
        id: Some(id.to_string()),
        name: format!("{id}.txt"),
        content_hash: format!("hash-{id}"),
        size: 100,
        attributes,
        status: DocumentStatus::Completed,
    };
    let seed = id.bytes().fold(1469598103934665603u64, |h, b| (h ^ b as u64).wrapping_mul(1099511628211));
    let chunks = (0..n)
        .map(|i| NewChunk {
            text: format!("chunk {i} of {id} mentions word{} and topic{}", i % 7, seed % 13),
            embedding: embedding(seed.wrapping_add(i as u64)),
            page: Some(i as u32 + 1),
            char_start: i as u64 * 100,
            char_end: i as u64 * 100 + 99,
            attributes: Attributes::new(),
        })
        .collect();
    (doc, chunks)
}

pub fn open(path: &std::path::Path) -> Store {
    Store::open(config(path)).unwrap()
}
