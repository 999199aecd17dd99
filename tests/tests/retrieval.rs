//! Retrieval quality as a user meets it, with the real models: vector store search is hybrid by
//! default and `hearth eval --compare-modes` scores each mode on a few questions of the committed
//! question set over its real PDFs; an answer over sources it does not use gets no borrowed
//! citation but a sentence saying so, whole and streamed.

use std::time::Duration;

use hearth_tests::{hearth_command, store_with, Server};
use serde_json::{json, Value};

/// The note `rag::citations` adds to an answer that no source supports.
const UNSUPPORTED: &str = "(Note: none of the retrieved documents supports this answer, so it cites none.)";

async fn post(server: &Server, path: &str, body: &Value) -> Value {
    let r = reqwest::Client::new().post(server.url(path)).json(body).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {path}: {status} {v}");
    v
}

fn pages(search: &Value) -> Vec<(String, Option<u64>)> {
    search["data"].as_array().into_iter().flatten().map(|h| (h["filename"].as_str().unwrap_or_default().to_owned(), h["page"].as_u64())).collect()
}

#[tokio::test]
async fn search_is_hybrid_by_default_and_compare_modes_scores_every_mode() {
    let server = Server::start();
    let docs = ["tests/fixtures/retrieval/modguide.pdf", "tests/fixtures/retrieval/cfgguide.pdf"];
    let vs = store_with(&server, "latex", &docs, Duration::from_secs(300)).await;
    let search = format!("/v1/vector_stores/{vs}/search");

    // No search_mode: the same ranking as hybrid, with fused (RRF) scores, not cosines.
    let query = "Which mailing list should readers join to discuss modifying LaTeX?";
    let default = post(&server, &search, &json!({"query": query, "max_num_results": 5})).await;
    let hybrid = post(&server, &search, &json!({"query": query, "max_num_results": 5, "search_mode": "hybrid"})).await;
    assert_eq!(pages(&default), pages(&hybrid), "default {default}\nhybrid {hybrid}");
    assert!(pages(&default).contains(&("modguide.pdf".to_owned(), Some(7))), "the gold page is in the top 5: {default}");
    let top = default["data"][0]["score"].as_f64().unwrap_or(1.0);
    assert!(top > 0.0 && top <= 2.0 / 61.0 + 1e-6, "a fused score is at most 2/61: {default}");
    // score_threshold in hybrid mode is a cosine: -1 keeps everything, 0.99 nothing.
    let all = post(&server, &search, &json!({"query": query, "max_num_results": 5, "ranking_options": {"score_threshold": -1.0}})).await;
    assert_eq!(pages(&all), pages(&default));
    let none = post(&server, &search, &json!({"query": query, "max_num_results": 5, "ranking_options": {"score_threshold": 0.99}})).await;
    assert!(pages(&none).is_empty(), "{none}");

    // hearth eval --compare-modes on the questions about these two files, the first eight.
    let questions: Vec<&str> = include_str!("../fixtures/retrieval/questions.jsonl")
        .lines()
        .filter(|l| l.contains("modguide.pdf") || l.contains("cfgguide.pdf"))
        .take(8)
        .collect();
    let dataset = server.dir.path().join("questions.jsonl");
    std::fs::write(&dataset, questions.join("\n")).unwrap_or_else(|e| panic!("{e}"));
    let out = hearth_command()
        .args(["eval", "--compare-modes", "--json", "-k", "5", "--target", &server.base, "--vector-store", "latex", "--dataset"])
        .arg(&dataset)
        .output()
        .unwrap_or_else(|e| panic!("hearth eval: {e}"));
    assert!(out.status.success(), "hearth eval --compare-modes: {}\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let mean = |mode: &str, metric: &str| report["modes"][mode][metric]["mean"].as_f64().unwrap_or(-1.0);
    for mode in ["vector", "keyword", "hybrid"] {
        assert_eq!(report["modes"][mode]["mrr"]["n"], 8, "{report}");
        assert!((0.0..=1.0).contains(&mean(mode, "hit_rate@5")), "{report}");
    }
    assert!(mean("hybrid", "hit_rate@5") >= mean("vector", "hit_rate@5"), "hybrid finds at least what vector finds: {}", report["modes"]);
    assert!(mean("hybrid", "hit_rate@5") >= 0.75, "{}", report["modes"]);
}

#[tokio::test]
async fn an_answer_that_uses_no_source_cites_none_and_says_so() {
    let server = Server::start();
    let vs = store_with(&server, "latex", &["tests/fixtures/retrieval/modguide.pdf"], Duration::from_secs(300)).await;
    // The relevance gate is off (-1), so the off-topic question still gets the LaTeX pages as sources.
    let request = |stream: bool| json!({
        "model": "smollm2-135m-instruct", "input": "What is the capital of France?", "temperature": 0, "max_output_tokens": 32,
        "store": false, "stream": stream, "include": ["file_search_call.results"],
        "tools": [{"type": "file_search", "vector_store_ids": [vs], "ranking_options": {"score_threshold": -1.0}}],
    });
    let r = post(&server, "/v1/responses", &request(false)).await;
    let output = r["output"].as_array().cloned().unwrap_or_default();
    let call = output.iter().find(|i| i["type"] == "file_search_call").cloned().unwrap_or_default();
    assert!(call["results"].as_array().is_some_and(|r| !r.is_empty()), "the answer had sources: {r}");
    let message = output.iter().find(|i| i["type"] == "message").cloned().unwrap_or_default();
    let content = &message["content"][0];
    assert_eq!(content["annotations"], json!([]), "no citation is borrowed: {r}");
    let text = content["text"].as_str().unwrap_or_default();
    assert!(text.ends_with(UNSUPPORTED) && text.len() > UNSUPPORTED.len() + 2, "the model's words stay, with the note: {text:?}");

    // Streamed: the note arrives as a delta, so the deltas add up to the final text.
    let body = reqwest::Client::new().post(server.url("/v1/responses")).json(&request(true)).send().await.unwrap_or_else(|e| panic!("{e}"));
    let sse = body.text().await.unwrap_or_default();
    let events: Vec<Value> = sse.lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()).collect();
    let deltas: String = events.iter().filter(|e| e["type"] == "response.output_text.delta").filter_map(|e| e["delta"].as_str()).collect();
    let done = events.iter().find(|e| e["type"] == "response.output_text.done").cloned().unwrap_or_default();
    assert!(deltas.ends_with(UNSUPPORTED), "{deltas:?}");
    assert_eq!(done["text"].as_str(), Some(deltas.as_str()), "{sse}");
    assert!(!events.iter().any(|e| e["type"] == "response.output_text.annotation.added"), "{sse}");
}
