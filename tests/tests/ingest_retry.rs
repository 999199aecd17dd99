//! Transient is not permanent, against the real binary: ingestion completes while API embedding
//! traffic keeps the embedding model's queue full (slots are kept for ingestion, and a refusal is
//! retried), and a document whose ingestion failed completes when its file is attached again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_tests::{repo_root, upload_file, Options, Server};
use serde_json::{json, Value};

async fn post(server: &Server, path: &str, body: &Value) -> Value {
    let r = reqwest::Client::new().post(server.url(path)).json(body).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    assert!(r.status().is_success(), "POST {path}: {}\n{}", r.status(), server.log());
    r.json().await.unwrap_or(Value::Null)
}

/// The status of file `file` in vector store `vs` once it is no longer `in_progress`.
async fn settled(server: &Server, vs: &str, file: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r: Value = reqwest::get(server.url(&format!("/v1/vector_stores/{vs}/files/{file}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or(Value::Null);
        if r["status"] != "in_progress" {
            return r;
        }
        assert!(Instant::now() < deadline, "still in progress after {within:?}: {r}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn garden(server: &Server) -> String {
    let bytes = std::fs::read(repo_root().join("tests/fixtures/eval/garden.md")).unwrap_or_else(|e| panic!("{e}"));
    upload_file(server, "garden.md", &bytes).await
}

/// The embedding model admits 3 requests (1 running, 2 queued); one ingestion worker keeps one
/// of them, so the API may hold 2.
const SMALL_EMBEDDING_QUEUE: &str = r#"
[[models]]
name = "smollm2-135m-instruct"
kind = "chat"
path = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
max_model_len = 2048
kv_cache_tokens = 4096

[[models]]
name = "all-minilm-l6-v2"
kind = "embedding"
path = "models/all-MiniLM-L6-v2.f16.gguf"
max_num_seqs = 1
max_queue = 2
"#;

#[tokio::test]
async fn ingestion_completes_while_api_embeddings_saturate_the_model() {
    let server = Server::start_with(Options { config: Some(SMALL_EMBEDDING_QUEUE), ..Options::default() });
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let inputs: Vec<String> = (0..32).map(|i| format!("Sentence number {i} about soil, compost and the watering of tomatoes in summer.")).collect();
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (stop, ok, refused, url) = (stop.clone(), ok.clone(), refused.clone(), server.url("/v1/embeddings"));
        let body = json!({"model": "all-minilm-l6-v2", "input": inputs});
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::SeqCst) {
                match client.post(&url).json(&body).send().await.map(|r| r.status().as_u16()) {
                    Ok(200) => ok.fetch_add(1, Ordering::SeqCst),
                    Ok(429) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        refused.fetch_add(1, Ordering::SeqCst)
                    }
                    other => panic!("embeddings: {other:?}"),
                };
            }
        }));
    }
    // Let the flood fill the queue before the file arrives.
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the API traffic never filled its share of the queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let vs = post(&server, "/v1/vector_stores", &json!({"name": "busy"})).await["id"].as_str().unwrap_or_default().to_owned();
    let file = garden(&server).await;
    post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": file})).await;
    let outcome = settled(&server, &vs, &file, Duration::from_secs(120)).await;
    let refused_during = refused.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(outcome["status"], "completed", "{outcome}\n{}", server.log());
    assert!(refused_during > 0, "the model was never saturated");
    eprintln!("ingested while the API got {} answers and {refused_during} refusals", ok.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_failed_document_attached_again_starts_over_and_completes() {
    let server = Server::start();
    let vs = post(&server, "/v1/vector_stores", &json!({"name": "again"})).await["id"].as_str().unwrap_or_default().to_owned();
    let file = garden(&server).await;
    // The stored content goes missing (a disk that was unmounted, say): ingestion fails.
    let content = server.dir.path().join("state/files").join(&file);
    let aside = content.with_extension("aside");
    std::fs::rename(&content, &aside).unwrap_or_else(|e| panic!("{}: {e}", content.display()));
    post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": file})).await;
    let failed = settled(&server, &vs, &file, Duration::from_secs(60)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    // It comes back; attaching the same file again restarts it.
    std::fs::rename(&aside, &content).unwrap_or_else(|e| panic!("{e}"));
    let again = post(&server, &format!("/v1/vector_stores/{vs}/files"), &json!({"file_id": file})).await;
    assert_eq!(again["status"], "in_progress", "{again}");
    assert_eq!(again["last_error"], Value::Null, "{again}");
    let done = settled(&server, &vs, &file, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}\n{}", server.log());
    let store: Value = reqwest::get(server.url(&format!("/v1/vector_stores/{vs}"))).await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or(Value::Null);
    assert_eq!((store["file_counts"]["completed"].as_u64(), store["file_counts"]["failed"].as_u64()), (Some(1), Some(0)), "{store}");
}
