//! A full disk under the derived indexes (a small tmpfs mounted on `indexes/`, sled on the normal
//! disk): keyword commits and vector index saves fail with ENOSPC. The store keeps acknowledging
//! writes and serving every search mode (hybrid included: no "rebuilding" error) and catches up
//! by itself once space comes back, without a restart. Also: the free-space reserve and the
//! collection limit.
//!
//! Mounting needs root (the sandbox and CI run as root); elsewhere the tmpfs test says it is
//! skipped.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use store::{Attributes, IndexHealth, SearchMode, SearchRequest, Store, StoreConfig, StoreError};

/// A tmpfs mounted for the test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"]).arg(dir).output().ok()?;
        if out.status.success() {
            Some(Tmpfs(dir.to_path_buf()))
        } else {
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root): {}", String::from_utf8_lossy(&out.stderr));
            None
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file until ENOSPC; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![7u8; 64 << 10];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    // Also the last partial block.
    let mut small = vec![7u8; 512];
    while f.write_all(&small).is_ok() {}
    small.truncate(1);
    while f.write_all(&small).is_ok() {}
    path
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.path().is_dir() {
            out.extend(tmp_files(&entry.path()));
        } else if name.ends_with(".tmp") {
            out.push(entry.path());
        }
    }
    out
}

#[test]
fn a_full_disk_under_the_indexes_keeps_search_serving_and_heals_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Tmpfs::mount(&dir.path().join("indexes"), 4 << 20) else { return };
    let config = StoreConfig { checkpoint_every: 5, retry_interval: Duration::from_millis(100), ..config(dir.path()) };
    let store = Store::open(config.clone()).unwrap();
    let coll = store.create_collection(new_collection()).unwrap().id;
    for i in 0..4 {
        let (doc, chunks) = document(&format!("before-{i}"), 4, Attributes::new());
        store.add_document(&coll, doc, chunks).unwrap();
    }
    let filler = fill(&mount.0);

    // Writes are still acknowledged (sled has room); the index updates fail underneath.
    let mut added = Vec::new();
    for i in 0..6 {
        let (doc, chunks) = document(&format!("during-{i}"), 4, Attributes::new());
        store.add_document(&coll, doc, chunks).unwrap();
        added.push(format!("during-{i}"));
    }
    store.delete_document(&coll, "before-0").unwrap();
    let status = store.status().collections.remove(0);
    assert_eq!(status.health, IndexHealth::Ready, "{status:?}");
    let degraded = status.degraded.unwrap_or_else(|| panic!("a failed commit or save shows: {:?}", store.status()));
    eprintln!("degraded: {degraded}");
    assert!(store.checkpoint().is_err(), "the vector index cannot be saved on a full disk");
    assert!(tmp_files(&mount.0).is_empty(), "a failed save leaves no temp file: {:?}", tmp_files(&mount.0));

    // Every mode answers; the vector index (in memory) has the new chunks.
    let target = store.chunks(&coll, "during-3").unwrap().remove(2);
    let vector = store.search(&coll, &SearchRequest::new(SearchMode::Vector, "", Some(target.embedding.clone()))).unwrap();
    assert_eq!(vector[0].key, target.key);
    let hybrid = store.search(&coll, &SearchRequest::new(SearchMode::Hybrid, target.meta.text.clone(), Some(target.embedding.clone()))).unwrap();
    assert!(hybrid.iter().any(|h| h.key == target.key), "hybrid search serves during the outage: {hybrid:?}");
    let keyword = store.search(&coll, &SearchRequest::new(SearchMode::Keyword, "before-1", None)).unwrap();
    assert_eq!(keyword.len(), 4, "keyword search serves its last commit");

    // Space comes back: the upkeep thread catches up and saves, no restart.
    std::fs::remove_file(&filler).unwrap();
    wait_until("the collection is no longer degraded", Duration::from_secs(20), || store.status().collections[0].degraded.is_none());
    for id in &added {
        let hits = store.search(&coll, &SearchRequest::new(SearchMode::Keyword, id.clone(), None)).unwrap();
        assert_eq!(hits.len(), 4, "{id} is in the keyword index after the disk has room again");
    }
    assert!(store.search(&coll, &SearchRequest::new(SearchMode::Keyword, "before-0", None)).unwrap().is_empty(), "the delete was caught up too");
    let report = store.audit(&coll).unwrap();
    assert!(report.is_consistent(), "{report:?}");
    store.checkpoint().unwrap();

    // A restart finds saved indexes: nothing to rebuild.
    drop(store);
    let store = Store::open(config).unwrap();
    assert!(store.wait_ready(Duration::from_secs(30)));
    let status = store.status().collections.remove(0);
    assert_eq!(status.health, IndexHealth::Ready);
    assert_eq!(status.rebuilt_because, None, "{status:?}");
    assert!(store.audit(&coll).unwrap().is_consistent());
    drop(store);
    drop(mount);
}

#[test]
fn recovery_that_fails_on_a_full_disk_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Tmpfs::mount(&dir.path().join("indexes"), 4 << 20) else { return };
    let config = StoreConfig { retry_interval: Duration::from_millis(100), ..config(dir.path()) };
    let coll = {
        let store = Store::open(config.clone()).unwrap();
        let coll = store.create_collection(new_collection()).unwrap().id;
        let (doc, chunks) = document("kept", 5, Attributes::new());
        store.add_document(&coll, doc, chunks).unwrap();
        coll
    };
    // The indexes are lost, and there is no room to rebuild them.
    std::fs::remove_dir_all(mount.0.join(&coll)).unwrap();
    let filler = fill(&mount.0);
    let store = Store::open(config).unwrap();
    wait_until("recovery fails", Duration::from_secs(20), || matches!(store.status().collections[0].health, IndexHealth::Failed { .. }));
    let err = store.search(&coll, &SearchRequest::new(SearchMode::Keyword, "kept", None)).unwrap_err();
    assert!(matches!(err, StoreError::IndexNotReady { .. }), "{err}");
    std::fs::remove_file(&filler).unwrap();
    wait_until("the retried recovery succeeds", Duration::from_secs(20), || store.status().ready);
    assert_eq!(store.search(&coll, &SearchRequest::new(SearchMode::Keyword, "kept", None)).unwrap().len(), 5);
    drop(store);
    drop(mount);
}

#[test]
fn the_free_space_reserve_refuses_new_content_but_not_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let coll = store.create_collection(new_collection()).unwrap().id;
    let (doc, chunks) = document("small", 2, Attributes::new());
    store.add_document(&coll, doc, chunks).unwrap();
    drop(store);
    // A reserve of 1 PB: larger than any disk this runs on.
    let store = Store::open(StoreConfig { min_free_bytes: 1 << 50, ..config(dir.path()) }).unwrap();
    assert!(store.wait_ready(Duration::from_secs(30)));
    let (doc, chunks) = document("refused", 2, Attributes::new());
    let err = store.add_document(&coll, doc, chunks).unwrap_err();
    let StoreError::NoSpace(numbers) = &err else { panic!("expected NoSpace, got {err}") };
    assert_eq!(numbers.reserve, 1 << 50);
    assert!(numbers.needed > 0 && numbers.free > 0, "{numbers:?}");
    assert!(err.is_out_of_space() && !err.is_user_error());
    assert!(err.to_string().contains("bytes free"), "{err}");
    assert!(matches!(store.document(&coll, "refused"), Err(StoreError::DocumentNotFound { .. })), "nothing was stored");
    // What frees space or records state still works.
    store.set_document_status(&coll, "small", store::DocumentStatus::Failed, Some("x".into())).unwrap();
    store.delete_document(&coll, "small").unwrap();
    assert!(store.documents(&coll).unwrap().is_empty());
}

#[test]
fn the_collection_limit_is_enforced_and_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig { max_collections: 3, ..config(dir.path()) }).unwrap();
    let ids: Vec<String> = (0..3).map(|_| store.create_collection(new_collection()).unwrap().id).collect();
    let err = store.create_collection(new_collection()).unwrap_err();
    assert!(matches!(err, StoreError::CollectionLimit { limit: 3 }), "{err}");
    assert!(err.is_user_error());
    assert_eq!(store.collections().len(), 3);
    store.delete_collection(&ids[0]).unwrap();
    store.create_collection(new_collection()).unwrap();
    assert_eq!(store.collections().len(), 3);
}
