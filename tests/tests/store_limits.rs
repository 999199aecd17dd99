//! The store's limits as a user meets them, against the real binary: a hundred vector stores keep
//! the daemon's thread count bounded (counted in /proc/PID/task) and still search and ingest;
//! `[store] max_vector_stores` answers 409 naming itself; a disk short of `[store] min_free_bytes`
//! refuses uploads and attachments with 507 and the numbers, stores nothing, and accepts them
//! again once the reserve fits (after a restart with another configuration).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_tests::{get_json as get, post_json as post, post_file, upload_file, Options, Server};
use serde_json::{json, Value};

/// What 100 vector stores may add to the threads of a daemon with none.
const THREAD_BOUND: usize = 64;
/// One petabyte: more than any disk this runs on has free.
const HUGE_RESERVE: u64 = 1 << 50;

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

/// `POST /v1/files` answering whatever it answers (the harness's `upload_file` insists on 200).
async fn try_upload(server: &Server, name: &str, content: &[u8]) -> (u16, Value) {
    post_file(server, name, content).await.unwrap_or_else(|e| panic!("upload: {e}"))
}

/// Poll a vector store file until it leaves `in_progress`.
async fn wait_file(server: &Server, vs: &str, file: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, v) = get(server, &format!("/v1/vector_stores/{vs}/files/{file}")).await;
        if status == 200 && v["status"] != "in_progress" {
            return v;
        }
        assert!(Instant::now() < deadline, "file {file} still {v} after 120 s\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn hybrid_search(server: &Server, vs: &str, query: &str) -> Vec<Value> {
    let (status, v) = post(server, &format!("/v1/vector_stores/{vs}/search"), &json!({"query": query, "search_mode": "hybrid"})).await;
    assert_eq!(status, 200, "{v}\n{}", server.log());
    v["data"].as_array().cloned().unwrap_or_default()
}

const GARDEN: &str = "Tomatoes need six hours of direct sun a day. Water the beds at dawn, never at noon, \
                      and mulch with straw so the soil keeps its moisture through July.";

#[tokio::test]
async fn a_hundred_vector_stores_keep_the_threads_bounded_and_the_limit_answers_409() {
    // The watched inbox makes one vector store; a hundred more reach the limit of 101.
    let server = Server::start_with(Options { config: Some("[store]\nmax_vector_stores = 101\n"), ..Options::default() });
    let pid = server.pid();
    let (_, listed) = get(&server, "/v1/vector_stores").await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "only the inbox store: {listed}");
    let empty = threads(pid);
    // Sample the thread count while the stores are created, not only between requests.
    let (peak, stop) = (Arc::new(AtomicUsize::new(empty)), Arc::new(AtomicBool::new(false)));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(threads(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut ids = Vec::new();
    for i in 0..100 {
        let (status, v) = post(&server, "/v1/vector_stores", &json!({"name": format!("store-{i}")})).await;
        assert_eq!(status, 200, "store {i}: {v}\n{}", server.log());
        ids.push(v["id"].as_str().unwrap_or_default().to_owned());
    }
    let after = threads(pid);
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("daemon threads: {empty} with no vector store but the inbox, {after} after 100 more (peak {peak})");
    assert!(peak < empty + THREAD_BOUND, "{peak} threads at most with 101 vector stores, {empty} with one");

    // The 102nd is refused with a message naming the limit and its key.
    let (status, v) = post(&server, "/v1/vector_stores", &json!({"name": "one too many"})).await;
    assert_eq!(status, 409, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("101") && message.contains("max_vector_stores"), "{message}");
    assert_eq!(v["error"]["code"], "limit_reached");
    let (_, listed) = get(&server, "/v1/vector_stores?limit=100").await;
    assert!(listed["data"].as_array().is_some_and(|d| d.iter().all(|s| s["name"] != "one too many")), "nothing was created");

    // Attach and search still work in the last store, and deleting one makes room again.
    let last = ids.last().cloned().unwrap_or_default();
    let file = upload_file(&server, "garden.txt", GARDEN.as_bytes()).await;
    let (status, v) = post(&server, &format!("/v1/vector_stores/{last}/files"), &json!({"file_id": file})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(wait_file(&server, &last, &file).await["status"], "completed");
    let hits = hybrid_search(&server, &last, "how much sun do tomatoes need").await;
    assert_eq!(hits.first().map(|h| h["file_id"].clone()), Some(json!(file)), "{hits:?}");
    let r = reqwest::Client::new().delete(server.url(&format!("/v1/vector_stores/{}", ids[0]))).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 200);
    let (status, v) = post(&server, "/v1/vector_stores", &json!({"name": "room again"})).await;
    assert_eq!(status, 200, "{v}");
    assert!(threads(pid) < empty + THREAD_BOUND, "{} threads after ingesting", threads(pid));
}

fn files_on_disk(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.join("files"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != "tmp").collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn start(state: &Path, config: &str) -> Server {
    let state = state.to_string_lossy().into_owned();
    Server::start_with(Options { config: Some(config), env: vec![("HEARTH__SERVER__STATE_DIR", state.as_str())] })
}

#[tokio::test]
async fn a_disk_short_of_the_reserve_refuses_uploads_with_507_and_the_numbers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = dir.path().join("state");
    // A file and a vector store from a normal start.
    let (vs, kept) = {
        let server = start(&state, "");
        let kept = upload_file(&server, "kept.txt", GARDEN.as_bytes()).await;
        let (status, v) = post(&server, "/v1/vector_stores", &json!({"name": "garden"})).await;
        assert_eq!(status, 200, "{v}");
        (v["id"].as_str().unwrap_or_default().to_owned(), kept)
    };
    let stored = files_on_disk(&state);

    // The reserve is larger than the disk: uploads and attachments are refused, nothing stored.
    {
        let server = start(&state, &format!("[store]\nmin_free_bytes = {HUGE_RESERVE}\n"));
        let (status, v) = try_upload(&server, "refused.txt", b"some words that must not be stored").await;
        assert_eq!(status, 507, "{v}");
        let error = &v["error"];
        assert_eq!(error["code"], "insufficient_storage", "{v}");
        assert_eq!(error["reserve_bytes"], json!(HUGE_RESERVE), "{v}");
        let free = error["free_bytes"].as_u64().unwrap_or_default();
        assert!(free > 0 && free < HUGE_RESERVE, "{v}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("{free} bytes free")) && message.contains(&HUGE_RESERVE.to_string()) && message.contains("min_free_bytes"), "{message}");
        let (_, listed) = get(&server, "/v1/files").await;
        assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "only the earlier file: {listed}");
        assert_eq!(files_on_disk(&state), stored, "nothing new on disk");
        assert_eq!(std::fs::read_dir(state.join("files/tmp")).map(|d| d.count()).unwrap_or(0), 0, "no partial upload left");

        let (status, v) = post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": kept})).await;
        assert_eq!(status, 507, "{v}");
        assert_eq!(v["error"]["needed_bytes"], json!(GARDEN.len()), "an attachment needs about its file's size: {v}");
        let (status, v) = post(&server, &format!("/v1/vector_stores/{vs}/file_batches"), &json!({"file_ids": [kept]})).await;
        assert_eq!(status, 507, "{v}");
        let (_, files) = get(&server, &format!("/v1/vector_stores/{vs}/files")).await;
        assert_eq!(files["data"].as_array().map(Vec::len), Some(0), "nothing attached: {files}");
        // Reading and searching are not refused.
        let (status, _) = get(&server, &format!("/v1/files/{kept}")).await;
        assert_eq!(status, 200);
    }

    // A reserve that fits: the same requests go through and the file becomes searchable.
    let server = start(&state, "[store]\nmin_free_bytes = 1048576\n");
    let (status, v) = try_upload(&server, "accepted.txt", b"Roses want a sunny spot and rich soil.").await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": kept})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(wait_file(&server, &vs, &kept).await["status"], "completed");
    let hits = hybrid_search(&server, &vs, "when should the beds be watered").await;
    assert_eq!(hits.first().map(|h| h["file_id"].clone()), Some(json!(kept)), "{hits:?}");
}

/// A tmpfs mounted for a test; unmounted (lazily: the server may still hold files) when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"]).arg(dir).output().ok()?;
        if out.status.success() {
            Some(Tmpfs(dir.to_path_buf()))
        } else {
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root): {}", String::from_utf8_lossy(&out.stderr));
            None
        }
    }

    /// Fills it with one file until ENOSPC; returns the file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        for size in [64 << 10, 512, 1] {
            while f.write_all(&vec![7u8; size]).is_ok() {}
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn metric(server: &Server, name: &str) -> f64 {
    let text = reqwest::get(server.url("/metrics")).await.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// The report: a full disk left hybrid search answering 503 until a restart. With the
/// indexes on a full tmpfs, ingestion still completes, hybrid search answers 200 and finds the new
/// file, and once space is back the keyword index catches up by itself.
#[tokio::test]
async fn a_full_disk_under_the_indexes_keeps_hybrid_search_answering_and_heals_without_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = dir.path().join("state");
    let Some(tmpfs) = Tmpfs::mount(&state.join("store").join("indexes"), 8 << 20) else { return };
    let server = start(&state, "");
    let (status, v) = post(&server, "/v1/vector_stores", &json!({"name": "garden"})).await;
    assert_eq!(status, 200, "{v}");
    let vs = v["id"].as_str().unwrap_or_default().to_owned();
    let garden = upload_file(&server, "garden.txt", GARDEN.as_bytes()).await;
    post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": garden})).await;
    assert_eq!(wait_file(&server, &vs, &garden).await["status"], "completed");

    let filler = tmpfs.fill();
    let roses = upload_file(&server, "roses.txt", b"Roses want a sunny spot, rich loamy earth and pruning in early March.").await;
    post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": roses})).await;
    assert_eq!(wait_file(&server, &vs, &roses).await["status"], "completed", "{}", server.log());
    let hits = hybrid_search(&server, &vs, "when are roses pruned").await;
    assert!(hits.iter().any(|h| h["file_id"] == json!(roses)), "hybrid search finds the new file from its vectors: {hits:?}");
    assert_eq!(metric(&server, "hearth_store_degraded_vector_stores").await, 1.0, "the lagging index shows");

    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(90);
    while metric(&server, "hearth_store_degraded_vector_stores").await != 0.0 {
        assert!(Instant::now() < deadline, "still degraded 90 s after space came back\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, v) = post(&server, &format!("/v1/vector_stores/{vs}/search"), &json!({"query": "pruning roses", "search_mode": "keyword"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"][0]["file_id"], json!(roses), "the keyword index caught up: {v}");
    drop(server);
}

/// A large upload stops at the reserve while it streams, instead of filling the disk: the files
/// directory is a 64 MiB tmpfs with 32 MiB kept free, and an 80 MiB upload (more than the disk:
/// checked only at the start and the end, it would fail with ENOSPC, a 500) is refused with 507
/// part-way; nothing of it stays, and a small upload still goes through.
#[tokio::test]
async fn a_large_upload_stops_at_the_reserve_instead_of_filling_the_disk() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = dir.path().join("state");
    let Some(tmpfs) = Tmpfs::mount(&state.join("files"), 64 << 20) else { return };
    let server = start(&state, "[store]\nmin_free_bytes = 33554432\n");
    let big = vec![b'x'; 80 << 20];
    match tokio::time::timeout(Duration::from_secs(60), try_upload(&server, "big.txt", &big)).await {
        Ok((status, v)) => {
            assert_eq!(status, 507, "{v}");
            assert_eq!(v["error"]["reserve_bytes"], json!(33554432), "{v}");
        }
        Err(_) => panic!("the upload hung\n{}", server.log()),
    }
    assert!(server.log().contains("Content refused"), "{}", server.log());
    let left: Vec<_> = std::fs::read_dir(tmpfs.0.join("tmp")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "the refused upload is removed: {left:?}");
    let (_, listed) = get(&server, "/v1/files").await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(0), "{listed}");
    let (status, v) = try_upload(&server, "small.txt", &[b'y'; 1 << 20]).await;
    assert_eq!(status, 200, "{v}");
    drop(server);
}
