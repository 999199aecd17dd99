//! `GET /metrics` scraped from the real server: vLLM's series move as traffic (plain chat,
//! streamed chat, embeddings) passes, histograms stay consistent, the HTTP counter sees routes
//! and statuses, both exposition formats are served, and promtool accepts the output.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use futures_util::StreamExt;
use hearth_tests::Server;
use serde_json::{json, Value};

const CHAT: &str = "smollm2-135m-instruct";
const EMBED: &str = "all-minilm-l6-v2";

/// Samples by their full name with labels as printed (`name{a="b"}`).
struct Scrape {
    text: String,
    samples: HashMap<String, f64>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect();
        Scrape { text, samples }
    }

    /// The value of `name{labels}`; labels in the order hearth prints them.
    fn get(&self, name: &str, labels: &str) -> f64 {
        let key = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{labels}}}") };
        *self.samples.get(&key).unwrap_or_else(|| panic!("no sample {key} in:\n{}", self.text))
    }

    fn model(&self, name: &str, model: &str) -> f64 {
        self.get(name, &format!("model_name=\"{model}\",provider=\"local\""))
    }
}

async fn scrape(server: &Server) -> Scrape {
    let r = reqwest::get(server.url("/metrics")).await.unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "content type {ct}");
    Scrape::parse(r.text().await.unwrap_or_default())
}

async fn post(server: &Server, path: &str, body: &Value) -> Value {
    let r = reqwest::Client::new().post(server.url(path)).json(body).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    assert_eq!(r.status().as_u16(), 200, "POST {path}");
    r.json().await.unwrap_or(Value::Null)
}

/// Completion tokens of a streamed chat (with `include_usage`).
async fn stream_chat(server: &Server, max_tokens: u32) -> (u64, u64) {
    let body = json!({"model": CHAT, "messages": [{"role": "user", "content": "Count to twenty."}], "max_tokens": max_tokens,
        "ignore_eos": true, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}});
    let r = reqwest::Client::new().post(server.url("/v1/chat/completions")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    let mut text = String::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap_or_else(|e| panic!("{e}"))));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v.get("usage").filter(|u| !u.is_null()).cloned())
        .unwrap_or_else(|| panic!("no usage chunk in {text}"));
    (usage["prompt_tokens"].as_u64().unwrap_or(0), usage["completion_tokens"].as_u64().unwrap_or(0))
}

/// Buckets rise monotonically and the `+Inf` bucket equals the count.
fn assert_histogram_consistent(s: &Scrape, name: &str, model: &str) {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = s
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix) && k.contains(&format!("model_name=\"{model}\"")))
        .filter_map(|(k, v)| {
            let le = k.split("le=\"").nth(1)?.split('"').next()?;
            Some((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 2, "{name}: buckets {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{name}: not cumulative {buckets:?}");
    assert_eq!(buckets.last().map(|b| b.1), Some(s.model(&format!("{name}_count"), model)), "{name}: +Inf != count");
}

#[tokio::test]
async fn traffic_moves_vllm_counters_and_histograms() {
    let server = Server::start();
    let before = scrape(&server).await;
    for model in [CHAT, EMBED] {
        assert_eq!(before.model("vllm:num_requests_running", model), 0.0);
        assert_eq!(before.model("vllm:prompt_tokens_total", model), 0.0);
        assert_eq!(before.model("vllm:e2e_request_latency_seconds_count", model), 0.0);
    }
    let kv = before.model("vllm:kv_cache_usage_perc", CHAT);
    assert!((0.0..=1.0).contains(&kv), "kv usage {kv}");

    // One plain and one streamed chat, each exactly 8 tokens (ignore_eos), and one embedding call.
    let plain = post(&server, "/v1/chat/completions", &json!({"model": CHAT, "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8, "ignore_eos": true, "temperature": 0})).await;
    let (stream_prompt, stream_completion) = stream_chat(&server, 8).await;
    let embedded = post(&server, "/v1/embeddings", &json!({"model": EMBED, "input": ["a first sentence", "a second one"]})).await;
    let plain_prompt = plain["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    assert_eq!((plain["usage"]["completion_tokens"].as_u64(), stream_completion), (Some(8), 8));

    let after = scrape(&server).await;
    let chat_reason = |r: &str| after.get("vllm:request_success_total", &format!("model_name=\"{CHAT}\",provider=\"local\",finished_reason=\"{r}\""));
    assert_eq!(chat_reason("length"), 2.0, "both chats stopped at max_tokens");
    assert_eq!(chat_reason("stop") + chat_reason("abort"), 0.0);
    assert_eq!(after.model("vllm:generation_tokens_total", CHAT), 16.0);
    assert_eq!(after.model("vllm:prompt_tokens_total", CHAT), (plain_prompt + stream_prompt) as f64);
    assert_eq!(after.model("vllm:time_to_first_token_seconds_count", CHAT), 2.0);
    assert_eq!(after.model("vllm:e2e_request_latency_seconds_count", CHAT), 2.0);
    assert_eq!(after.model("vllm:request_queue_time_seconds_count", CHAT), 2.0);
    assert_eq!(after.model("vllm:request_generation_tokens_sum", CHAT), 16.0);
    assert_eq!(after.get("vllm:request_generation_tokens_bucket", &format!("le=\"5.0\",model_name=\"{CHAT}\",provider=\"local\"")), 0.0);
    assert_eq!(after.get("vllm:request_generation_tokens_bucket", &format!("le=\"10.0\",model_name=\"{CHAT}\",provider=\"local\"")), 2.0);
    // One observation per token after each request's first delta: between 1 and 14.
    let itl = after.model("vllm:inter_token_latency_seconds_count", CHAT);
    assert!((1.0..=14.0).contains(&itl), "inter-token observations {itl}");
    let ttft = after.model("vllm:time_to_first_token_seconds_sum", CHAT);
    let e2e = after.model("vllm:e2e_request_latency_seconds_sum", CHAT);
    assert!(ttft > 0.0 && ttft < e2e, "ttft sum {ttft}, e2e sum {e2e}");
    for h in ["vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds", "vllm:request_prompt_tokens"] {
        assert_histogram_consistent(&after, h, CHAT);
    }

    let embed_tokens = embedded["usage"]["prompt_tokens"].as_f64().unwrap_or(0.0);
    assert!(embed_tokens > 0.0);
    assert_eq!(after.model("vllm:prompt_tokens_total", EMBED), embed_tokens);
    assert_eq!(after.get("vllm:request_success_total", &format!("model_name=\"{EMBED}\",provider=\"local\",finished_reason=\"stop\"")), 1.0);
    assert_eq!(after.model("vllm:generation_tokens_total", EMBED), 0.0);
    // The engine publishes its gauges once per step: wait for the step after the last finish.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let running = scrape(&server).await.model("vllm:num_requests_running", CHAT);
        if running == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "vllm:num_requests_running stays at {running} after every request finished");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn http_requests_are_counted_by_route_and_status() {
    let server = Server::start();
    let client = reqwest::Client::new();
    for path in ["/v1/models", "/v1/models", "/v1/models/nope", "/no/such/path"] {
        client.get(server.url(path)).send().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let s = scrape(&server).await;
    assert_eq!(s.get("hearth_http_requests_total", "route=\"/v1/models\",status=\"200\""), 2.0);
    assert_eq!(s.get("hearth_http_requests_total", "route=\"/v1/models/{id}\",status=\"404\""), 1.0);
    assert_eq!(s.get("hearth_http_requests_total", "route=\"unmatched\",status=\"404\""), 1.0);
    assert!(!s.text.contains("/no/such/path"), "raw paths never become labels");
    // The scrapes themselves count, readiness polling too.
    assert!(s.get("hearth_http_requests_total", "route=\"/ready\",status=\"200\"") >= 1.0);
    // No GPU here: the GPU series are absent, not zero.
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        assert!(!s.text.contains("hearth_gpu_"), "GPU series without a GPU");
    }
}

#[tokio::test]
async fn prometheus_gets_openmetrics() {
    let server = Server::start();
    let r = reqwest::Client::new()
        .get(server.url("/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text().await.unwrap_or_default();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE vllm:prompt_tokens counter\n"), "{text}");
    assert!(text.contains(&format!("vllm:prompt_tokens_total{{model_name=\"{CHAT}\",provider=\"local\"}} 0")), "{text}");
}

/// promtool's linter flags every `:` in a metric name (it reserves colons for recording rules),
/// so vLLM's own `/metrics` fails it the same way. Those findings, on `vllm:` names only, are
/// the only ones allowed; any other finding or a parse error fails the test.
#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let server = Server::start();
    post(&server, "/v1/embeddings", &json!({"model": EMBED, "input": "warm the histograms"})).await;
    let s = scrape(&server).await;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool (Debian package `prometheus`, installed by `make deps`): {e}"));
    child.stdin.take().map(|mut stdin| stdin.write_all(s.text.as_bytes())).transpose().unwrap_or_else(|e| panic!("{e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let unexpected: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.starts_with("vllm:") && l.ends_with("metric names should not contain ':'")))
        .collect();
    assert!(unexpected.is_empty(), "promtool found problems:\n{}\n--- exposition:\n{}", unexpected.join("\n"), s.text);
    assert!(matches!(out.status.code(), Some(0) | Some(3)), "promtool exit {:?}: {report}", out.status);
    assert!(report.contains("vllm:prompt_tokens_total"), "promtool saw the vllm series: {report}");
}

/// vLLM's bucket boundaries (`vllm/v1/metrics/loggers.py`), written out here rather than taken
/// from hearth, so a drift on either side fails.
const VLLM_TTFT: [f64; 22] =
    [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
const VLLM_ITL: [f64; 19] = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const VLLM_REQUEST_LATENCY: [f64; 21] =
    [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];

/// vLLM's `build_1_2_5_buckets(max_model_len)`.
fn vllm_1_2_5(max: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut scale = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * scale > max {
                return out;
            }
            out.push(m * scale);
        }
        scale *= 10.0;
    }
}

/// The finite `le` boundaries of `name` for `model`, sorted.
fn buckets_of(s: &Scrape, name: &str, model: &str) -> Vec<f64> {
    let prefix = format!("{name}_bucket{{");
    let mut les: Vec<f64> = s
        .samples
        .keys()
        .filter(|k| k.starts_with(&prefix) && k.contains(&format!("model_name=\"{model}\"")))
        .filter_map(|k| k.split("le=\"").nth(1)?.split('"').next()?.parse().ok())
        .filter(|le: &f64| le.is_finite())
        .collect();
    les.sort_by(f64::total_cmp);
    les
}

/// Every vLLM series that issue #7 lists, for every served model, labelled `model_name`, with
/// vLLM's bucket boundaries; the engine-side series for the local models.
#[tokio::test]
async fn every_vllm_series_is_there_with_vllms_buckets_for_each_model() {
    let server = Server::start();
    let models: Value = reqwest::get(server.url("/v1/models")).await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
    let s = scrape(&server).await;
    for model in [CHAT, EMBED] {
        for name in [
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:kv_cache_usage_perc",
            "vllm:prefix_cache_queries_total",
            "vllm:prefix_cache_hits_total",
            "vllm:num_preemptions_total",
            "vllm:prompt_tokens_total",
            "vllm:generation_tokens_total",
        ] {
            s.model(name, model);
        }
        for reason in ["stop", "length", "abort"] {
            s.get("vllm:request_success_total", &format!("model_name=\"{model}\",provider=\"local\",finished_reason=\"{reason}\""));
        }
        let max_len = models["data"]
            .as_array()
            .and_then(|d| d.iter().find(|m| m["id"] == model))
            .and_then(|m| m["max_model_len"].as_f64())
            .unwrap_or_else(|| panic!("no max_model_len for {model}: {models}"));
        let tokens = vllm_1_2_5(max_len);
        for (name, expected) in [
            ("vllm:time_to_first_token_seconds", &VLLM_TTFT[..]),
            ("vllm:inter_token_latency_seconds", &VLLM_ITL[..]),
            ("vllm:e2e_request_latency_seconds", &VLLM_REQUEST_LATENCY[..]),
            ("vllm:request_queue_time_seconds", &VLLM_REQUEST_LATENCY[..]),
            ("vllm:request_prompt_tokens", &tokens[..]),
            ("vllm:request_generation_tokens", &tokens[..]),
        ] {
            assert_eq!(buckets_of(&s, name, model), expected, "{name} buckets for {model}");
            s.model(&format!("{name}_count"), model);
            s.model(&format!("{name}_sum"), model);
            s.get(&format!("{name}_bucket"), &format!("le=\"+Inf\",model_name=\"{model}\",provider=\"local\""));
        }
    }
    // No vllm: sample without its model's label.
    let unlabelled: Vec<&String> = s.samples.keys().filter(|k| k.starts_with("vllm:") && !k.contains("model_name=\"")).collect();
    assert!(unlabelled.is_empty(), "vllm series without model_name: {unlabelled:?}");
}

/// Wait until `ready` holds for a scrape, or panic with the last one.
async fn scrape_until(server: &Server, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = scrape(server).await;
        if ready(&s) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "no {what} within 60 s:\n{}\n--- log:\n{}", s.text, server.log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Files dropped into the watched folder move the ingestion series (files by outcome, chunks,
/// parse failures by reason) and the store's (documents by status, chunks, vector stores).
#[tokio::test]
async fn ingestion_and_store_series_follow_the_watched_folder() {
    let server = Server::start();
    let before = scrape_until(&server, "the inbox vector store", |s| s.samples.get("hearth_store_vector_stores{state=\"ready\"}") == Some(&1.0)).await;
    assert_eq!(before.get("hearth_store_documents", "status=\"completed\""), 0.0);
    assert_eq!(before.get("hearth_store_chunks", ""), 0.0);
    assert_eq!(before.get("hearth_ingest_parse_failures_total", "reason=\"unknown_format\""), 0.0);
    assert_eq!(before.get("hearth_store_rebuilt_vector_stores", ""), 0.0);

    let text: String = (0..40).map(|i| format!("Paragraph {i}: the hearth keeps the fire of the house burning through the winter.\n\n")).collect();
    std::fs::write(server.inbox().join("notes.txt"), text).unwrap_or_else(|e| panic!("{e}"));
    // Not PDF, Markdown, HTML or text (an ELF header: NUL bytes): refused before parsing.
    std::fs::write(server.inbox().join("blob.bin"), b"\x7fELF\x02\x01\x01\x00\x00\x00".repeat(64)).unwrap_or_else(|e| panic!("{e}"));
    // A PDF by its header, but nothing after it: the sandboxed parser rejects it.
    std::fs::write(server.inbox().join("broken.pdf"), b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog").unwrap_or_else(|e| panic!("{e}"));

    let after = scrape_until(&server, "all three files finished", |s| {
        s.samples.get("hearth_ingest_files_total{status=\"completed\"}") == Some(&1.0)
            && s.samples.get("hearth_ingest_files_total{status=\"failed\"}") == Some(&2.0)
    })
    .await;
    assert_eq!(after.get("hearth_ingest_parse_failures_total", "reason=\"unknown_format\""), 1.0, "{}", after.text);
    assert_eq!(after.get("hearth_ingest_parse_failures_total", "reason=\"malformed\""), 1.0, "{}", after.text);
    let failures: f64 = after.samples.iter().filter(|(k, _)| k.starts_with("hearth_ingest_parse_failures_total{")).map(|(_, v)| v).sum();
    assert_eq!(failures, 2.0, "the blob and the broken PDF, each once");
    let chunks = after.get("hearth_ingest_chunks_total", "");
    assert!(chunks >= 1.0);
    assert_eq!(after.get("hearth_store_documents", "status=\"completed\""), 1.0);
    assert_eq!(after.get("hearth_store_documents", "status=\"failed\""), 2.0);
    assert_eq!(after.get("hearth_store_documents", "status=\"in_progress\""), 0.0);
    assert_eq!(after.get("hearth_store_chunks", ""), chunks, "the store holds what ingestion stored");
    assert_eq!(after.get("hearth_store_indexed_chunks", ""), chunks);
    assert_eq!(after.get("hearth_ingest_queue_files", ""), 0.0);
    assert!(after.get("hearth_store_disk_bytes", "") > 0.0);
}
