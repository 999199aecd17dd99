//! hearth in front of a remote inference engine. The "remote" engine is a second hearth started
//! here with the real small models: a real OpenAI-compatible server, as vLLM would be. The hearth
//! under test serves its models with `provider = "remote"` (and one local model beside them), and
//! the tests check that answers come through unchanged, that an upstream that is down, silent or
//! stalling gives a clear 503 or 504 without hurting hearth, that a client hanging up cancels the
//! upstream request (seen on the upstream's own `/metrics`), and that the upstream's API key is
//! sent but never printed. The only fakes are two TCP listeners for the timeouts: one never
//! answers, one answers a stream's first chunk and then goes quiet.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hearth_tests::{hearth_command, Options, Server};
use serde_json::{json, Value};

/// The upstream's models (the default configuration's).
const CHAT: &str = "smollm2-135m-instruct";
const EMBED: &str = "all-minilm-l6-v2";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let r = client().post(url).json(body).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str) -> (u16, Value) {
    let r = client().get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// One `[[models]]` entry served by `upstream` (a base like `http://127.0.0.1:PORT`).
fn remote_entry(name: &str, kind: &str, upstream: &str, remote_model: &str, extra: &str) -> String {
    format!(
        "[[models]]\nname = \"{name}\"\nkind = \"{kind}\"\nprovider = \"remote\"\nbase_url = \"{upstream}/v1\"\nremote_model = \"{remote_model}\"\n{extra}\n"
    )
}

/// The local embedding model, as in the default configuration.
const LOCAL_EMBED: &str = "[[models]]\nname = \"all-minilm-l6-v2\"\nkind = \"embedding\"\npath = \"models/all-MiniLM-L6-v2.f16.gguf\"\n\
    max_num_seqs = 32\nmax_num_batched_tokens = 2048\n\n";

fn chat_body(model: &str, content: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": 16});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// Assert an OpenAI-shaped error with this status whose message contains every needle.
fn assert_error(what: &str, (status, body): &(u16, Value), want: u16, needles: &[&str]) {
    assert_eq!(*status, want, "{what}: status (body {body})");
    let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: no error.message in {body}"));
    for needle in needles {
        assert!(message.contains(needle), "{what}: message {message:?} does not mention {needle:?}");
    }
}

/// The `data:` payloads of an SSE body, without comments.
fn sse_events(text: &str) -> Vec<String> {
    text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_owned).collect()
}

/// A streamed request's events, and the concatenated content of its chunks.
async fn stream(url: &str, body: &Value) -> (Vec<Value>, String) {
    let r = client().post(url).json(body).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap_or_default();
    let events = sse_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect();
    let content = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().or_else(|| c["choices"][0]["text"].as_str()))
        .collect();
    (chunks, content)
}

/// `(prompt_tokens, completion_tokens)` of the running usage of every chunk with text.
fn text_chunks_usage(chunks: &[Value]) -> Vec<(u64, u64)> {
    chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty()))
        .map(|c| (c["usage"]["prompt_tokens"].as_u64().unwrap_or(0), c["usage"]["completion_tokens"].as_u64().unwrap_or(0)))
        .collect()
}

/// A sample of a `/metrics` scrape: `name{labels}` as hearth prints them.
async fn sample(server: &Server, name: &str, labels: &str) -> Option<f64> {
    let text = reqwest::get(server.url("/metrics")).await.ok()?.text().await.ok()?;
    let key = format!("{name}{{{labels}}} ");
    text.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok())
}

fn labels(model: &str, provider: &str) -> String {
    format!("model_name=\"{model}\",provider=\"{provider}\"")
}

/// Poll `check` every 100 ms until it gives `Some`, or panic with `what` after `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Start without waiting for `/ready` to say 200 (an upstream that is not up keeps it at 503),
/// only until it no longer says the models are loading.
async fn start_unready(config: &str, env: Vec<(&str, &str)>) -> Server {
    let server = Server::spawn(Options { config: Some(config), env }).unwrap_or_else(|(status, log)| panic!("exited {status:?}:\n{log}"));
    let url = server.url("/ready");
    eventually("models loaded", Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            let (status, body) = get(&url).await;
            (status == 200 || !body["error"]["message"].as_str().unwrap_or("still loading").contains("still loading")).then_some(())
        }
    })
    .await;
    server
}

fn cosine(a: &Value, b: &Value) -> f64 {
    let (a, b): (Vec<f64>, Vec<f64>) = (floats(a), floats(b));
    assert_eq!(a.len(), b.len());
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(&a) * norm(&b))
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => v.as_array().into_iter().flatten().filter_map(Value::as_f64).collect(),
    }
}

#[tokio::test]
async fn answers_come_through_the_upstream_with_hearths_names_checks_and_metrics() {
    let upstream = Server::start();
    // Only these models: the default chat model is not served beside its remote stand-in.
    let config = format!(
        "replace_default_models = true\n{}{}{LOCAL_EMBED}",
        remote_entry("remote-chat", "chat", &upstream.base, CHAT, ""),
        remote_entry("remote-embed", "embedding", &upstream.base, EMBED, "")
    );
    let front = Server::start_with(Options { config: Some(&config), ..Options::default() });

    // The model list says where each model runs; the context length came from the upstream.
    let (status, models) = get(&front.url("/v1/models")).await;
    assert_eq!(status, 200, "{models}");
    let described: Vec<(&str, &str)> =
        models["data"].as_array().into_iter().flatten().filter_map(|m| Some((m["id"].as_str()?, m["meta"]["provider"].as_str()?))).collect();
    assert_eq!(described, vec![("remote-chat", "remote"), ("remote-embed", "remote"), (EMBED, "local")]);
    assert_eq!(models["data"][0]["max_model_len"], 8192, "learned from the upstream's /v1/models: {models}");
    assert_eq!(models["data"][0]["meta"]["remote_model"], CHAT);

    // Greedy chat through the front is the upstream's own answer, under hearth's model name.
    let question = "What is the capital of France? Answer in one word.";
    let (status, through) = post(&front.url("/v1/chat/completions"), &chat_body("remote-chat", question, json!({}))).await;
    let (_, direct) = post(&upstream.url("/v1/chat/completions"), &chat_body(CHAT, question, json!({}))).await;
    assert_eq!(status, 200, "{through}");
    assert_eq!(through["model"], "remote-chat");
    assert_eq!(through["choices"][0]["message"]["content"], direct["choices"][0]["message"]["content"]);
    assert!(through["choices"][0]["message"]["content"].as_str().is_some_and(|t| t.contains("Paris")), "{through}");
    assert_eq!(through["usage"]["prompt_tokens"], direct["usage"]["prompt_tokens"]);
    assert_eq!(through["usage"]["completion_tokens"], direct["usage"]["completion_tokens"]);

    // Streamed: token by token, in hearth's chunk format, the same text, the upstream's usage.
    let streamed = chat_body("remote-chat", "Count from one to ten.", json!({"stream": true, "max_tokens": 10, "ignore_eos": true,
        "stream_options": {"include_usage": true, "continuous_usage_stats": true}}));
    let (chunks, content) = stream(&front.url("/v1/chat/completions"), &streamed).await;
    let mut direct_body = streamed.clone();
    direct_body["model"] = json!(CHAT);
    let (_, direct_content) = stream(&upstream.url("/v1/chat/completions"), &direct_body).await;
    assert_eq!(content, direct_content);
    assert!(chunks.iter().all(|c| c["model"] == "remote-chat" && c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text_chunks = chunks.iter().filter(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty())).count();
    assert!(text_chunks >= 5, "one chunk per token or so, not one buffered blob: {chunks:?}");
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "length");
    let usage = &chunks[chunks.len() - 1]["usage"];
    assert_eq!(usage["completion_tokens"], 10);
    // Running usage (vLLM's continuous_usage_stats) counts up with the upstream's prompt count.
    let running: Vec<(u64, u64)> = text_chunks_usage(&chunks);
    assert!(running.iter().all(|(p, _)| Some(*p) == usage["prompt_tokens"].as_u64()), "{running:?} vs {usage}");
    assert!(running.windows(2).all(|w| w[0].1 < w[1].1) && running.last().map(|r| r.1) == Some(10), "{running:?}");

    // Completions, plain.
    let prompt = json!({"prompt": "The list of the planets: Mercury, Venus,", "max_tokens": 8, "temperature": 0});
    let with = |model: &str| {
        let mut b = prompt.clone();
        b["model"] = json!(model);
        b
    };
    let (status, through) = post(&front.url("/v1/completions"), &with("remote-chat")).await;
    let (_, direct) = post(&upstream.url("/v1/completions"), &with(CHAT)).await;
    assert_eq!(status, 200, "{through}");
    assert_eq!((through["object"].as_str(), through["model"].as_str()), (Some("text_completion"), Some("remote-chat")));
    assert_eq!(through["choices"][0]["text"], direct["choices"][0]["text"]);

    // Embeddings: the remote model's vectors are the upstream's and the local model's.
    let texts = json!(["The cat sat on the mat.", "Quarterly revenue grew by ten percent."]);
    let (status, remote) = post(&front.url("/v1/embeddings"), &json!({"model": "remote-embed", "input": texts})).await;
    assert_eq!(status, 200, "{remote}");
    let (_, direct) = post(&upstream.url("/v1/embeddings"), &json!({"model": EMBED, "input": texts})).await;
    let (_, local) = post(&front.url("/v1/embeddings"), &json!({"model": EMBED, "input": texts, "encoding_format": "base64"})).await;
    assert_eq!(remote["model"], "remote-embed");
    assert_eq!(remote["usage"], direct["usage"]);
    for i in 0..2 {
        assert!(cosine(&remote["data"][i]["embedding"], &direct["data"][i]["embedding"]) > 0.99999);
        assert!(cosine(&remote["data"][i]["embedding"], &local["data"][i]["embedding"]) > 0.99999);
    }

    // hearth's own checks come first: the upstream never sees these.
    let chat = front.url("/v1/chat/completions");
    assert_error("temperature", &post(&chat, &chat_body("remote-chat", "hi", json!({"temperature": 7}))).await, 400, &["between 0 and 2"]);
    assert_error("n", &post(&chat, &chat_body("remote-chat", "hi", json!({"n": 2}))).await, 400, &["n = 1"]);
    assert_error("cap", &post(&chat, &chat_body("remote-chat", "hi", json!({"max_tokens": 1_000_000}))).await, 400, &["limit of 8192"]);
    assert_error(
        "wrong kind",
        &post(&front.url("/v1/embeddings"), &json!({"model": "remote-chat", "input": "x"})).await,
        400,
        &["does not support embeddings"],
    );
    assert_eq!(sample(&upstream, "hearth_http_requests_total", "route=\"/v1/chat/completions\",status=\"400\"").await, None);
    // The upstream's own refusal is the client's error: its status and message, passed through.
    let too_long = post(&chat, &chat_body("remote-chat", "hi", json!({"max_tokens": 8190}))).await;
    assert_error("upstream 400", &too_long, 400, &["upstream 'remote-chat'", "maximum context length"]);
    assert_eq!(too_long.1["error"]["param"], "max_tokens");

    // The vLLM series keep their names, labelled with the provider; no KV cache for a remote model.
    let remote_chat = labels("remote-chat", "remote");
    assert!(sample(&front, "vllm:generation_tokens_total", &remote_chat).await.is_some_and(|n| n >= 18.0));
    assert!(sample(&front, "vllm:prompt_tokens_total", &remote_chat).await.is_some_and(|n| n > 20.0));
    let finished = |reason: &'static str| {
        let labels = format!("{remote_chat},finished_reason=\"{reason}\"");
        let front = &front;
        async move { sample(front, "vllm:request_success_total", &labels).await.unwrap_or(-1.0) }
    };
    let (length, stop) = (finished("length").await, finished("stop").await);
    assert!(length >= 1.0 && length + stop == 3.0, "three generations finished: {length} by length, {stop} by stop");
    assert_eq!(sample(&front, "vllm:time_to_first_token_seconds_count", &remote_chat).await, Some(3.0));
    assert_eq!(sample(&front, "vllm:num_requests_running", &remote_chat).await, Some(0.0));
    assert_eq!(sample(&front, "vllm:kv_cache_usage_perc", &remote_chat).await, None);
    assert!(sample(&front, "vllm:kv_cache_usage_perc", &labels(EMBED, "local")).await.is_some());
    assert_eq!(sample(&front, "vllm:request_success_total", &format!("{},finished_reason=\"stop\"", labels("remote-embed", "remote"))).await, Some(1.0));

    // `hearth bench` drives the remote-configured instance unchanged.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let report = dir.path().join("bench.json");
    let bench = hearth_command()
        .args(["bench", "--target", &front.base, "--model", "remote-chat", "--profile", "synchronous", "--max-requests", "3"])
        .args(["--data", "synthetic:prompt_tokens=16,output_tokens=8", "--json"])
        .arg(&report)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let said = format!("{}{}", String::from_utf8_lossy(&bench.stdout), String::from_utf8_lossy(&bench.stderr));
    assert!(bench.status.success(), "{said}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap_or_default()).unwrap_or(Value::Null);
    let summary = &report["profiles"][0]["summary"];
    assert_eq!((summary["completed"].as_u64(), summary["output_tokens_mean"].as_f64()), (Some(3), Some(8.0)), "{said}");
}

#[tokio::test]
async fn an_upstream_that_goes_down_is_a_503_and_ready_follows_it() {
    let upstream = Server::start();
    let addr = upstream.base.trim_start_matches("http://").to_owned();
    let config = remote_entry("remote-chat", "chat", &upstream.base, CHAT, "max_retries = 1\nretry_backoff_ms = 50");
    let front = Server::start_with(Options { config: Some(&config), ..Options::default() });
    let chat = front.url("/v1/chat/completions");
    assert_eq!(post(&chat, &chat_body("remote-chat", "Say hi.", json!({"max_tokens": 4}))).await.0, 200);

    drop(upstream);
    let ready = front.url("/ready");
    let not_ready = eventually("/ready says 503", Duration::from_secs(15), || {
        let ready = ready.clone();
        async move {
            let answer = get(&ready).await;
            (answer.0 == 503).then_some(answer)
        }
    })
    .await;
    assert_error("ready", &not_ready, 503, &["upstream 'remote-chat'", &addr, "unreachable"]);
    let down = post(&chat, &chat_body("remote-chat", "Say hi.", json!({}))).await;
    assert_error("plain", &down, 503, &["upstream 'remote-chat'", &addr, "is unreachable", "refused"]);
    assert_eq!(down.1["error"]["code"], "upstream_unreachable");
    let r = client().post(&chat).json(&chat_body("remote-chat", "Say hi.", json!({"stream": true}))).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 503, "a stream that cannot start is an error status, not a broken stream");
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(get(&front.url("/health")).await.0, 200, "hearth itself is fine");
    assert!(front.log().contains("retrying"), "one retry was made:\n{}", front.log());

    // The upstream comes back on the same address: so does the front.
    let upstream = Server::start_with(Options { env: vec![("HEARTH__SERVER__LISTEN", addr.as_str())], ..Options::default() });
    eventually("/ready says 200 again", Duration::from_secs(15), || {
        let ready = ready.clone();
        async move { (get(&ready).await.0 == 200).then_some(()) }
    })
    .await;
    let (status, body) = post(&chat, &chat_body("remote-chat", "Say hi.", json!({"max_tokens": 4}))).await;
    assert_eq!(status, 200, "{body}");
    drop(upstream);
}

/// A fake upstream: a TCP listener that reads each request's head and then either never answers
/// (`first_chunk` is `None`) or sends an SSE response head and one chunk and goes quiet. It holds
/// every connection open for as long as the test runs.
fn quiet_upstream(first_chunk: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            if let Some(chunk) = first_chunk {
                let _ = write!(conn, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: {chunk}\n\n");
                let _ = conn.flush();
            }
            held.push(conn);
        }
    });
    base
}

#[tokio::test]
async fn a_silent_or_stalling_upstream_times_out_with_504() {
    let silent = quiet_upstream(None);
    let stalling = quiet_upstream(Some(r#"{"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": null}]}"#));
    let config = format!(
        "{}{}",
        remote_entry("silent", "chat", &silent, "m", "request_timeout_ms = 1500\nmax_retries = 0"),
        remote_entry("stalling", "chat", &stalling, "m", "read_timeout_ms = 1500\nmax_retries = 0")
    );
    let front = start_unready(&config, Vec::new()).await;
    let chat = front.url("/v1/chat/completions");

    for stream in [false, true] {
        let started = Instant::now();
        let answer = post(&chat, &chat_body("silent", "hi", json!({"stream": stream}))).await;
        let took = started.elapsed();
        assert_error("silent", &answer, 504, &["upstream 'silent'", &silent, "did not answer within 1500 ms"]);
        assert_eq!(answer.1["error"]["code"], "upstream_timeout");
        assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(10), "timeout honoured: {took:?}");
    }
    assert_error("ready", &get(&front.url("/ready")).await, 503, &["upstream 'silent'", "did not answer", "upstream 'stalling'"]);

    // The stalling one answered, so the stream has begun: the timeout arrives inside it.
    let started = Instant::now();
    let r = client().post(&chat).json(&chat_body("stalling", "hi", json!({"stream": true}))).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap_or_default();
    assert!(started.elapsed() >= Duration::from_millis(1400), "{:?}", started.elapsed());
    let events = sse_events(&text);
    assert!(events.iter().any(|e| e.contains("\"content\":\"Hel\"")), "the first token came through: {text}");
    let error: Value = events.iter().rev().nth(1).and_then(|e| serde_json::from_str(e).ok()).unwrap_or(Value::Null);
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("upstream 'stalling'") && m.contains("sent nothing for 1500 ms")), "{text}");
    assert_eq!((error["error"]["code"].as_str(), events.last().map(String::as_str)), (Some("upstream_timeout"), Some("[DONE]")));
    // Not streamed: held for more than a second, so the error arrives in the held body.
    let r = client().post(&chat).json(&chat_body("stalling", "hi", json!({}))).send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = r.status().as_u16();
    let body: Value = serde_json::from_str(r.text().await.unwrap_or_default().trim()).unwrap_or(Value::Null);
    assert!(status == 200 || status == 504, "{status}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("sent nothing for 1500 ms")), "{body}");
    assert_eq!(get(&front.url("/health")).await.0, 200);
}

/// The upstream's count of requests whose client went away.
async fn upstream_aborts(upstream: &Server) -> f64 {
    sample(upstream, "vllm:request_success_total", &format!("{},finished_reason=\"abort\"", labels(CHAT, "local"))).await.unwrap_or(-1.0)
}

#[tokio::test]
async fn a_client_that_hangs_up_cancels_the_upstream_request() {
    let upstream = Server::start();
    let config = format!(
        "{}{}",
        remote_entry("remote-chat", "chat", &upstream.base, CHAT, ""),
        remote_entry("narrow", "chat", &upstream.base, CHAT, "max_concurrency = 1\nmax_queue = 1\nqueue_timeout_ms = 500")
    );
    let front = Server::start_with(Options { config: Some(&config), ..Options::default() });
    assert_eq!(upstream_aborts(&upstream).await, 0.0);
    let long = |stream: bool| chat_body("remote-chat", "Tell me a very long story.", json!({"max_tokens": 4000, "ignore_eos": true, "stream": stream}));

    // Streamed: read the first token, then hang up.
    let mut r = client().post(front.url("/v1/chat/completions")).json(&long(true)).send().await.unwrap_or_else(|e| panic!("{e}"));
    let mut seen = String::new();
    while sse_events(&seen).iter().filter(|e| e.contains("\"content\"")).count() < 2 {
        let chunk = r.chunk().await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("stream ended: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(r);
    eventually("the upstream aborts the streamed request", Duration::from_secs(30), || async {
        (upstream_aborts(&upstream).await == 1.0).then_some(())
    })
    .await;

    // Not streamed: the client gives up after 3 s.
    let impatient = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap_or_else(|e| panic!("{e}"));
    let gave_up = impatient.post(front.url("/v1/chat/completions")).json(&long(false)).send().await;
    let gave_up = match gave_up {
        Ok(r) => r.text().await.is_err(),
        Err(e) => e.is_timeout(),
    };
    assert!(gave_up, "the request should still be running when the client gives up");
    eventually("the upstream aborts the plain request", Duration::from_secs(30), || async {
        (upstream_aborts(&upstream).await == 2.0).then_some(())
    })
    .await;

    let running = labels(CHAT, "local");
    eventually("the upstream runs nothing", Duration::from_secs(10), || async {
        (sample(&upstream, "vllm:num_requests_running", &running).await == Some(0.0)).then_some(())
    })
    .await;
    let generated = sample(&upstream, "vllm:generation_tokens_total", &running).await.unwrap_or(f64::MAX);
    assert!(generated < 4000.0, "the upstream stopped early: {generated} tokens");
    let remote = format!("{},finished_reason=\"abort\"", labels("remote-chat", "remote"));
    assert_eq!(sample(&front, "vllm:request_success_total", &remote).await, Some(2.0));
    assert_eq!(sample(&front, "vllm:num_requests_running", &labels("remote-chat", "remote")).await, Some(0.0));

    // Admission: one slot upstream and one place in line. While a stream holds the slot, one
    // request waits for it (up to 500 ms, then 429) and a further one is turned away at once.
    let narrow = labels("narrow", "remote");
    let mut long_narrow = long(true);
    long_narrow["model"] = json!("narrow");
    let holder = client().post(front.url("/v1/chat/completions")).json(&long_narrow).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(holder.status().as_u16(), 200);
    assert_eq!(sample(&front, "vllm:num_requests_running", &narrow).await, Some(1.0));
    let chat = front.url("/v1/chat/completions");
    let waiter = tokio::spawn({
        let chat = chat.clone();
        async move {
            let started = Instant::now();
            (post(&chat, &chat_body("narrow", "hi", json!({}))).await, started.elapsed())
        }
    });
    eventually("one request waits for the slot", Duration::from_secs(5), || async {
        (sample(&front, "vllm:num_requests_waiting", &narrow).await == Some(1.0)).then_some(())
    })
    .await;
    let r = client().post(&chat).json(&chat_body("narrow", "hi", json!({}))).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let turned_away = (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null));
    assert_error("queue full", &turned_away, 429, &["narrow", "1 requests already wait"]);
    let (waited, took) = waiter.await.unwrap_or_else(|e| panic!("{e}"));
    assert_error("slot wait", &waited, 429, &["all 1 upstream slots stayed busy for 500 ms"]);
    assert!(took >= Duration::from_millis(450), "{took:?}");
    drop(holder);
    eventually("the slot is free again", Duration::from_secs(10), || async {
        (sample(&front, "vllm:num_requests_running", &narrow).await == Some(0.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_upstream_key_is_sent_and_never_printed() {
    const SECRET: &str = "sk-upstream-7f3a9c1e5b2d";
    const WRONG: &str = "sk-wrong-0b1c2d3e4f5a";
    let upstream = Server::start_with(Options { env: vec![("HEARTH__SERVER__API_KEYS", SECRET)], ..Options::default() });
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key_file = dir.path().join("upstream.key");
    std::fs::write(&key_file, format!("{SECRET}\n")).unwrap_or_else(|e| panic!("{e}"));
    let config = format!(
        "{}{}",
        remote_entry("remote-chat", "chat", &upstream.base, CHAT, &format!("api_key_file = \"{}\"", key_file.display())),
        remote_entry("wrong-key", "chat", &upstream.base, CHAT, "api_key_env = \"HEARTH_TEST_WRONG_KEY\"")
    );
    let front = start_unready(&config, vec![("HEARTH__SERVER__API_KEYS", "front-door-key"), ("HEARTH_TEST_WRONG_KEY", WRONG), ("RUST_LOG", "trace")]).await;
    let chat = front.url("/v1/chat/completions");

    // hearth's own keys still guard the front door.
    let r = client().post(&chat).json(&chat_body("remote-chat", "Say hi.", json!({}))).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 401);
    let with_key = |model: &str| client().post(&chat).bearer_auth("front-door-key").json(&chat_body(model, "Say hi.", json!({"max_tokens": 4})));
    let r = with_key("remote-chat").send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 200, "the upstream accepted the key from the file: {}", r.text().await.unwrap_or_default());
    // A key the upstream refuses is hearth's misconfiguration: 502, and /ready says so.
    let r = with_key("wrong-key").send().await.unwrap_or_else(|e| panic!("{e}"));
    let answer = (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null));
    assert_error("wrong key", &answer, 502, &["upstream 'wrong-key'", "HTTP 401", "api_key_file or api_key_env"]);
    assert_error("ready", &get(&front.url("/ready")).await, 503, &["upstream 'wrong-key'", "401"]);

    let printed = format!("{}{}", front.log(), front.stdout());
    assert!(printed.contains("Using a remote model") && printed.contains(&key_file.display().to_string()), "the key's source is logged");
    assert!(printed.lines().count() > 20, "trace logging was on:\n{printed}");
    for key in [SECRET, WRONG, &SECRET[3..15], &WRONG[3..15]] {
        assert!(!printed.contains(key), "the API key appears in hearth's output");
    }
}

#[test]
fn validate_checks_remote_models_keys() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let validate = |toml: &str| {
        let path = dir.path().join("hearth.toml");
        std::fs::write(&path, toml).unwrap_or_else(|e| panic!("{e}"));
        let out = hearth_command().arg("validate").arg("--config").arg(&path).output().unwrap_or_else(|e| panic!("{e}"));
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let remote = |extra: &str| format!("{}{extra}\n", remote_entry("r", "chat", "http://127.0.0.1:9", "m", ""));
    let (code, out) = validate(&format!("{}{LOCAL_EMBED}", remote("max_concurrency = 8\nrequest_timeout_ms = 100")));
    assert_eq!(code, Some(0), "a mixed configuration is valid: {out}");
    let refused = [
        (remote("path = \"models/x.gguf\""), vec!["models[\"r\"].path", "applies only to local models"]),
        (remote("n_gpu_layers = 10"), vec!["models[\"r\"].n_gpu_layers", "applies only to local models"]),
        (LOCAL_EMBED.replace("max_num_seqs", "base_url = \"http://h/v1\"\nmax_num_seqs"), vec!["models[\"all-minilm-l6-v2\"].base_url", "provider = \"remote\""]),
        ("[[models]]\nname = \"x\"\nkind = \"chat\"\n".to_owned(), vec!["models[\"x\"].path", "GGUF"]),
        (remote("").replace("base_url = \"http://127.0.0.1:9/v1\"\n", ""), vec!["models[\"r\"].base_url", "base URL"]),
        (remote("").replace("http://127.0.0.1:9", "ftp://vllm.example"), vec!["models[\"r\"].base_url", "not http or https"]),
        (remote("").replace("http://127.0.0.1:9", "http://user:pw@h"), vec!["models[\"r\"].base_url", "credentials"]),
        (remote("api_key_file = \"/k\"\napi_key_env = \"K\""), vec!["models[\"r\"].api_key_env", "not both"]),
        (remote("read_timeout_ms = 0"), vec!["models[\"r\"].read_timeout_ms", "at least 1"]),
        (remote("api_key_file = \"/nonexistent/upstream.key\""), vec!["/nonexistent/upstream.key"]),
    ];
    for (toml, needles) in refused {
        let (code, out) = validate(&toml);
        assert_eq!(code, Some(2), "{toml}\n{out}");
        for needle in needles {
            assert!(out.contains(needle), "{needle:?} not in {out:?} for\n{toml}");
        }
    }
}

/// The issue's whole story: two hearth processes, the first pointing its chat model at the
/// second; a PDF dropped into the first one's folder is answered, with a citation of the right
/// page, through the second one's model.
#[tokio::test]
async fn a_dropped_pdf_is_answered_with_citations_through_the_upstream_model() {
    let upstream = Server::start();
    let config = format!(
        "{}{LOCAL_EMBED}[ingest]\nstable_seconds = 0.3\nrescan_seconds = 0.5\n",
        remote_entry("remote-chat", "chat", &upstream.base, CHAT, "")
    );
    let server = Server::start_with(Options { config: Some(&config), ..Options::default() });
    let pdf = hearth_tests::repo_root().join("ingest/tests/fixtures/three_pages.pdf");
    std::fs::copy(&pdf, server.inbox().join("manual.pdf")).unwrap_or_else(|e| panic!("{e}"));
    let (_, stores) = get(&server.url("/v1/vector_stores")).await;
    let vs = stores["data"][0]["id"].as_str().unwrap_or_default().to_owned();
    eventually("the PDF is ingested", Duration::from_secs(90), || async {
        let (_, v) = get(&server.url(&format!("/v1/vector_stores/{vs}"))).await;
        (v["file_counts"]["completed"] == 1).then_some(())
    })
    .await;
    let finished = |server: &Server| {
        let url = server.url("/metrics");
        async move {
            let text = reqwest::get(url).await.ok()?.text().await.ok()?;
            Some(text.lines().filter(|l| l.starts_with("vllm:request_success_total{")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>())
        }
    };
    let before = finished(&upstream).await.unwrap_or(0.0);
    let body = json!({"model": "remote-chat", "input": "What is the secret launch code?", "temperature": 0, "max_output_tokens": 48,
                      "tools": [{"type": "file_search", "vector_store_ids": [vs]}]});
    let (status, r) = post(&server.url("/v1/responses"), &body).await;
    assert_eq!(status, 200, "{r}\n{}", server.log());
    let message = r["output"].as_array().and_then(|o| o.iter().find(|i| i["type"] == "message")).cloned().unwrap_or_default();
    let text = message["content"][0]["text"].as_str().unwrap_or_default();
    let citation = &message["content"][0]["annotations"][0];
    assert!(!text.trim().is_empty(), "{r}");
    assert_eq!((citation["filename"].as_str(), citation["page"].as_u64()), (Some("manual.pdf"), Some(2)), "{r}");
    let after = finished(&upstream).await.unwrap_or(0.0);
    assert!(after > before, "the answer was generated by the upstream ({before} -> {after})");
}
