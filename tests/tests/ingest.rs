//! Ingestion as a user meets it, with the real models: the Files and Vector Stores API through
//! the official openai package; the watched folder (drop, rename, edit, delete, symlinks);
//! hostile PDFs that must fail cleanly while the daemon keeps serving; and a restart in the middle
//! of ingestion that resumes the queue.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hearth_tests::{get_json as get, post_json as post, repo_root, run_python_check, upload_file, Options, Server};

/// The ingest crate's minimal PDF writer, for hand-made hostile files.
#[path = "../../ingest/tests/common/mod.rs"]
mod pdfgen;
use serde_json::{json, Value};

/// Watched folders settle fast in tests.
const FAST_WATCH: &str = "[ingest]\nstable_seconds = 0.3\nrescan_seconds = 0.5\n";

fn fixture(name: &str) -> PathBuf {
    repo_root().join("ingest/tests/fixtures").join(name)
}

async fn create_store(server: &Server, name: &str) -> String {
    let (status, v) = post(server, "/v1/vector_stores", &json!({"name": name})).await;
    assert_eq!(status, 200, "{v}");
    v["id"].as_str().unwrap_or_default().to_owned()
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

/// Poll until `f` returns Some.
async fn eventually<T, F, Fut>(server: &Server, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn inbox_store(server: &Server) -> String {
    let (_, v) = get(server, "/v1/vector_stores").await;
    let stores = v["data"].as_array().cloned().unwrap_or_default();
    let inbox = stores.iter().find(|s| s["name"] == "inbox").unwrap_or_else(|| panic!("no inbox store in {v}"));
    inbox["id"].as_str().unwrap_or_default().to_owned()
}

async fn inbox_files(server: &Server, vs: &str) -> Vec<Value> {
    let (_, v) = get(server, &format!("/v1/vector_stores/{vs}/files?limit=100")).await;
    v["data"].as_array().cloned().unwrap_or_default()
}

/// The inbox store's id, once the one file dropped into the watched folder is ingested.
async fn inbox_with_one_file_ingested(server: &Server) -> String {
    let vs = inbox_store(server).await;
    eventually(server, "the dropped file is ingested", || async {
        let files = inbox_files(server, &vs).await;
        (files.len() == 1 && files[0]["status"] == "completed").then_some(())
    })
    .await;
    vs
}

async fn search(server: &Server, vs: &str, query: &str) -> Vec<Value> {
    let (status, v) = post(server, &format!("/v1/vector_stores/{vs}/search"), &json!({"query": query, "max_num_results": 5})).await;
    assert_eq!(status, 200, "{v}");
    v["data"].as_array().cloned().unwrap_or_default()
}

async fn completed_count(server: &Server) -> u64 {
    let text = reqwest::get(server.url("/metrics")).await.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("hearth_ingest_files_total{status=\"completed\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("no completed counter in metrics:\n{text}"))
}

#[test]
fn the_openai_package_drives_files_and_vector_stores() {
    let server = Server::start();
    let (url, pdf) = (server.url("/v1"), fixture("three_pages.pdf"));
    let args: [&std::ffi::OsStr; 5] = [url.as_ref(), pdf.as_os_str(), "2".as_ref(), "ZEBRA-4817".as_ref(), "What is the secret launch code?".as_ref()];
    run_python_check(&server, "vector_store_check.py", &args, "all vector store SDK checks passed");
}

#[tokio::test]
async fn api_errors_say_what_is_wrong() {
    let server = Server::start();
    let (status, v) = post(&server, "/v1/vector_stores/vs_nope/files", &json!({"file_id": "file-nope"})).await;
    assert_eq!(status, 404, "{v}");
    let vs = create_store(&server, "errors").await;
    let (status, v) = post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": "file-0123"})).await;
    assert!(status == 400 && v["error"]["message"].as_str().unwrap_or_default().contains("file-0123"), "{v}");
    let file = upload_file(&server, "a.txt", b"some text").await;
    let bad = json!({"file_id": file, "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 50, "chunk_overlap_tokens": 0}}});
    let (status, v) = post(&server, &format!("/v1/vector_stores/{vs}/files"), &bad).await;
    assert!(status == 400 && v["error"]["message"].as_str().unwrap_or_default().contains("max_chunk_size_tokens"), "{v}");
    let (status, v) = post(&server, &format!("/v1/vector_stores/{vs}/search"), &json!({"query": "x", "max_num_results": 500})).await;
    assert!(status == 400 && v["error"]["param"] == "max_num_results", "{v}");
    let (status, v) = get(&server, "/v1/files/../../etc/passwd").await;
    assert!(status == 404, "{v}");
    let binary = upload_file(&server, "blob.bin", &[0u8, 159, 146, 150, 255, 0, 1, 2]).await;
    let (_, v) = post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": binary})).await;
    assert_eq!(v["status"], "in_progress", "{v}");
    let done = wait_file(&server, &vs, &binary).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["last_error"]["code"], "unsupported_file", "{done}");
}

/// `mib` MiB of spaces, zlib-compressed (about 1000:1): a decompression bomb's payload.
fn deflate_spaces(mib: usize) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..mib {
        enc.write_all(&spaces).unwrap_or_else(|e| panic!("{e}"));
    }
    enc.finish().unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn hostile_pdfs_fail_with_a_reason_and_the_daemon_keeps_serving() {
    let server = Server::start();
    let vs = create_store(&server, "hostile").await;
    let three = std::fs::read(fixture("three_pages.pdf")).unwrap_or_else(|e| panic!("{e}"));
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("truncated.pdf", three[..three.len() * 6 / 10].to_vec(), ""),
        ("encrypted.pdf", std::fs::read(fixture("encrypted.pdf")).unwrap_or_default(), "encrypted"),
        ("bomb.pdf", pdfgen::pdf_with_pages(&[(pdfgen::MEDIA_BOX, pdfgen::stream("/Filter /FlateDecode", &deflate_spaces(2048)))]), ""),
        ("nested.pdf", pdfgen::pdf_with_pages(&[(&format!("{} /Annots {nested}", pdfgen::MEDIA_BOX), pdfgen::text_content("x"))]), ""),
        ("image_only.pdf", std::fs::read(fixture("image_only.pdf")).unwrap_or_default(), "no extractable text"),
    ];
    let mut ids = Vec::new();
    for (name, bytes, _) in &cases {
        assert!(bytes.len() > 100, "{name} is missing");
        let id = upload_file(&server, name, bytes).await;
        let (status, v) = post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": id})).await;
        assert_eq!(status, 200, "{v}");
        ids.push(id);
    }
    for ((name, _, needle), id) in cases.iter().zip(&ids) {
        let v = wait_file(&server, &vs, id).await;
        // PDFium, the fallback engine, reads the deeply nested annotations pdf-extract fails on, and
        // OCR may read the image-only page: then the file completes, and says which parser read it.
        let read_by = match *name {
            "nested.pdf" => Some("pdfium"),
            "image_only.pdf" if v["status"] == "completed" => Some("ocr"),
            _ => None,
        };
        if let Some(parser) = read_by {
            assert_eq!((v["status"].as_str(), v["attributes"]["parser"].as_str()), (Some("completed"), Some(parser)), "{name}: {v}");
            continue;
        }
        assert_eq!(v["status"], "failed", "{name}: {v}");
        let message = v["last_error"]["message"].as_str().unwrap_or_default().to_lowercase();
        assert!(!message.is_empty() && message.contains(needle), "{name}: reason {message:?} should mention {needle:?}");
    }
    let (status, _) = get(&server, "/health").await;
    assert_eq!(status, 200);
    let (status, v) = post(&server, "/v1/embeddings", &json!({"model": "all-minilm-l6-v2", "input": "still alive"})).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn the_watched_folder_follows_drops_renames_edits_and_deletes() {
    let server = Server::start_with(Options { config: Some(FAST_WATCH), ..Options::default() });
    let inbox = server.inbox();
    let vs = inbox_store(&server).await;

    // Drop: a PDF becomes searchable, with its page.
    std::fs::copy(fixture("three_pages.pdf"), inbox.join("facts.pdf")).unwrap_or_else(|e| panic!("{e}"));
    let file = eventually(&server, "facts.pdf ingested", || async {
        inbox_files(&server, &vs).await.into_iter().find(|f| f["status"] == "completed")
    })
    .await;
    let hits = search(&server, &vs, "What is the secret launch code?").await;
    assert_eq!(hits[0]["filename"], "facts.pdf", "{hits:?}");
    assert_eq!(hits[0]["page"], 2, "{hits:?}");
    let ingested = completed_count(&server).await;

    // Rename: same document, new name, nothing embedded again.
    std::fs::rename(inbox.join("facts.pdf"), inbox.join("renamed.pdf")).unwrap_or_else(|e| panic!("{e}"));
    let renamed = eventually(&server, "rename seen", || async {
        inbox_files(&server, &vs).await.into_iter().find(|f| f["filename"] == "renamed.pdf")
    })
    .await;
    assert_eq!(renamed["id"], file["id"], "a rename keeps the document");
    assert_eq!(renamed["chunk_count"], file["chunk_count"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(completed_count(&server).await, ingested, "a rename is not re-ingested");
    assert_eq!(inbox_files(&server, &vs).await.len(), 1);

    // A symbolic link to a file outside the folder is ignored.
    let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(outside.path().join("secret.txt"), "The vault code is 4242.").unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), inbox.join("secret.txt")).unwrap_or_else(|e| panic!("{e}"));

    // Edit: a text file, then new content replaces the old chunks.
    std::fs::write(inbox.join("note.txt"), "The red kayak is stored in the boathouse.").unwrap_or_else(|e| panic!("{e}"));
    eventually(&server, "note.txt ingested", || async {
        inbox_files(&server, &vs).await.into_iter().find(|f| f["filename"] == "note.txt" && f["status"] == "completed")
    })
    .await;
    std::fs::write(inbox.join("note.txt"), "The red kayak was sold to the neighbour in May.").unwrap_or_else(|e| panic!("{e}"));
    eventually(&server, "edit replaces the note", || async {
        let hits = search(&server, &vs, "Where is the red kayak?").await;
        let texts: Vec<String> = hits.iter().filter(|h| h["filename"] == "note.txt").map(|h| h["content"][0]["text"].to_string()).collect();
        (texts.len() == 1 && texts[0].contains("sold")).then_some(())
    })
    .await;
    assert!(search(&server, &vs, "vault code").await.iter().all(|h| h["filename"] != "secret.txt"), "the symlink was followed");
    assert_eq!(inbox_files(&server, &vs).await.len(), 2, "renamed.pdf and note.txt, nothing else");

    // Delete: its chunks are gone.
    std::fs::remove_file(inbox.join("renamed.pdf")).unwrap_or_else(|e| panic!("{e}"));
    eventually(&server, "delete seen", || async { (inbox_files(&server, &vs).await.len() == 1).then_some(()) }).await;
    let hits = search(&server, &vs, "secret launch code").await;
    assert!(hits.iter().all(|h| h["filename"] != "renamed.pdf"), "{hits:?}");
}

#[tokio::test]
async fn a_restart_mid_ingestion_resumes_the_queue() {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state_dir = state.path().join("state").display().to_string();
    let env = vec![("HEARTH__SERVER__STATE_DIR", state_dir.as_str())];
    // Long texts: many chunks each, so the first server is still working when it is killed.
    let text: String = (0..400).map(|i| format!("Sentence number {i} talks about topic {}. ", i % 97)).collect();
    let (vs, files) = {
        let server = Server::start_with(Options { env: env.clone(), ..Options::default() });
        let vs = create_store(&server, "resume").await;
        let mut files = Vec::new();
        for i in 0..4 {
            let id = upload_file(&server, &format!("long{i}.txt"), text.as_bytes()).await;
            let (status, v) = post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": id})).await;
            assert_eq!(status, 200, "{v}");
            files.push(id);
        }
        (vs, files) // the server is killed (SIGKILL) here
    };
    let server = Server::start_with(Options { env, ..Options::default() });
    assert!(server.log().contains("queued ingestion job"), "the second server found no queued jobs:\n{}", server.log());
    for id in &files {
        let v = wait_file(&server, &vs, id).await;
        assert_eq!(v["status"], "completed", "{v}");
        assert!(v["chunk_count"].as_u64().unwrap_or(0) >= 5, "{v}");
    }
    let hits = search(&server, &vs, "Sentence number 399").await;
    assert!(!hits.is_empty());
}

/// CPU seconds (user + system) the process has used so far, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_else(|e| panic!("read stat: {e}"));
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

#[tokio::test]
async fn an_idle_daemon_watching_a_folder_uses_almost_no_cpu() {
    // The default settings: a real watched folder with files in it, nothing to do.
    let server = Server::start();
    std::fs::write(server.inbox().join("notes.md"), "# Notes\n\nThe kettle is in the left cupboard.\n").unwrap_or_else(|e| panic!("{e}"));
    inbox_with_one_file_ingested(&server).await;
    let before = cpu_seconds(server.pid());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = cpu_seconds(server.pid()) - before;
    // Reading its own folder must not wake the watcher again (a loop that once kept a core 80% busy).
    assert!(used < 0.5, "an idle daemon used {used:.2} CPU-seconds in 5 s\n{}", server.log());
}

/// `[store] quantization = "i8"`: vector stores made from then on keep 8-bit vectors, and search
/// still finds the page (the store makes the i8 codes from the normalised embeddings itself).
#[tokio::test]
async fn a_vector_store_with_i8_vectors_finds_the_page() {
    let server = Server::start_with(Options { config: Some("[store]\nquantization = \"i8\"\nexpansion_search = 96\n"), ..Options::default() });
    std::fs::copy(fixture("three_pages.pdf"), server.inbox().join("three_pages.pdf")).unwrap_or_else(|e| panic!("{e}"));
    let vs = inbox_with_one_file_ingested(&server).await;
    let hits = search(&server, &vs, "What is the secret launch code?").await;
    let top = hits.first().unwrap_or_else(|| panic!("no hits\n{}", server.log()));
    assert_eq!(top["page"], 2, "{hits:?}");
    assert!(top["content"].to_string().contains("ZEBRA-4817"), "{top}");
}
