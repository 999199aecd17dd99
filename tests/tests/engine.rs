//! The scheduler seen from outside, with the real model: batching does not change greedy output,
//! the prefix cache does not change it either, a burst of requests with one new prefix computes it
//! once, clients that go away give their KV back, KV pressure preempts and recomputes without
//! losing a request, and an overloaded server answers every request with 200 or 429.
//!
//! A note on batch invariance: llama.cpp's CPU kernels reduce in a different order when more KV
//! cells and rows are in a batch, so near-tied logits can flip a greedy choice after many tokens
//! (seen after ~10 tokens for one prompt at 8-way batching). The equivalence test uses a prompt and
//! length where that does not happen; it still fails on any real scheduling bug (wrong positions,
//! wrong sequence ids, leaked cells), which derail the text within a token or two.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hearth_tests::{Options, Server};
use serde_json::{json, Value};

const CHAT: &str = "smollm2-135m-instruct";

async fn complete(server: &Server, prompt: &str, max_tokens: u32) -> Value {
    let body = json!({"model": CHAT, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": true});
    let r = reqwest::Client::new().post(server.url("/v1/completions")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap_or(Value::Null)
}

fn text(v: &Value) -> String {
    v["choices"][0]["text"].as_str().unwrap_or_default().to_owned()
}

/// A metric's value for the chat model from `/metrics`.
async fn metric(server: &Server, name: &str) -> f64 {
    hearth_tests::model_metric(server, name, CHAT).await
}

#[tokio::test]
async fn greedy_output_is_the_same_alone_and_inside_a_busy_batch() {
    let server = Server::start();
    let probe = "The three primary colors are";
    let alone = text(&complete(&server, probe, 24).await);
    let others = ["Once upon a time, in a small village,", "def fibonacci(n):", "The history of Rome begins", "Water boils at", "My favourite recipe is", "In 1969, astronauts"];
    let busy = others.iter().map(|p| complete(&server, p, 32));
    let (probe_in_batch, _) = tokio::join!(complete(&server, probe, 24), futures_util::future::join_all(busy));
    assert_eq!(text(&probe_in_batch), alone);
}

#[tokio::test]
async fn prefix_cache_hits_give_the_same_output() {
    let server = Server::start();
    let system = "You are a careful assistant that answers from the provided documents only. ".repeat(12);
    let prompt = format!("{system}\nQuestion: what is the boiling point of water?\nAnswer:");
    let cold = complete(&server, &prompt, 16).await;
    let warm = complete(&server, &prompt, 16).await;
    assert_eq!(cold["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let cached = warm["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
    let prompt_tokens = warm["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    assert!(cached >= prompt_tokens - 16 && cached < prompt_tokens, "cached {cached} of {prompt_tokens}");
    assert_eq!(text(&warm), text(&cold));
    // A different question after the same system prompt reuses the shared part only.
    let other = complete(&server, &format!("{system}\nQuestion: who wrote Hamlet?\nAnswer:"), 4).await;
    let cached = other["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
    assert!(cached > 100 && cached < prompt_tokens - 5, "shared prefix {cached}");
}

#[tokio::test]
async fn a_burst_with_one_new_prefix_computes_it_once() {
    let server = Server::start();
    // Four users ask about the same new document at once: a ~1,000-token prefix no cache holds yet.
    let document = "The reactor's secondary loop is drained before the annual inspection of its valves. ".repeat(70);
    let questions = ["When is the loop drained?", "What is inspected?", "How often is it inspected?", "Which loop is drained?"];
    let prompts: Vec<String> = questions.iter().map(|q| format!("{document}\nQuestion: {q}\nAnswer:")).collect();
    let burst = prompts.iter().map(|p| complete(&server, p, 4));
    let answers = futures_util::future::join_all(burst).await;
    let prefix_tokens = answers[0]["usage"]["prompt_tokens"].as_u64().unwrap_or(0).saturating_sub(16);
    let mut cached: Vec<u64> = answers.iter().map(|a| a["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0)).collect();
    cached.sort_unstable();
    assert!(prefix_tokens > 900, "the shared prefix is {prefix_tokens} tokens");
    // One request computes the prefix; the three that arrived with it wait for it and share it.
    assert_eq!(cached[0], 0, "cached tokens of the four requests: {cached:?}");
    for &c in &cached[1..] {
        assert!(c + 32 >= prefix_tokens, "a request recomputed the prefix: cached tokens {cached:?} of a ~{prefix_tokens}-token prefix");
    }
}

#[tokio::test]
async fn fifty_disconnected_streams_give_their_kv_back() {
    let server = Server::start_with(Options { env: vec![("HEARTH__SERVER__HTTP_WORKERS", "2")], ..Options::default() });
    let baseline = metric(&server, "vllm:kv_cache_usage_perc").await;
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for i in 0..50 {
        let body = json!({"model": CHAT, "prompt": format!("Story number {i}:"), "max_tokens": 2000, "stream": true, "ignore_eos": true});
        let r = client.post(server.url("/v1/completions")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status().as_u16(), 200);
        streams.push(r.bytes_stream());
    }
    // Read a first chunk from a few so generation is under way, then hang up on all of them.
    for s in streams.iter_mut().take(5) {
        let _ = s.next().await;
    }
    assert!(metric(&server, "vllm:kv_cache_usage_perc").await > baseline);
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = metric(&server, "vllm:num_requests_running").await + metric(&server, "vllm:num_requests_waiting").await;
        let usage = metric(&server, "vllm:kv_cache_usage_perc").await;
        if running == 0.0 && usage <= baseline {
            break;
        }
        assert!(Instant::now() < deadline, "KV not returned: running+waiting {running}, usage {usage} vs {baseline}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_non_streamed_client_that_hangs_up_frees_its_sequence() {
    let server = Server::start();
    let body = json!({"model": CHAT, "prompt": "Tell me a very long story.", "max_tokens": 4000, "ignore_eos": true});
    let client = reqwest::Client::builder().timeout(Duration::from_millis(2500)).build().unwrap_or_else(|e| panic!("{e}"));
    let gave_up = client.post(server.url("/v1/completions")).json(&body).send().await;
    let gave_up = match gave_up {
        Ok(r) => r.text().await.is_err(), // headers came early (held response); the body timed out
        Err(e) => e.is_timeout(),
    };
    assert!(gave_up, "the client should have timed out first");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "vllm:num_requests_running").await > 0.0 {
        assert!(Instant::now() < deadline, "the abandoned request is still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn overload_is_answered_with_200_or_429() {
    let server = Server::start_with(Options {
        config: Some("[[models]]\nname = \"smollm2-135m-instruct\"\nkind = \"chat\"\npath = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"\nmax_num_seqs = 2\nmax_queue = 2\nmax_model_len = 2048\nkv_cache_tokens = 4096\n"),
        ..Options::default()
    });
    let client = reqwest::Client::new();
    let requests = (0..16).map(|i| {
        let body = json!({"model": CHAT, "prompt": format!("Count to ten, take {i}:"), "max_tokens": 24, "ignore_eos": true});
        let c = client.clone();
        let url = server.url("/v1/completions");
        async move {
            let r = c.post(url).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
            (r.status().as_u16(), r.headers().get("retry-after").is_some())
        }
    });
    let results = futures_util::future::join_all(requests).await;
    assert!(results.iter().all(|&(s, retry)| s == 200 || (s == 429 && retry)), "{results:?}");
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert!((4..16).contains(&ok), "4x overload should both serve and refuse: {results:?}");
}

#[tokio::test]
async fn kv_pressure_preempts_and_still_completes_everything() {
    // 8 sequences that each need ~200 tokens in a 768-token cache: some must be preempted and recomputed.
    let server = Server::start_with(Options {
        config: Some("[[models]]\nname = \"smollm2-135m-instruct\"\nkind = \"chat\"\npath = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"\nmax_num_seqs = 8\nmax_model_len = 512\nkv_cache_tokens = 768\nenable_prefix_caching = false\n"),
        ..Options::default()
    });
    let prompts: Vec<String> = (0..8).map(|i| format!("Write a long story about the number {i}.")).collect();
    let all = futures_util::future::join_all(prompts.iter().map(|p| complete(&server, p, 180))).await;
    assert!(all.iter().all(|v| v["usage"]["completion_tokens"] == 180 && !text(v).trim().is_empty()), "{all:?}");
    assert!(metric(&server, "vllm:num_preemptions_total").await >= 1.0, "no preemption happened");
    // Every block came back: nothing leaked through preemption and recompute.
    assert_eq!(metric(&server, "vllm:kv_cache_usage_perc").await, 0.0);
}

/// How many events a decoding stream receives while a ~1,000-token prompt is read (from sending
/// it until its answer arrives), that answer, and whether a short prompt sent while the long one
/// is being read was answered in less than half the long one's time.
async fn stream_events_during_a_long_prompt(server: &Server) -> (usize, String, bool) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let client = reqwest::Client::new();
    let body = json!({"model": CHAT, "prompt": "Count slowly from one:", "max_tokens": 4000, "stream": true, "ignore_eos": true});
    let r = client.post(server.url("/v1/completions")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 200);
    let mut stream = r.bytes_stream();
    let _ = stream.next().await; // decoding now
    let events = Arc::new(AtomicUsize::new(0));
    let reader = tokio::spawn({
        let events = Arc::clone(&events);
        async move {
            while let Some(Ok(chunk)) = stream.next().await {
                events.fetch_add(chunk.windows(6).filter(|w| w == b"data: ").count(), Ordering::Relaxed);
            }
        }
    });
    let long = "The river carried the boats down to the sea, past mills and orchards. ".repeat(70);
    let before = events.load(Ordering::Relaxed);
    let started = Instant::now();
    let long_request = complete(server, &long, 4);
    let short_request = async {
        tokio::time::sleep(Duration::from_millis(300)).await; // the long prompt is being read by now
        complete(server, "Say hi.", 4).await;
        Instant::now()
    };
    let ((answer, long_done), short_done) = tokio::join!(async { (long_request.await, Instant::now()) }, short_request);
    let during = events.load(Ordering::Relaxed) - before;
    reader.abort();
    assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 900, "{answer}");
    let (short_took, long_took) = (short_done - started, long_done - started);
    eprintln!("answered after: short prompt {short_took:?}, long prompt {long_took:?}");
    (during, text(&answer), short_took < long_took / 2)
}

#[tokio::test]
async fn paced_prefill_keeps_streams_decoding_while_a_long_prompt_is_read() {
    let unpaced = stream_events_during_a_long_prompt(&Server::start()).await;
    let paced_server = Server::start_with(Options { config: Some("[engine]\nmax_decode_slowdown = 2.0\n"), ..Options::default() });
    let paced = stream_events_during_a_long_prompt(&paced_server).await;
    eprintln!("stream events during the long prompt: paced {}, unpaced {}", paced.0, unpaced.0);
    // Unpaced, the prompt is two 512-token steps; paced, it is read a few tokens a step alongside the stream.
    assert!(paced.0 >= 20 && paced.0 >= 4 * unpaced.0.max(1), "stream events during the prompt: paced {}, unpaced {}", paced.0, unpaced.0);
    // Reading it a few tokens at a time computes the same thing.
    assert_eq!(paced.1, unpaced.1);
    // A short prompt that arrives meanwhile is not stuck behind the long one's slow reading.
    assert!(paced.2, "a short prompt sent while the long one was read was answered after it");
}
