//! Loading and unloading while serving (issue #23, item 3), as a user meets it: the real binary
//! with `[engine] max_loaded_models = 1` and two chat models configured `load = "on_demand"` (the
//! one small chat GGUF in `models/`, served under two names). Requests alternate between them,
//! one after another and concurrently; all are answered, and `/v1/models`, polled the whole time,
//! never shows both loaded. The admin routes load and unload (an `infer` key gets 403), an unload
//! under a running stream is refused with 409 and the stream still ends normally, a model whose
//! file is not a GGUF fails its load with a clear error while the daemon serves on, and a request
//! that cannot get its model within `model_load_timeout_seconds` gets 503 `model_loading` with a
//! `Retry-After` of that model's last load time. The fit before load refuses a KV cache larger than
//! the RAM, with the numbers, before llama.cpp allocates; `hearth info` prints each model's fit; a
//! budget smaller than the start-up models is a configuration error.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_tests::{Options, Server};
use serde_json::{json, Value};

const CHAT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const ADMIN: &str = "sk-admin-model-loading-test";
const INFER: &str = "sk-infer-model-loading-test";

/// Two on-demand chat models `a` and `b` (and `extra` models) under a budget of one, in place of
/// the default models.
fn config(timeout_s: u64, extra: &str) -> String {
    let model = |name: &str| {
        format!(
            "[[models]]\nname = \"{name}\"\nkind = \"chat\"\npath = \"{CHAT_MODEL}\"\nmax_model_len = 1024\nkv_cache_tokens = 2048\nmax_num_seqs = 4\nload = \"on_demand\"\ntemperature = 0.0\n"
        )
    };
    format!(
        "replace_default_models = true\n[server]\napi_keys = [\"{ADMIN}\", {{ key = \"{INFER}\", scope = \"infer\" }}]\n\
         [engine]\nmax_loaded_models = 1\nmodel_load_timeout_seconds = {timeout_s}\nprefix_cache_ram_bytes = 0\nprefix_cache_disk_bytes = 0\n{}{}{extra}",
        model("a"),
        model("b")
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn send(server: &Server, method: reqwest::Method, path: &str, key: &str, body: Option<Value>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client().request(method, server.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

async fn chat(server: &Server, model: &str) -> (u16, Value) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 4});
    let (status, _, body) = send(server, reqwest::Method::POST, "/v1/chat/completions", ADMIN, Some(body)).await;
    (status, body)
}

/// Each model's state in `/v1/models`.
async fn states(server: &Server) -> Vec<(String, String)> {
    let (status, _, body) = send(server, reqwest::Method::GET, "/v1/models", ADMIN, None).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().map_or_else(Vec::new, |models| {
        models.iter().map(|m| (m["id"].as_str().unwrap_or_default().to_owned(), m["state"].as_str().unwrap_or_default().to_owned())).collect()
    })
}

/// The states `/metrics` reports as 1 for `model` (`hearth_model_state`); exactly one when it is right.
async fn metric_states(server: &Server, model: &str) -> Vec<String> {
    let r = client().get(server.url("/metrics")).bearer_auth(ADMIN).send().await.unwrap_or_else(|e| panic!("{e}"));
    let text = r.text().await.unwrap_or_default();
    let prefix = format!("hearth_model_state{{model_name=\"{model}\",provider=\"local\",state=\"");
    let states: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter(|rest| rest.ends_with("\"} 1"))
        .map(|rest| rest.trim_end_matches("\"} 1").to_owned())
        .collect();
    assert!(text.lines().filter(|l| l.starts_with(prefix.as_str())).count() == 5, "five state series for {model}:\n{text}");
    states
}

async fn model(server: &Server, name: &str) -> Value {
    send(server, reqwest::Method::GET, &format!("/v1/models/{name}"), ADMIN, None).await.2
}

/// The names of the server's engine threads (`engine-<model>`), from /proc.
fn engine_threads(server: &Server) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<String> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("engine-"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn alternating_requests_under_a_budget_of_one_are_all_answered_and_never_two_are_loaded() {
    let server = Arc::new(Server::start_with(Options { config: Some(&config(120, "")), env: vec![] }));
    // Nothing loads at start-up, and hearth is ready: on-demand models unloaded are not "not ready".
    let (status, _, ready) = send(&server, reqwest::Method::GET, "/ready", ADMIN, None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["models"], json!([{"id": "a", "state": "unloaded", "in_flight": 0}, {"id": "b", "state": "unloaded", "in_flight": 0}]));

    // Poll /v1/models the whole time: never two loaded.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let polls = Arc::new(AtomicUsize::new(0));
    let poller = {
        let (server, done, most, polls) = (Arc::clone(&server), Arc::clone(&done), Arc::clone(&most), Arc::clone(&polls));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let loaded = states(&server).await.iter().filter(|(_, s)| s == "loaded").count();
                most.fetch_max(loaded, Ordering::Relaxed);
                polls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // One after another: A, B, A, B.
    for name in ["a", "b", "a", "b"] {
        let (status, body) = chat(&server, name).await;
        assert_eq!(status, 200, "{name}: {body}\n{}", server.log());
        assert_eq!(body["model"], name);
        assert!(body["choices"][0]["message"]["content"].as_str().is_some_and(|c| !c.is_empty()), "{body}");
        let now = states(&server).await;
        assert!(now.contains(&(name.to_owned(), "loaded".to_owned())), "{name} served, so loaded: {now:?}");
    }
    // Concurrently: three to each, interleaved.
    let requests = ["a", "b", "a", "b", "a", "b"].map(|name| {
        let server = Arc::clone(&server);
        tokio::spawn(async move { (name, chat(&server, name).await) })
    });
    for handle in requests {
        let (name, (status, body)) = handle.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200, "{name}: {body}\n{}", server.log());
        assert_eq!(body["model"], name);
    }
    done.store(true, Ordering::Relaxed);
    poller.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(polls.load(Ordering::Relaxed) > 10, "the poller ran");
    assert_eq!(most.load(Ordering::Relaxed), 1, "one model was loaded at a time (and one was)");
    let log = server.log();
    let unloads = log.matches("Model unloaded.").count();
    assert!(unloads >= 3, "alternating under a budget of one unloads: {unloads}\n{log}");
    let a = model(&server, "a").await;
    assert!(a["last_load_ms"].as_u64().is_some(), "{a}");
    assert_eq!(a["load"], "on_demand");
}

#[tokio::test]
async fn admin_routes_load_and_unload_refuse_under_a_stream_and_a_broken_model_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, b"this is not a GGUF file").unwrap_or_else(|e| panic!("{e}"));
    let extra = format!("[[models]]\nname = \"broken\"\nkind = \"chat\"\npath = \"{}\"\nload = \"on_demand\"\n", broken.display());
    let server = Server::start_with(Options { config: Some(&config(120, &extra)), env: vec![] });
    let post = reqwest::Method::POST;

    // Scopes: an infer key may not load or unload.
    for route in ["/v1/models/a/load", "/v1/models/a/unload"] {
        let (status, _, body) = send(&server, post.clone(), route, INFER, None).await;
        assert_eq!(status, 403, "{route}: {body}");
    }
    let (status, _, body) = send(&server, post.clone(), "/v1/models/nope/load", ADMIN, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("model_not_found")), "{body}");

    // Load by hand, then unload: the engine thread exists while loaded and is joined by the unload.
    let (status, _, body) = send(&server, post.clone(), "/v1/models/a/load", ADMIN, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["state"].as_str(), body["meta"]["n_vocab"].as_u64().is_some()), (Some("loaded"), true), "{body}");
    assert_eq!(engine_threads(&server), ["engine-a"]);
    assert_eq!(metric_states(&server, "a").await, ["loaded"]);
    let (status, _, body) = send(&server, post.clone(), "/v1/models/a/unload", ADMIN, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "unloaded", "{body}");
    assert_eq!(metric_states(&server, "a").await, ["unloaded"]);
    // The unload answers once the thread has freed the model; the OS thread itself ends a moment later.
    let gone = Instant::now() + Duration::from_secs(2);
    while !engine_threads(&server).is_empty() && Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(engine_threads(&server).is_empty(), "the unloaded model's engine thread ended");
    assert!(body["unload_ms"].as_u64().is_some(), "{body}");
    let (status, _, body) = send(&server, post.clone(), "/v1/models/a/unload", ADMIN, None).await;
    assert_eq!((status, &body["unload_ms"]), (200, &Value::Null), "unloading an unloaded model is a no-op: {body}");

    // A stream holds its model: an unload meanwhile is refused, and the stream ends normally.
    let body = json!({"model": "b", "messages": [{"role": "user", "content": "Count."}], "max_tokens": 64, "ignore_eos": true, "stream": true});
    let mut stream = client().post(server.url("/v1/chat/completions")).bearer_auth(ADMIN).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stream.status().as_u16(), 200);
    let first = stream.chunk().await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_default();
    assert!(!first.is_empty());
    let (status, _, refused) = send(&server, post.clone(), "/v1/models/b/unload", ADMIN, None).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("model_busy")), "{refused}");
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains("1 request(s) in flight")), "{refused}");
    let rest = stream.text().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(rest.trim_end().ends_with("data: [DONE]"), "the stream ended normally: {rest}");
    assert!(rest.contains("\"finish_reason\":\"length\""), "{rest}");
    // Once it is over, the unload goes through.
    let (status, _, body) = send(&server, post.clone(), "/v1/models/b/unload", ADMIN, None).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("unloaded")), "{body}");

    // A remote... none here; a model whose file is not a GGUF: a clear 503, the daemon serves on.
    let (status, headers, body) = {
        let body = json!({"model": "broken", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2});
        send(&server, post.clone(), "/v1/chat/completions", ADMIN, Some(body)).await
    };
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("model_load_failed")), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("model `broken` failed to load") && message.contains("broken.gguf"), "{message}");
    assert_eq!(metric_states(&server, "broken").await, ["failed"]);
    assert!(headers.get("retry-after").is_some(), "{headers:?}");
    let listed = model(&server, "broken").await;
    assert_eq!(listed["state"], "failed", "{listed}");
    assert!(listed["state_reason"].as_str().is_some_and(|r| r.contains("broken.gguf")), "{listed}");
    let (status, _, ready) = send(&server, reqwest::Method::GET, "/ready", ADMIN, None).await;
    assert_eq!(status, 200, "an on-demand model that failed does not make hearth unready: {ready}");
    // A retry tries the load again (and fails the same way); the others still serve.
    let (status, _, body) = send(&server, post.clone(), "/v1/models/broken/load", ADMIN, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("model_load_failed")), "{body}");
    assert_eq!(server.log().matches("Model failed to load.").count(), 2, "{}", server.log());
    let (status, body) = chat(&server, "a").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_request_that_cannot_get_its_model_in_time_gets_503_with_the_load_time_as_retry_after() {
    let server = Server::start_with(Options { config: Some(&config(1, "")), env: vec![] });
    // Load b once so that its load time is known, then keep a busy with a long stream.
    let (status, body) = chat(&server, "b").await;
    assert_eq!(status, 200, "{body}");
    let last_load_ms = model(&server, "b").await["last_load_ms"].as_u64().unwrap_or_else(|| panic!("no last_load_ms"));
    let body = json!({"model": "a", "messages": [{"role": "user", "content": "Count."}], "max_tokens": 400, "ignore_eos": true, "stream": true});
    let mut stream = client().post(server.url("/v1/chat/completions")).bearer_auth(ADMIN).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stream.status().as_u16(), 200);
    let _ = stream.chunk().await;
    // a is busy and the budget is one: b cannot load within the 1 s timeout.
    let started = Instant::now();
    let (status, headers, body) = {
        let body = json!({"model": "b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2});
        send(&server, reqwest::Method::POST, "/v1/chat/completions", ADMIN, Some(body)).await
    };
    let waited = started.elapsed();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("model_loading")), "{body}");
    assert!(waited >= Duration::from_millis(900), "it waited the timeout: {waited:?}");
    let retry_after: u64 = headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert_eq!(retry_after, last_load_ms.div_ceil(1000).max(1), "Retry-After is b's last load time: {headers:?}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("model_load_timeout_seconds")), "{body}");
    drop(stream);
}

#[test]
fn a_kv_cache_larger_than_the_ram_is_refused_with_the_numbers_before_llama_cpp_allocates() {
    // 40 million KV cells of SmolLM2 (22.5 KiB each) are ~860 GiB: more RAM than any CI machine has.
    let config = format!(
        "replace_default_models = true\n[[models]]\nname = \"huge\"\nkind = \"chat\"\npath = \"{CHAT_MODEL}\"\nmax_model_len = 2048\nkv_cache_tokens = 40000000\n"
    );
    let started = Instant::now();
    let server = Server::spawn(Options { config: Some(&config), env: vec![] }).unwrap_or_else(|(status, log)| panic!("{status:?}\n{log}"));
    let (status, log) = server.wait_exit();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("model `huge` does not fit: needs ") && log.contains("for KV at kv_cache_tokens 40000000") && log.contains("of RAM available"),
        "{log}"
    );
    assert!(!log.contains("Loading model."), "refused before llama.cpp saw it: {log}");
    assert!(started.elapsed() < Duration::from_secs(60), "refused at once");

    // `hearth info` says where each configured model goes.
    let out = hearth_tests::hearth_command().arg("info").output().unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("model smollm2-135m-instruct: ")).unwrap_or_else(|| panic!("no fit line:\n{text}"));
    assert!(line.contains(": fits: "), "{line}");
}

#[test]
fn a_budget_smaller_than_the_startup_models_is_a_configuration_error_naming_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("hearth.toml");
    // The default chat model loads at start-up; an on-demand one beside it needs a second slot.
    let text = format!("[engine]\nmax_loaded_models = 1\n[[models]]\nname = \"b\"\nkind = \"chat\"\npath = \"{CHAT_MODEL}\"\nload = \"on_demand\"\n");
    std::fs::write(&config, text).unwrap_or_else(|e| panic!("{e}"));
    let out = hearth_tests::hearth_command().arg("--config").arg(&config).arg("validate").output().unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("engine.max_loaded_models") && err.contains("1 load at start-up (`smollm2-135m-instruct`) and an on-demand model needs one more"),
        "{err}"
    );
}
