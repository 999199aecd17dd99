//! RAG as a user meets it, with the real models: answers with page-level citations through the
//! official openai package's `responses.create` (whole and streamed, follow-ups, an uncovered
//! question), and `hearth eval` on a tiny committed question set, where an empty store must
//! score worse than the populated one (the metrics can fail).

use std::time::Duration;

use hearth_tests::{hearth_command, repo_root, run_python_check, store_with, Server};
use serde_json::{json, Value};

async fn post(server: &Server, path: &str, body: &Value) -> Value {
    let r = reqwest::Client::new().post(server.url(path)).json(body).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    assert!(r.status().is_success(), "POST {path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

/// The committed documents in a new vector store, once searchable.
async fn populated_store(server: &Server, name: &str) -> String {
    let files = ["examples/bread-guide.pdf", "ingest/tests/fixtures/three_pages.pdf", "tests/fixtures/eval/garden.md"];
    store_with(server, name, &files, Duration::from_secs(120)).await
}

#[tokio::test]
async fn answers_cite_the_right_file_and_page_through_the_openai_package() {
    let server = Server::start();
    let vs = populated_store(&server, "rag").await;
    run_python_check(&server, "responses_check.py", &[server.url("/v1"), vs, "bread-guide.pdf".into()], "all responses SDK checks passed");
}

fn eval(server: &Server, store: &str) -> Value {
    let out = hearth_command()
        .args(["eval", "--json", "-k", "3", "--target", &server.base, "--vector-store", store, "--dataset"])
        .arg(repo_root().join("tests/fixtures/eval/qa.jsonl"))
        .output()
        .unwrap_or_else(|e| panic!("hearth eval: {e}"));
    assert!(out.status.success(), "hearth eval failed: {}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("eval --json: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test]
async fn hearth_eval_scores_a_good_store_above_an_empty_one() {
    let server = Server::start();
    populated_store(&server, "good").await;
    post(&server, "/v1/vector_stores", &json!({"name": "empty"})).await;
    let good = eval(&server, "good");
    let empty = eval(&server, "empty");
    let mean = |r: &Value, m: &str| r["summary"][m]["mean"].as_f64();
    assert_eq!(good["questions"], 4);
    assert_eq!(good["summary"]["hit_rate@3"]["n"], 4, "{good}");
    let good_hits = mean(&good, "hit_rate@3").unwrap_or(0.0);
    assert!(good_hits >= 0.75, "the populated store finds the gold pages: {good}");
    assert!(mean(&good, "mrr").unwrap_or(0.0) > 0.5, "{good}");
    assert_eq!(mean(&empty, "hit_rate@3"), Some(0.0), "{empty}");
    assert_eq!(mean(&empty, "context_recall"), Some(0.0), "{empty}");
    assert!(mean(&good, "answer_similarity").unwrap_or(0.0) > mean(&empty, "answer_similarity").unwrap_or(0.0), "good {good}\nempty {empty}");
    assert!(good["summary"]["faithfulness"]["n"].as_u64().unwrap_or(0) > 0, "faithfulness was judged: {good}");

    let out = hearth_command()
        .args(["eval", "--target", &server.base, "--vector-store", "good", "--dataset"])
        .arg(repo_root().join("tests/fixtures/eval/qa.jsonl"))
        .output()
        .unwrap_or_else(|e| panic!("hearth eval: {e}"));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("hit_rate@5") && table.contains("faithfulness"), "{table}");
    let bad = hearth_command().args(["eval", "--target", &server.base, "--vector-store", "good", "--dataset", "/nonexistent.jsonl"]).output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status.code(), Some(2), "a missing dataset is a usage error");
}
