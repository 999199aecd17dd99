//! The store end to end: documents in, search out (vector, keyword, hybrid, filters), deletes,
//! reopening, and start-up with damaged or missing indexes.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use store::{Attributes, Filter, IndexHealth, SearchMode, SearchRequest, Store, StoreError};

fn attrs(v: serde_json::Value) -> Attributes {
    v.as_object().cloned().unwrap()
}

#[test]
fn add_search_filter_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let coll = store.create_collection(new_collection()).unwrap().id;
    for (i, lang) in ["en", "de", "en", "fr"].iter().enumerate() {
        let (doc, chunks) = document(&format!("file-{i}"), 5, attrs(json!({"lang": lang, "year": 2020 + i})));
        store.add_document(&coll, doc, chunks).unwrap();
    }
    let dup = document("file-0", 1, Attributes::new());
    assert!(matches!(store.add_document(&coll, dup.0, dup.1), Err(StoreError::DocumentExists { .. })));
    let target = store.chunks(&coll, "file-2").unwrap().remove(3);

    // Vector: the chunk finds itself with similarity ~1.
    let req = SearchRequest::new(SearchMode::Vector, "", Some(target.embedding.clone()));
    let hits = store.search(&coll, &req).unwrap();
    assert_eq!(hits.len(), 10);
    assert_eq!(hits[0].key, target.key);
    assert!(hits[0].score > 0.99);
    assert_eq!(hits[0].document_name, "file-2.txt");
    assert_eq!(hits[0].attributes["lang"], "en");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    // Keyword: the document id appears only in its own chunks' text.
    let hits = store.search(&coll, &SearchRequest::new(SearchMode::Keyword, "file-3", None)).unwrap();
    assert_eq!(hits.len(), 5, "{hits:?}");
    assert!(hits.iter().all(|h| h.document_id == "file-3"));

    // Hybrid: agreeing evidence puts the target first.
    let hits = store.search(&coll, &SearchRequest::new(SearchMode::Hybrid, target.meta.text.clone(), Some(target.embedding.clone()))).unwrap();
    assert_eq!(hits[0].key, target.key);
    assert!(hits[0].score > hits[1].score);

    // Filters: selective filters still return every match.
    let mut req = SearchRequest::new(SearchMode::Vector, "", Some(target.embedding.clone()));
    req.max_num_results = 50;
    req.filter = Some(Filter::parse(&json!({"type":"and","filters":[
        {"type":"eq","key":"lang","value":"en"},{"type":"gte","key":"year","value":2022}]})).unwrap());
    let hits = store.search(&coll, &req).unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.document_id == "file-2"));
    req.filter = Some(Filter::parse(&json!({"type":"nin","key":"lang","value":["en","de"]})).unwrap());
    let hits = store.search(&coll, &req).unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.document_id == "file-3"));

    // Threshold and result cap.
    req.filter = None;
    req.score_threshold = Some(0.99);
    req.max_num_results = 3;
    let hits = store.search(&coll, &req).unwrap();
    assert_eq!(hits.len(), 1);
    assert!(store.search(&coll, &SearchRequest::new(SearchMode::Vector, "", Some(vec![1.0; 3]))).unwrap_err().is_user_error());
    assert!(store.search(&coll, &SearchRequest::new(SearchMode::Hybrid, "x", None)).unwrap_err().is_user_error());

    // Delete removes the chunks from sled and both indexes.
    store.delete_document(&coll, "file-2").unwrap();
    let hits = store.search(&coll, &SearchRequest::new(SearchMode::Vector, "", Some(target.embedding.clone()))).unwrap();
    assert!(hits.iter().all(|h| h.document_id != "file-2"));
    assert!(store.search(&coll, &SearchRequest::new(SearchMode::Keyword, "file-2", None)).unwrap().is_empty());
    assert!(matches!(store.delete_document(&coll, "file-2"), Err(StoreError::DocumentNotFound { .. })));
    let report = store.audit(&coll).unwrap();
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(report.chunks, 15);
    assert_eq!(store.find_by_hash(&coll, "hash-file-1").unwrap().unwrap().id, "file-1");
}

#[test]
fn reopen_keeps_everything_and_collections_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (coll, other) = {
        let store = open(dir.path());
        let coll = store.create_collection(new_collection()).unwrap().id;
        let other = store.create_collection(new_collection()).unwrap().id;
        for i in 0..40 {
            let (doc, chunks) = document(&format!("d{i}"), 3, Attributes::new());
            store.add_document(&coll, doc, chunks).unwrap();
        }
        store.delete_document(&coll, "d7").unwrap();
        (coll, other)
    };
    let store = open(dir.path());
    assert!(store.wait_ready(Duration::from_secs(30)));
    assert!(store.status().ready);
    assert_eq!(store.collections().len(), 2);
    let report = store.audit(&coll).unwrap();
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(report.chunks, 39 * 3);
    store.delete_collection(&other).unwrap();
    assert!(matches!(store.collection(&other), Err(StoreError::CollectionNotFound(_))));
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.collections().len(), 1);
}

/// Damages the saved indexes in `how` ways, reopens, and expects a rebuild with working search.
fn start_with_damaged_indexes(expected_reason: &str, damage: impl Fn(&std::path::Path)) {
    let dir = tempfile::tempdir().unwrap();
    let coll = {
        let store = open(dir.path());
        let coll = store.create_collection(new_collection()).unwrap().id;
        for i in 0..30 {
            let (doc, chunks) = document(&format!("d{i}"), 4, Attributes::new());
            store.add_document(&coll, doc, chunks).unwrap();
        }
        store.checkpoint().unwrap();
        coll
    };
    let index_dir = dir.path().join("indexes").join(&coll);
    damage(&index_dir);
    std::fs::write(index_dir.join("vectors.tmp"), b"left by an interrupted save").unwrap();
    let store = open(dir.path());
    // Searches work while rebuilding (vector by exact scan) and after.
    let probe = store.chunks(&coll, "d5").unwrap().remove(0);
    let status = store.status();
    if !status.ready {
        assert!(matches!(status.collections[0].health, IndexHealth::Rebuilding { .. } | IndexHealth::CatchingUp | IndexHealth::Ready));
    }
    let hits = store.search(&coll, &SearchRequest::new(SearchMode::Vector, "", Some(probe.embedding.clone()))).unwrap();
    assert_eq!(hits[0].key, probe.key);
    assert!(store.wait_ready(Duration::from_secs(30)));
    let status = store.status();
    assert_eq!(status.collections[0].health, IndexHealth::Ready);
    let reason = status.collections[0].rebuilt_because.clone().unwrap_or_default();
    assert!(reason.contains(expected_reason), "rebuilt because {reason:?}, expected {expected_reason:?}");
    let report = store.audit(&coll).unwrap();
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(report.chunks, 120);
    let hits = store.search(&coll, &SearchRequest::new(SearchMode::Hybrid, probe.meta.text.clone(), Some(probe.embedding))).unwrap();
    assert_eq!(hits[0].key, probe.key);
    assert!(!index_dir.join("vectors.tmp").exists(), "stale temp file left behind");
}

#[test]
fn truncated_vector_index_is_rebuilt() {
    start_with_damaged_indexes("truncated", |dir| {
        let path = dir.join("vectors.hnsw");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    });
}

#[test]
fn missing_and_corrupt_keyword_index_is_rebuilt() {
    start_with_damaged_indexes("keyword index missing", |dir| std::fs::remove_dir_all(dir.join("keyword")).unwrap());
    start_with_damaged_indexes("keyword", |dir| {
        for entry in std::fs::read_dir(dir.join("keyword")).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".idx") || name.ends_with(".term") {
                let bytes = std::fs::read(entry.path()).unwrap();
                std::fs::write(entry.path(), &bytes[..bytes.len() / 2]).unwrap();
            }
        }
    });
}

#[test]
fn both_indexes_gone_are_rebuilt() {
    start_with_damaged_indexes("vector index missing", |dir| {
        std::fs::remove_file(dir.join("vectors.hnsw")).unwrap();
        std::fs::remove_dir_all(dir.join("keyword")).unwrap();
    });
}

#[test]
fn ingestion_flow_adds_chunks_to_an_in_progress_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let coll = store.create_collection(new_collection()).unwrap().id;
    let (mut doc, chunks) = document("file-x", 6, Attributes::new());
    doc.status = store::DocumentStatus::InProgress;
    let created = store.add_document(&coll, doc, Vec::new()).unwrap();
    assert_eq!(created.chunk_count, 0);
    store.add_chunks(&coll, "file-x", chunks[..4].to_vec()).unwrap();
    let after = store.add_chunks(&coll, "file-x", chunks[4..].to_vec()).unwrap();
    assert_eq!(after.chunk_count, 6);
    let done = store.set_document_status(&coll, "file-x", store::DocumentStatus::Completed, None).unwrap();
    assert_eq!((done.status, done.chunk_count), (store::DocumentStatus::Completed, 6));
    assert!(store.add_chunks(&coll, "nope", chunks[..1].to_vec()).unwrap_err().is_user_error());
    let report = store.audit(&coll).unwrap();
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(report.chunks, 6);
    let hits = store.search(&coll, &SearchRequest::new(SearchMode::Keyword, "file-x", None)).unwrap();
    assert_eq!(hits.len(), 6);
}

#[test]
fn a_failure_keeps_its_code_across_a_reopen_and_a_retry_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let coll = {
        let store = open(dir.path());
        let coll = store.create_collection(new_collection()).unwrap().id;
        let (doc, _) = document("file-f", 1, Attributes::new());
        store.add_document(&coll, doc, Vec::new()).unwrap();
        let failed = store.set_document_failed(&coll, "file-f", "unsupported_file", "no parser for it".into()).unwrap();
        assert_eq!((failed.status, failed.last_error_code.as_deref()), (store::DocumentStatus::Failed, Some("unsupported_file")));
        coll
    };
    let store = open(dir.path());
    let doc = store.document(&coll, "file-f").unwrap();
    assert_eq!((doc.last_error.as_deref(), doc.last_error_code.as_deref()), (Some("no parser for it"), Some("unsupported_file")));
    // A failure recorded without a code, or a retry, leaves none behind.
    let failed = store.set_document_status(&coll, "file-f", store::DocumentStatus::Failed, Some("other".into())).unwrap();
    assert_eq!((failed.last_error.as_deref(), failed.last_error_code), (Some("other"), None));
    store.set_document_failed(&coll, "file-f", "invalid_file", "bad".into()).unwrap();
    let again = store.set_document_status(&coll, "file-f", store::DocumentStatus::InProgress, None).unwrap();
    assert_eq!((again.last_error.as_deref(), again.last_error_code.as_deref()), (None, None));
    // A record written before codes were kept reads with none.
    let mut old = serde_json::to_value(&again).unwrap();
    old.as_object_mut().unwrap().remove("last_error_code");
    let read: store::Document = serde_json::from_value(old).unwrap();
    assert_eq!(read.last_error_code, None);
}

#[test]
fn a_renamed_document_keeps_its_chunks_and_search_shows_the_new_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let coll = store.create_collection(new_collection()).unwrap().id;
    let (doc, chunks) = document("file-r", 3, attrs(json!({"lang": "en"})));
    store.add_document(&coll, doc, chunks).unwrap();
    let target = store.chunks(&coll, "file-r").unwrap().remove(0);
    let renamed = store.update_document(&coll, "file-r", Some("renamed.txt".into()), Some(attrs(json!({"lang": "de"})))).unwrap();
    assert_eq!((renamed.name.as_str(), renamed.chunk_count), ("renamed.txt", 3));
    let hits = store.search(&coll, &SearchRequest::new(SearchMode::Vector, "", Some(target.embedding.clone()))).unwrap();
    assert_eq!(hits[0].document_name, "renamed.txt");
    assert_eq!(hits[0].attributes["lang"], "de");
    assert!(matches!(store.update_document(&coll, "nope", None, None), Err(StoreError::DocumentNotFound { .. })));
}

#[test]
fn a_collection_can_be_renamed_and_keeps_the_new_name_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = open(dir.path());
        let id = store.create_collection(new_collection()).unwrap().id;
        let updated = store.update_collection(&id, Some("renamed".into()), Some(attrs(json!({"team": "docs"})))).unwrap();
        assert_eq!((updated.name.as_str(), updated.metadata["team"].as_str()), ("renamed", Some("docs")));
        id
    };
    let store = open(dir.path());
    assert_eq!(store.collection(&id).unwrap().name, "renamed");
    assert_eq!(store.collections()[0].metadata["team"], "docs");
    assert!(matches!(store.update_collection("vs_nope", None, None), Err(StoreError::CollectionNotFound(_))));
}

/// Dropping a store releases sled's file lock before `drop` returns, so the same process can
/// open it again at once (a daemon that restarts its store in-process; a test that reopens).
/// sled leaves log writes and file truncations to its own I/O threads, which may keep the
/// database file, and so its lock, for a few milliseconds after the last handle is gone. This
/// loop met that window in about 1 of 200 rounds before `Store`'s drop waited for the lock (the
/// unit test `dropping_the_lock_guard_waits_for_the_lock_to_be_released` checks the wait itself
/// deterministically).
#[test]
fn a_dropped_store_can_be_reopened_at_once() {
    for round in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            let keep = store.create_collection(new_collection()).unwrap().id;
            let gone = store.create_collection(new_collection()).unwrap().id;
            for i in 0..4 {
                let (doc, chunks) = document(&format!("d{i}"), 3, Attributes::new());
                store.add_document(if i == 0 { &keep } else { &gone }, doc, chunks).unwrap();
            }
            store.delete_collection(&gone).unwrap();
        }
        let store = Store::open(config(dir.path())).unwrap_or_else(|e| panic!("round {round}: reopening failed: {e}"));
        assert_eq!(store.collections().len(), 1);
    }
}

#[test]
fn similarities_are_the_cosines_of_the_chunks_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let coll = store.create_collection(new_collection()).unwrap().id;
    let (doc, chunks) = document("file-0", 3, Attributes::new());
    store.add_document(&coll, doc, chunks).unwrap();
    let chunks = store.chunks(&coll, "file-0").unwrap();
    let query = chunks[1].embedding.clone();
    let keys = [chunks[1].key, chunks[0].key, 999_999];
    let got = store.similarities(&coll, &keys, &query).unwrap();
    assert!(got[0].unwrap() > 0.999, "{got:?}");
    let vector = store.search(&coll, &SearchRequest::new(SearchMode::Vector, "", Some(query.clone()))).unwrap();
    let expected = vector.iter().find(|h| h.key == chunks[0].key).unwrap().score;
    assert!((got[1].unwrap() - expected).abs() < 1e-3, "{got:?} vs {expected}");
    assert_eq!(got[2], None);
    assert!(store.similarities(&coll, &keys, &[1.0; 3]).unwrap_err().is_user_error());
}
