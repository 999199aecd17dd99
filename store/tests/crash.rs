//! Crash test: a writer in a child process (this test binary, re-executed) adds and deletes
//! documents, printing each acknowledgement; the parent SIGKILLs it at random moments, reopens
//! the store and checks that every acknowledged document is present with all its chunks exactly
//! once in sled and in both indexes, that nothing unacknowledged half-exists, and that no vector
//! is zero.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use store::{Attributes, SearchMode, SearchRequest};

const CHILD_ENV: &str = "HEARTH_STORE_CRASH_CHILD";
const KILLS: usize = 60;

/// The writer. Only does work when re-executed by `kill_test` with the store path in the env.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let path = std::path::PathBuf::from(path);
    let store = open(&path);
    let coll = std::fs::read_to_string(path.join("collection-id")).unwrap();
    let round: u64 = std::env::var("HEARTH_STORE_CRASH_ROUND").unwrap().parse().unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    let mut rng = fastrand::Rng::with_seed(round);
    for i in 0.. {
        let id = format!("r{round}-d{i}");
        let (doc, chunks) = document(&id, rng.usize(1..6), Attributes::new());
        store.add_document(&coll, doc, chunks).unwrap();
        writeln!(out, "ADD {id}").unwrap();
        out.flush().unwrap();
        if rng.u8(..) < 64 {
            let docs = store.documents(&coll).unwrap();
            if let Some(victim) = docs.get(rng.usize(..docs.len())) {
                writeln!(out, "DELETING {}", victim.id).unwrap();
                out.flush().unwrap();
                store.delete_document(&coll, &victim.id).unwrap();
                writeln!(out, "DEL {}", victim.id).unwrap();
                out.flush().unwrap();
            }
        }
        if rng.u8(..) < 40 {
            store.checkpoint().unwrap();
        }
    }
}

#[test]
fn kill_test() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    {
        let store = open(&path);
        let coll = store.create_collection(new_collection()).unwrap();
        std::fs::write(path.join("collection-id"), &coll.id).unwrap();
    }
    let coll = std::fs::read_to_string(path.join("collection-id")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    // Documents acknowledged as added and not (possibly) deleted since.
    let mut live: BTreeSet<String> = BTreeSet::new();
    // Documents whose delete started: they may or may not exist.
    let mut maybe: BTreeSet<String> = BTreeSet::new();
    // Documents whose delete was acknowledged.
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    let mut total_acks = 0;
    for round in 0..KILLS as u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &path)
            .env("HEARTH_STORE_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child has opened the store, then let it write for a random while.
        // (libtest prints its own text first, "test crash_child_writer ... " without a newline.)
        while !rx.recv_timeout(Duration::from_secs(60)).unwrap().ends_with("READY") {}
        std::thread::sleep(Duration::from_millis(rng.u64(1..120)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        for line in rx.try_iter() {
            if let Some(id) = line.strip_prefix("ADD ") {
                live.insert(id.to_string());
                total_acks += 1;
            } else if let Some(id) = line.strip_prefix("DELETING ") {
                live.remove(id);
                maybe.insert(id.to_string());
            } else if let Some(id) = line.strip_prefix("DEL ") {
                maybe.remove(id);
                deleted.insert(id.to_string());
            }
        }
        // Reopen: recovery must leave sled and both indexes identical.
        let store = open(&path);
        assert!(store.wait_ready(Duration::from_secs(30)), "round {round}: not ready: {:?}", store.status());
        let status = store.status();
        assert!(status.ready, "round {round}: {status:?}");
        // Saves are atomic, so a kill never leaves an index that needs a rebuild: catching up suffices.
        assert_eq!(status.collections[0].rebuilt_because, None, "round {round}");
        let report = store.audit(&coll).unwrap();
        assert!(report.is_consistent(), "round {round}: {report:?}");
        let docs: BTreeSet<String> = store.documents(&coll).unwrap().into_iter().map(|d| d.id).collect();
        for id in &live {
            assert!(docs.contains(id), "round {round}: acknowledged document {id} lost");
            let chunks = store.chunks(&coll, id).unwrap();
            assert!(!chunks.is_empty());
            assert_eq!(chunks.len() as u64, store.document(&coll, id).unwrap().chunk_count, "round {round}: {id}");
        }
        for id in &deleted {
            assert!(!docs.contains(id), "round {round}: acknowledged delete of {id} undone");
        }
        for id in &docs {
            // Anything else present is the add that was in flight when this round's writer died.
            let known = live.contains(id) || maybe.contains(id);
            assert!(known || id.starts_with(&format!("r{round}-")), "round {round}: unexpected document {id}");
        }
        // An in-flight delete resolved one way or the other; what is present now is durable.
        maybe.clear();
        live.extend(docs.iter().cloned());
        // A search answers with an acknowledged chunk.
        if let Some(id) = live.iter().next() {
            let chunk = store.chunks(&coll, id).unwrap().remove(0);
            let hits = store.search(&coll, &SearchRequest::new(SearchMode::Hybrid, chunk.meta.text.clone(), Some(chunk.embedding.clone()))).unwrap();
            assert_eq!(hits[0].key, chunk.key, "round {round}");
        }
    }
    eprintln!("{KILLS} kills, {total_acks} acknowledged adds, {} acknowledged deletes", deleted.len());
    assert!(total_acks >= KILLS, "the writer acknowledged only {total_acks} documents in {KILLS} rounds");
}
