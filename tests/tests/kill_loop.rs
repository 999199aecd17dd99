//! The kill loop: a daemon SIGKILLed again and again while files are uploaded and attached
//! through the API and dropped into a watched folder. After the last restart every acknowledged
//! file is `completed` exactly once: listed once, with the chunk count of a clean ingestion of the
//! same text, and found by search through its own tag and no other file's.
//!
//! "Acknowledged" means what a client was told: an attach answered 200 (the job is on disk), or a
//! file written into the watched folder (the folder is the acknowledgement). What was in flight
//! when the kill came may be lost, and must then leave nothing behind.
//!
//! CI runs [`CI_KILLS`] kills; `HEARTH_KILL_LOOP_KILLS=200 cargo test --release --test kill_loop
//! -- --nocapture` is the long run recorded in BENCHMARKS.md. `HEARTH_KILL_LOOP_SEED` repeats a run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use hearth_tests::{post_file, Options, Server};
use serde_json::{json, Value};

/// Kills in the bounded CI run.
const CI_KILLS: usize = 8;
/// Files uploaded or dropped between two kills, at most (`HEARTH_KILL_LOOP_FILES` overrides it):
/// enough to be mid-ingestion at each kill, few enough that a 2-core machine ingests them all in the
/// end.
const MAX_FILES_PER_ROUND: usize = 6;
/// The watched folder settles fast, so dropped files are picked up between kills.
const CONFIG: &str = "[ingest]\nstable_seconds = 0.2\nrescan_seconds = 0.5\n";

/// A text of fixed shape whose only difference between files is its four-digit tag, so every
/// file chunks the same way and a clean run's chunk count is the count for all of them.
fn document(tag: &str) -> String {
    let mut text = format!("# Report {tag}\n\nThis report carries the marker {tag} and nothing else of note.\n\n");
    for i in 0..60 {
        text.push_str(&format!("Paragraph {i:03} of the report describes item {:03} in ordinary words.\n\n", (i * 37) % 101));
    }
    text
}

/// A small deterministic generator (xorshift), seeded per run and printed so a failure repeats.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_else(|e| panic!("client: {e}"))
}

/// `POST /v1/files`; `None` when the daemon died under it or refused it.
async fn try_upload(server: &Server, name: &str, content: &[u8]) -> Option<String> {
    match post_file(server, name, content).await {
        Ok((200, v)) => v["id"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// `POST /v1/vector_stores/{vs}/files`; true once the daemon acknowledged the attach.
async fn try_attach(server: &Server, vs: &str, file_id: &str) -> bool {
    let r = client().post(server.url(&format!("/v1/vector_stores/{vs}/files"))).json(&json!({"file_id": file_id})).send().await;
    r.is_ok_and(|r| r.status() == 200)
}

async fn get(server: &Server, path: &str) -> Value {
    let r = client().get(server.url(path)).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", server.log()));
    assert_eq!(r.status(), 200, "GET {path}\n{}", server.log());
    r.json().await.unwrap_or(Value::Null)
}

async fn store_id(server: &Server, name: &str) -> String {
    let v = get(server, "/v1/vector_stores?limit=100").await;
    let stores = v["data"].as_array().cloned().unwrap_or_default();
    let found = stores.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no store {name} in {v}"));
    found["id"].as_str().unwrap_or_default().to_owned()
}

/// Every file of a vector store (following the list's pages).
async fn store_files(server: &Server, vs: &str) -> Vec<Value> {
    let mut files = Vec::new();
    let mut after = String::new();
    loop {
        let page = get(server, &format!("/v1/vector_stores/{vs}/files?limit=100{after}")).await;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        files.extend(data.iter().cloned());
        match (page["has_more"].as_bool(), data.last().and_then(|f| f["id"].as_str())) {
            (Some(true), Some(last)) => after = format!("&after={last}"),
            _ => return files,
        }
    }
}

/// The tag → file map of `vs` once nothing is `in_progress` and `expected` files are listed.
async fn settled(server: &Server, vs: &str, expected: usize) -> Vec<Value> {
    // Each file is three chunks of about 800 tokens: 0.5-3 s of embedding on a 2-core machine,
    // depending on what else runs; the long run leaves hundreds.
    let allowed = Duration::from_secs(120 + 6 * expected as u64);
    let deadline = Instant::now() + allowed;
    loop {
        let files = store_files(server, vs).await;
        if files.len() >= expected && files.iter().all(|f| f["status"] != "in_progress") {
            return files;
        }
        if Instant::now() > deadline {
            let done = files.iter().filter(|f| f["status"] == "completed").count();
            let log = server.log();
            let tail = &log[log.len().saturating_sub(6_000)..];
            panic!("store {vs}: {} of {expected} files listed, {done} completed, the rest in progress after {allowed:?}\nlog tail:\n{tail}", files.len());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn search_tag(server: &Server, vs: &str, tag: &str) -> Vec<Value> {
    let body = json!({"query": tag, "max_num_results": 10, "search_mode": "keyword"});
    let r = client().post(server.url(&format!("/v1/vector_stores/{vs}/search"))).json(&body).send().await;
    let r = r.unwrap_or_else(|e| panic!("search: {e}"));
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn acknowledged_files_survive_repeated_sigkills_exactly_once() {
    let kills = std::env::var("HEARTH_KILL_LOOP_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(CI_KILLS);
    let seed = std::env::var("HEARTH_KILL_LOOP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    let files_per_round = std::env::var("HEARTH_KILL_LOOP_FILES").ok().and_then(|s| s.parse().ok()).unwrap_or(MAX_FILES_PER_ROUND);
    eprintln!("kill loop: {kills} kills, at most {files_per_round} files a round, seed {seed}");
    let mut rng = Rng(seed);

    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state_dir = root.path().join("state").display().to_string();
    let inbox = root.path().join("killinbox");
    std::fs::create_dir_all(&inbox).unwrap_or_else(|e| panic!("{e}"));
    let config = format!("{CONFIG}\n[[ingest.watch]]\npath = \"{}\"\nvector_store = \"kill-inbox\"\n", inbox.display());
    let options = || Options { config: Some(&config), env: vec![("HEARTH__SERVER__STATE_DIR", state_dir.as_str())] };

    let vs = {
        let server = Server::start_with(options());
        let r = client().post(server.url("/v1/vector_stores")).json(&json!({"name": "kill-api"})).send().await;
        assert!(r.is_ok_and(|r| r.status() == 200), "create store\n{}", server.log());
        store_id(&server, "kill-api").await
    };

    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new(); // tag -> file id (API)
    let mut dropped: BTreeSet<String> = BTreeSet::new(); // tags written into the watched folder
    let mut next_tag = 0u32;
    let mut survived = 0usize;
    for round in 0..kills {
        let server = Server::start_with(options());
        survived += 1;
        // Work until a random moment, then SIGKILL (dropping the server kills it).
        let deadline = Instant::now() + Duration::from_millis(200 + rng.below(1_800));
        let mut sent = 0;
        while Instant::now() < deadline && sent < files_per_round {
            sent += 1;
            let tag = format!("KT{next_tag:05}");
            next_tag += 1;
            if rng.below(3) == 0 {
                // Written under another name and renamed in, as editors and copy tools do.
                let tmp = inbox.join(format!(".{tag}.part"));
                std::fs::write(&tmp, document(&tag)).unwrap_or_else(|e| panic!("{e}"));
                std::fs::rename(&tmp, inbox.join(format!("{tag}.md"))).unwrap_or_else(|e| panic!("{e}"));
                dropped.insert(tag);
                tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
            } else if let Some(id) = try_upload(&server, &format!("{tag}.md"), document(&tag).as_bytes()).await {
                if try_attach(&server, &vs, &id).await {
                    acknowledged.insert(tag, id);
                }
            }
        }
        // The kill comes at the random moment, mid-ingestion.
        tokio::time::sleep(deadline.saturating_duration_since(Instant::now())).await;
        eprintln!("round {round}: killed after {} acknowledged attaches, {} dropped files", acknowledged.len(), dropped.len());
    }

    // The last restart: everything acknowledged completes, exactly once.
    let server = Server::start_with(options());
    let clean_tag = "KT99999";
    let clean_id = try_upload(&server, &format!("{clean_tag}.md"), document(clean_tag).as_bytes()).await.unwrap_or_else(|| panic!("upload"));
    assert!(try_attach(&server, &vs, &clean_id).await);

    let api_files = settled(&server, &vs, acknowledged.len() + 1).await;
    let clean = api_files.iter().find(|f| f["id"] == clean_id.as_str()).unwrap_or_else(|| panic!("clean file missing"));
    assert_eq!(clean["status"], "completed", "{clean}");
    let clean_chunks = clean["chunk_count"].as_u64().unwrap_or(0);
    assert!(clean_chunks >= 3, "the document should make several chunks: {clean}");

    let mut seen = BTreeSet::new();
    for f in &api_files {
        let id = f["id"].as_str().unwrap_or_default();
        assert!(seen.insert(id.to_owned()), "file {id} listed twice in {vs}");
    }
    for (tag, id) in &acknowledged {
        let f = api_files.iter().find(|f| f["id"] == id.as_str()).unwrap_or_else(|| panic!("acknowledged {tag} ({id}) is missing\n{}", server.log()));
        assert_eq!(f["status"], "completed", "{tag}: {f}");
        assert_eq!(f["chunk_count"].as_u64(), Some(clean_chunks), "{tag}: chunk count differs from a clean run's: {f}");
    }

    let inbox_vs = store_id(&server, "kill-inbox").await;
    let watched = settled(&server, &inbox_vs, dropped.len()).await;
    assert_eq!(watched.len(), dropped.len(), "the watched folder's store lists {} files for {} dropped", watched.len(), dropped.len());
    for f in &watched {
        assert_eq!(f["status"], "completed", "{f}");
        assert_eq!(f["chunk_count"].as_u64(), Some(clean_chunks), "{f}");
    }

    // No chunk of any file twice, none missing: each tag is found in exactly its own file.
    for (tag, id) in acknowledged.iter().take(20) {
        let hits = search_tag(&server, &vs, tag).await;
        let holders: BTreeSet<&str> = hits.iter().filter(|h| h["content"].to_string().contains(tag.as_str())).filter_map(|h| h["file_id"].as_str()).collect();
        assert_eq!(holders, BTreeSet::from([id.as_str()]), "{tag}: {hits:?}");
    }
    eprintln!(
        "kill loop passed: {survived} SIGKILLs, {} API files and {} watched files acknowledged, all completed once ({clean_chunks} chunks each), 0 lost",
        acknowledged.len(),
        dropped.len()
    );
}
