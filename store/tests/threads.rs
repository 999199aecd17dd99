//! The store's threads do not grow with its collections: a hundred collections, each written to,
//! then reopened, keep the process within a fixed number of threads (counted in /proc/self/task).
//! Before the writer pool, every collection held a tantivy writer with six threads.
//!
//! One test in this binary, so no other test's threads are counted.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use store::{Attributes, SearchMode, SearchRequest, Store, StoreConfig, WriterLimits};

const COLLECTIONS: usize = 100;
/// What the store may add to an empty store's threads: four open writers of three threads, two
/// recovery threads, and room for sled's shared I/O pool, which grows by itself under load.
const BOUND: usize = 4 * store::writers::THREADS_PER_WRITER + 2 + 16;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn config(path: &std::path::Path) -> StoreConfig {
    StoreConfig {
        writers: WriterLimits { max_open: 4, idle_close: Duration::from_millis(300) },
        recovery_threads: 2,
        ..common::config(path)
    }
}

#[test]
fn a_hundred_collections_keep_the_thread_count_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let empty = threads();
    let mut peak = empty;
    let mut ids = Vec::new();
    for i in 0..COLLECTIONS {
        let id = store.create_collection(new_collection()).unwrap().id;
        let (doc, chunks) = document(&format!("doc-{i}"), 3, Attributes::new());
        store.add_document(&id, doc, chunks).unwrap();
        peak = peak.max(threads());
        assert!(store.open_writers() <= 4, "{} writers open", store.open_writers());
        ids.push(id);
    }
    eprintln!("threads: {empty} with an empty store, at most {peak} while creating and writing {COLLECTIONS} collections");
    assert!(peak <= empty + BOUND, "{peak} threads with {COLLECTIONS} collections, {empty} with none (bound +{BOUND})");

    // Every collection still answers, by vector and by keyword.
    for (i, id) in ids.iter().enumerate() {
        let target = store.chunks(id, &format!("doc-{i}")).unwrap().remove(1);
        let hits = store.search(id, &SearchRequest::new(SearchMode::Vector, "", Some(target.embedding.clone()))).unwrap();
        assert_eq!(hits[0].key, target.key, "collection {i}");
        let hits = store.search(id, &SearchRequest::new(SearchMode::Keyword, format!("doc-{i}"), None)).unwrap();
        assert_eq!(hits.len(), 3, "collection {i}");
    }

    // Idle writers close: the threads go back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.open_writers() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(store.open_writers(), 0, "idle writers are closed");

    // Reopening recovers every collection on at most two threads at a time.
    drop(store);
    let before = threads();
    let store = Store::open(config(dir.path())).unwrap();
    let mut peak = threads();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !store.status().ready && Instant::now() < deadline {
        peak = peak.max(threads());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(store.status().ready, "{:?}", store.status());
    eprintln!("threads: {before} before reopening, at most {peak} while recovering {COLLECTIONS} collections");
    assert!(peak <= before + BOUND + 1, "{peak} threads while recovering, {before} before");
    assert_eq!(store.collections().len(), COLLECTIONS);
    for (i, id) in ids.iter().enumerate() {
        let hits = store.search(id, &SearchRequest::new(SearchMode::Keyword, format!("doc-{i}"), None)).unwrap();
        assert_eq!(hits.len(), 3, "collection {i} after reopening");
    }
}
