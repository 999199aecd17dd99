//! The OpenAI-compatible API driven over real HTTP against the real binary and models: the happy
//! paths of chat, completions and embeddings, and every error case a client can cause.

use base64::Engine as _;
use hearth_tests::{Options, Server};
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = client().post(server.url(path)).json(body).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(server: &Server, path: &str) -> (u16, Value) {
    let r = client().get(server.url(path)).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

const CHAT: &str = "smollm2-135m-instruct";
const EMBED: &str = "all-minilm-l6-v2";

fn chat_body(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": CHAT, "messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": 24});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// Assert an OpenAI-shaped error with this status whose message contains `needle`.
fn assert_error(what: &str, (status, body): (u16, Value), want: u16, needle: &str) {
    assert_eq!(status, want, "{what}: status (body {body})");
    let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: no error.message in {body}"));
    assert!(body["error"]["type"].is_string(), "{what}: no error.type in {body}");
    assert!(message.contains(needle), "{what}: message {message:?} does not mention {needle:?}");
}

#[tokio::test]
async fn health_ready_and_models() {
    let server = Server::start();
    assert_eq!(get(&server, "/health").await, (200, json!({"status": "ok"})));
    // Ready, with each model's state (both load at start-up by default).
    let loaded = |id: &str| json!({"id": id, "state": "loaded", "in_flight": 0});
    assert_eq!(get(&server, "/ready").await, (200, json!({"status": "ready", "models": [loaded(CHAT), loaded(EMBED)]})));
    let (status, models) = get(&server, "/v1/models").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, vec![CHAT, EMBED]);
    assert_eq!(models["data"][1]["meta"]["n_embd"], 384);
    let (status, one) = get(&server, &format!("/v1/models/{CHAT}")).await;
    assert_eq!((status, one["meta"]["kind"].as_str()), (200, Some("chat")));
    // The compute devices this build found (the CPU here), and where the model runs.
    let devices = one["meta"]["devices"].as_array().cloned().unwrap_or_default();
    assert!(devices.iter().any(|d| d["type"] == "cpu" && d["memory_total"].as_u64().unwrap_or(0) > 0), "{one}");
    assert_eq!((one["meta"]["on_gpu"].as_bool(), one["meta"]["kv_cache_tokens"].as_u64()), (Some(false), Some(32768)), "{one}");
    assert_error("unknown route", get(&server, "/v2/nothing").await, 404, "/v2/nothing");
}

#[tokio::test]
async fn tokenize_counts_with_the_models_own_tokenizer() {
    let server = Server::start();
    let (status, plain) = post(&server, "/tokenize", &json!({"content": "The quick brown fox"})).await;
    assert_eq!(status, 200, "{plain}");
    let tokens = plain["tokens"].as_array().cloned().unwrap_or_default();
    assert!(!tokens.is_empty() && tokens.iter().all(Value::is_i64), "{plain}");
    assert_eq!(plain["count"].as_u64(), Some(tokens.len() as u64));
    // vLLM's spelling, for the embedding model by name, gives that model's own count.
    let (status, embed) = post(&server, "/tokenize", &json!({"model": EMBED, "prompt": "The quick brown fox", "add_special_tokens": true})).await;
    assert_eq!(status, 200, "{embed}");
    assert!(embed["count"].as_u64().unwrap_or(0) > tokens.len() as u64, "CLS and SEP are added: {embed}");
    assert_error("no text", post(&server, "/tokenize", &json!({"model": CHAT})).await, 400, "content");
    assert_error("unknown model", post(&server, "/tokenize", &json!({"model": "nope", "content": "x"})).await, 404, "nope");
}

#[tokio::test]
async fn chat_completion_answers_with_usage() {
    let server = Server::start();
    let (status, body) = post(&server, "/v1/chat/completions", &chat_body("What is the capital of France? Answer in one word.", json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    assert!(!text.trim().is_empty(), "empty answer: {body}");
    assert!(text.contains("Paris"), "SmolLM2 knows this one: {text:?}");
    let usage = &body["usage"];
    let (p, c) = (usage["prompt_tokens"].as_u64().unwrap_or(0), usage["completion_tokens"].as_u64().unwrap_or(0));
    assert!(p > 10 && (1..=24).contains(&c), "usage {usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(p + c));
    // Greedy decoding is deterministic: the same request gives the same text.
    let (_, again) = post(&server, "/v1/chat/completions", &chat_body("What is the capital of France? Answer in one word.", json!({}))).await;
    assert_eq!(again["choices"][0]["message"]["content"], body["choices"][0]["message"]["content"]);
}

#[tokio::test]
async fn completions_honour_max_tokens_and_stop() {
    let server = Server::start();
    let body = json!({"model": CHAT, "prompt": "The list of the planets: Mercury, Venus,", "max_tokens": 12, "temperature": 0, "ignore_eos": true});
    let (status, full) = post(&server, "/v1/completions", &body).await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(full["choices"][0]["finish_reason"], "length");
    assert_eq!(full["usage"]["completion_tokens"], 12);
    let text = full["choices"][0]["text"].as_str().unwrap_or_default().to_owned();
    // Stop at a piece of the greedy output: the answer is exactly what came before it.
    let cut = text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i);
    let stop: String = text[cut..].chars().take(3).collect();
    let expected = &text[..text.find(&stop).unwrap_or(0)];
    let mut with_stop = body.clone();
    with_stop["stop"] = json!([stop]);
    let (status, stopped) = post(&server, "/v1/completions", &with_stop).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop", "stop {stop:?} in {text:?}");
    assert_eq!(stopped["choices"][0]["text"].as_str(), Some(expected));
}

#[tokio::test]
async fn chat_stream_is_sse_with_role_deltas_usage_and_done() {
    let server = Server::start();
    let body = chat_body("Count from one to five.", json!({"stream": true, "stream_options": {"include_usage": true}, "max_tokens": 10, "ignore_eos": true}));
    let r = client().post(server.url("/v1/chat/completions")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap_or_default();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty() && !e.starts_with(':')).collect();
    assert_eq!(events.last().copied(), Some("data: [DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap_or(e)).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(!content.is_empty());
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 10);
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().into_iter().flatten().filter_map(Value::as_f64).collect()
}

#[tokio::test]
async fn embeddings_match_an_independent_reference() {
    let server = Server::start();
    let path = hearth_tests::repo_root().join("tests/fixtures/minilm_reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default()).unwrap_or(Value::Null);
    let refs = reference["references"].as_array().cloned().unwrap_or_default();
    assert!(refs.len() >= 5, "reference file missing");
    let texts: Vec<&str> = refs.iter().filter_map(|r| r["text"].as_str()).collect();
    let (status, body) = post(&server, "/v1/embeddings", &json!({"model": EMBED, "input": texts})).await;
    assert_eq!(status, 200, "{body}");
    for (i, r) in refs.iter().enumerate() {
        let ours = floats(&body["data"][i]["embedding"]);
        assert_eq!(ours.len(), 384);
        let c = cosine(&ours, &floats(&r["embedding"]));
        assert!(c >= 0.99, "cosine {c} for {:?}", r["text"]);
    }
    assert_eq!(body["usage"]["prompt_tokens"].as_u64(), Some(refs.iter().filter_map(|r| r["tokens"].as_u64()).sum()));
    // Unrelated sentences are further apart than a sentence and itself.
    let (a, b) = (floats(&body["data"][0]["embedding"]), floats(&body["data"][2]["embedding"]));
    assert!(cosine(&a, &b) < 0.5);

    // base64, as the openai SDK asks for by default: the same vector as little-endian f32.
    let (status, b64) = post(&server, "/v1/embeddings", &json!({"model": EMBED, "input": texts[0], "encoding_format": "base64"})).await;
    assert_eq!(status, 200);
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["embedding"].as_str().unwrap_or_default()).unwrap_or_default();
    let decoded: Vec<f64> = bytes.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect();
    assert!(cosine(&decoded, &a) > 0.99999);

    assert_error("empty string", post(&server, "/v1/embeddings", &json!({"model": EMBED, "input": ""})).await, 400, "empty");
    let long = "word ".repeat(600);
    assert_error("too long", post(&server, "/v1/embeddings", &json!({"model": EMBED, "input": long})).await, 400, "limit of 512");
    assert_error("chat model", post(&server, "/v1/embeddings", &json!({"model": CHAT, "input": "x"})).await, 400, "does not support embeddings");
}

#[tokio::test]
async fn bad_requests_get_clear_400s_and_the_server_survives() {
    let server = Server::start_with(Options { env: vec![("HEARTH__SERVER__MAX_BODY_BYTES", "65536")], ..Options::default() });
    let raw = |body: &'static str| {
        let url = server.url("/v1/chat/completions");
        async move {
            let r = client().post(url).header("content-type", "application/json").body(body).send().await.unwrap_or_else(|e| panic!("{e}"));
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_error("malformed JSON", raw("{\"model\": ").await, 400, "malformed JSON");
    assert_error("empty body", raw("").await, 400, "empty");
    assert_error("missing field", raw("{\"messages\": []}").await, 400, "missing field `model`");
    let server_ref = &server;
    let chat = |extra: Value| {
        let body = chat_body("hi", extra);
        async move { post(server_ref, "/v1/chat/completions", &body).await }
    };
    assert_error("unknown model", chat(json!({"model": "gpt-9"})).await, 404, "gpt-9");
    assert_error("unimplemented field", chat(json!({"audio": {"voice": "alloy"}})).await, 400, "audio");
    assert_error("empty messages", chat(json!({"messages": []})).await, 400, "at least one message");
    assert_error("bad role", chat(json!({"messages": [{"role": "wizard", "content": "x"}]})).await, 400, "wizard");
    assert_error("negative max_tokens", chat(json!({"max_tokens": -5})).await, 400, "max_tokens must be at least 1");
    assert_error("absurd max_tokens", chat(json!({"max_tokens": 1_000_000_000})).await, 400, "limit");
    assert_error("wrong type", chat(json!({"temperature": "hot"})).await, 400, "temperature");
    assert_error("temperature range", chat(json!({"temperature": 7})).await, 400, "between 0 and 2");
    assert_error("n > 1", chat(json!({"n": 3})).await, 400, "n = 1");
    assert_error("logit_bias", chat(json!({"logit_bias": {"abc": 5}})).await, 400, "token id");
    let long = "word ".repeat(9000);
    assert_error("prompt over context", chat(json!({"messages": [{"role": "user", "content": long}]})).await, 400, "maximum context length");
    assert_error(
        "prompt + max_tokens over context",
        chat(json!({"messages": [{"role": "user", "content": "word ".repeat(8100)}], "max_tokens": 500})).await,
        400,
        "maximum context length",
    );
    let huge = json!({"model": CHAT, "prompt": "x".repeat(100_000)});
    assert_error("body over limit", post(&server, "/v1/completions", &huge).await, 413, "65536 bytes");
    assert_error("empty prompt", post(&server, "/v1/completions", &json!({"model": CHAT, "prompt": ""})).await, 400, "prompt");
    // Still alive and still correct.
    let (status, body) = post(&server, "/v1/chat/completions", &chat_body("Say hi", json!({"max_tokens": 4}))).await;
    assert_eq!(status, 200, "{body}");
}

/// Structured output: `response_format` becomes a grammar the sampler enforces, so even a 135M
/// model's output parses, has exactly the schema's keys in order, and the enum holds.
#[tokio::test]
async fn response_format_json_schema_is_enforced() {
    let server = Server::start();
    let schema = json!({"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 24}, "population": {"type": "integer"}, "size": {"enum": ["small", "large"]},
        "rivers": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 2}},
        "required": ["city", "population", "size", "rivers"], "additionalProperties": false});
    let format = json!({"type": "json_schema", "json_schema": {"name": "city", "strict": true, "schema": schema}});
    for temperature in [0.0, 1.0] {
        let body = chat_body("Describe Paris as JSON.", json!({"response_format": format, "max_tokens": 200, "temperature": temperature, "seed": 7}));
        let (status, v) = post(&server, "/v1/chat/completions", &body).await;
        assert_eq!(status, 200, "{v}");
        let text = v["choices"][0]["message"]["content"].as_str().unwrap_or_default();
        let parsed: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
        let keys: Vec<&str> = parsed.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(keys, ["city", "population", "size", "rivers"], "{text}");
        assert!(parsed["city"].is_string() && parsed["population"].is_i64(), "{text}");
        assert!(["small", "large"].contains(&parsed["size"].as_str().unwrap_or("")), "{text}");
        assert!(parsed["rivers"].as_array().is_some_and(|r| r.len() <= 2 && r.iter().all(Value::is_string)), "{text}");
        assert!(parsed["city"].as_str().is_some_and(|c| c.chars().count() <= 24), "{text}");
    }
    let body = chat_body("Give me a JSON object.", json!({"response_format": {"type": "json_object"}, "max_tokens": 120}));
    let (status, v) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    if v["choices"][0]["finish_reason"] == "stop" {
        assert!(serde_json::from_str::<Value>(text).is_ok_and(|j| j.is_object()), "{text:?}");
    } else {
        assert!(text.trim_start().starts_with('{'), "{text:?}");
    }
    // `pattern` is enforced (llama.cpp's converter turns the regular expression into grammar rules).
    let pattern = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^a+$"}}});
    let (status, v) = post(&server, "/v1/chat/completions", &chat_body("x", json!({"response_format": pattern}))).await;
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    if v["choices"][0]["finish_reason"] == "stop" {
        let s = serde_json::from_str::<String>(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(!s.is_empty() && s.chars().all(|c| c == 'a'), "{text:?}");
    }
    // A schema the converter cannot convert is a 400 on response_format.
    let bad = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}}});
    let (status, v) = post(&server, "/v1/chat/completions", &chat_body("x", json!({"response_format": bad}))).await;
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("response_format")), "{v}");
}
