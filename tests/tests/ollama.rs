//! Ollama's API, log-probabilities and `/detokenize` against the real binary and models.
//!
//! The clients are the real ones: the official `ollama` Python package drives `/api/*`
//! (`tests/python/ollama_check.py`: chat whole and streamed, generate, embed, list, show, ps, an
//! unknown model's error, `tools` with dict arguments whole and streamed, a tool result answered,
//! a Python function as a tool) and the `openai` package checks log-probabilities on chat (whole and
//! streamed) and completions (`tests/python/logprobs_check.py`). The wire details no client
//! shows (NDJSON media type and lines, Ollama's error body, the Host guard) and the
//! `/detokenize` round trip are checked here with plain HTTP.

use hearth_tests::{post_json, run_python_check, Server};
use serde_json::{json, Value};

const CHAT: &str = "smollm2-135m-instruct";

#[test]
fn the_ollama_python_package_works_against_hearth() {
    let server = Server::start();
    run_python_check(&server, "ollama_check.py", &[server.base.as_str()], "all ollama checks passed");
}

#[test]
fn log_probabilities_through_the_openai_package() {
    let server = Server::start();
    let url = server.url("/v1");
    run_python_check(&server, "logprobs_check.py", &[url.as_str()], "all logprobs checks passed");
}

#[tokio::test]
async fn detokenize_inverts_tokenize_and_names_a_token_outside_the_vocabulary() {
    let server = Server::start();
    let text = "Hearth serves <|im_start|> and café ☕ alike.";
    let (status, tokens) = post_json(&server, "/tokenize", &json!({"model": CHAT, "content": text})).await;
    assert_eq!(status, 200, "{tokens}");
    let (status, back) = post_json(&server, "/detokenize", &json!({"model": CHAT, "tokens": tokens["tokens"]})).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["content"], text, "special tokens come back as their text");
    let (status, empty) = post_json(&server, "/detokenize", &json!({"tokens": []})).await;
    assert_eq!((status, &empty["content"]), (200, &json!("")), "{empty}");

    let mut ids: Vec<Value> = tokens["tokens"].as_array().cloned().unwrap_or_default();
    ids.insert(2, json!(49_152)); // SmolLM2's vocabulary is 0..49152
    let (status, err) = post_json(&server, "/detokenize", &json!({"model": CHAT, "tokens": ids})).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "tokens[2]", "{err}");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("49152") && m.contains("outside the vocabulary")), "{err}");
    let (status, err) = post_json(&server, "/detokenize", &json!({"tokens": [1, -1]})).await;
    assert_eq!((status, &err["error"]["param"]), (400, &json!("tokens[1]")), "{err}");
}

#[tokio::test]
async fn ollama_streams_ndjson_and_answers_errors_in_its_own_shape() {
    let server = Server::start();
    let body = json!({"model": CHAT, "messages": [{"role": "user", "content": "Write a long story about a dragon."}], "options": {"temperature": 0, "num_predict": 6}});
    let r = reqwest::Client::new().post(server.url("/api/chat")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let media = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(media, "application/x-ndjson", "stream defaults to true, as in Ollama");
    let text = r.text().await.unwrap_or_default();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect();
    assert!(text.ends_with('\n') && lines.len() >= 2, "{text}");
    let last = &lines[lines.len() - 1];
    assert_eq!(last["done"], true, "{last}");
    assert_eq!(last["eval_count"], 6, "{last}");
    assert_eq!(last["done_reason"], "length", "{last}");
    for key in ["total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration"] {
        assert!(last[key].is_u64(), "{key} in {last}");
    }
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false && l["message"]["role"] == "assistant"), "{text}");

    let (status, err) = post_json(&server, "/api/generate", &json!({"model": "nope:7b", "prompt": "x"})).await;
    assert_eq!((status, err), (404, json!({"error": "model 'nope:7b' not found"})));
    let (status, err) = post_json(&server, "/api/chat", &json!({"model": CHAT, "messages": [], "options": {"mirostat": 2}})).await;
    assert_eq!(status, 200, "an empty conversation only loads the model (it is loaded): {err}");
    assert_eq!(err["done_reason"], "load");
    let (status, err) = post_json(&server, "/api/chat", &json!({"model": CHAT, "messages": [{"role": "user", "content": "x"}], "options": {"mirostat": 2}})).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().is_some_and(|m| m.contains("options.mirostat")), "{err}");
    let (status, err) = post_json(&server, "/api/chat", &json!({"model": CHAT, "messages": [{"role": "user", "content": "x"}], "options": {"nucleus": 1}})).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().is_some_and(|m| m.contains("nucleus")), "an unknown option is named: {err}");
    let (status, version) = hearth_tests::get_json(&server, "/api/version").await;
    assert_eq!(status, 200);
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));

    let foreign = reqwest::Client::new().get(server.url("/api/tags")).header("Host", "evil.example").send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(foreign.status(), 403, "the Host guard covers /api/* as every route");

    let (status, logprobs) = post_json(
        &server,
        "/api/generate",
        &json!({"model": CHAT, "prompt": "Write a long story about a dragon.", "stream": false, "logprobs": true, "top_logprobs": 2, "options": {"temperature": 0, "num_predict": 3}}),
    )
    .await;
    assert_eq!(status, 200, "{logprobs}");
    let tokens = logprobs["logprobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(tokens.len(), 3, "{logprobs}");
    assert!(tokens.iter().all(|t| t["top_logprobs"].as_array().is_some_and(|a| a.len() == 2) && t["logprob"] == t["top_logprobs"][0]["logprob"]), "{logprobs}");
}
