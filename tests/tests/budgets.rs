//! Budgets on what a client controls, against the real binary: hostile `response_format` schemas
//! cannot stall the HTTP workers (`/health` keeps answering) and are refused by a budget they
//! name; stored responses stay within their quota, oldest evicted first; a chain of follow-ups
//! stores one turn per record, so records do not grow with the conversation.

use std::time::{Duration, Instant};

use hearth_tests::{post_json as post, Options, Server};
use serde_json::{json, Value};

const CHAT: &str = "smollm2-135m-instruct";

fn chat_with_schema(schema: Value) -> Value {
    json!({"model": CHAT, "messages": [{"role": "user", "content": "Reply in JSON."}], "max_tokens": 1, "temperature": 0,
           "response_format": {"type": "json_schema", "json_schema": {"name": "hostile", "schema": schema}}})
}

/// `{"type": ["object", "object"], "properties": {"a": <the next level>}}`, `levels` deep: 2^levels
/// conversions for a converter that expands each type of the list separately.
fn nested_type_lists(levels: usize) -> Value {
    let mut schema = json!({"type": "string"});
    for _ in 0..levels {
        schema = json!({"type": ["object", "object"], "properties": {"a": schema}});
    }
    schema
}

#[tokio::test]
async fn hostile_schemas_in_flight_leave_health_answering_and_name_the_budget() {
    // Two HTTP workers, as on a two-core machine: two requests that held one each would stop it.
    let server = Server::start_with(Options { config: Some("[server]\nhttp_workers = 2\n"), ..Options::default() });
    let nested_request = || {
        let body = chat_with_schema(nested_type_lists(30));
        let url = server.url("/v1/chat/completions");
        tokio::spawn(async move { reqwest::Client::new().post(url).json(&body).send().await.map(|r| r.status().as_u16()) })
    };
    let (nested, nested_too) = (nested_request(), nested_request());
    let members: Vec<String> = (0..100_000).map(|i| format!("member-{i}")).collect();
    let enormous = tokio::spawn({
        let body = chat_with_schema(json!({"type": "object", "properties": {"pick": {"enum": members}}}));
        let url = server.url("/v1/chat/completions");
        async move {
            let r = reqwest::Client::new().post(url).json(&body).send().await?;
            Ok::<_, reqwest::Error>((r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null)))
        }
    });
    // /health while both are in flight (and for a second at least).
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while started.elapsed() < Duration::from_secs(1) || !(nested.is_finished() && nested_too.is_finished() && enormous.is_finished()) {
        assert!(started.elapsed() < Duration::from_secs(60), "the hostile requests did not finish in 60 s\n{}", server.log());
        let t = Instant::now();
        let r = reqwest::Client::new().get(server.url("/health")).timeout(Duration::from_secs(5)).send().await;
        let took = t.elapsed();
        assert!(r.is_ok_and(|r| r.status().is_success()), "/health failed after {took:?}\n{}", server.log());
        slowest = slowest.max(took);
        probes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(slowest < Duration::from_secs(1), "/health took {slowest:?} while hostile schemas were converted");
    eprintln!("/health: {probes} probes, slowest {slowest:?}; the three hostile requests answered after {:?}", started.elapsed());
    for request in [nested, nested_too] {
        let status = request.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
        // llama.cpp's converter visits a schema once per listed type: 2^30 visits, refused before it runs.
        assert_eq!(status, 400, "30 nested type lists must be refused by max_schema_nodes\n{}", server.log());
    }
    let (status, body) = enormous.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("limits.max_schema_nodes = 5000"), "{body}");
    assert_eq!(body["error"]["param"], "response_format", "{body}");
}

/// Median wall time of `n` runs of a one-token chat request.
async fn one_token_latency(server: &Server, body: &Value, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let (status, reply) = post(server, "/v1/chat/completions", body).await;
        assert_eq!(status, 200, "{reply}\n{}", server.log());
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2]
}

/// The largest grammars the default budgets let through still become a sampler quickly on the
/// engine thread: a one-token request with them against one without (printed for the record).
#[tokio::test]
async fn the_largest_grammars_allowed_cost_little_on_the_engine_thread() {
    let server = Server::start();
    let plain = json!({"model": CHAT, "messages": [{"role": "user", "content": "Reply in JSON."}], "max_tokens": 1, "temperature": 0});
    // Warm up first: the prompt is then a prefix-cache hit for every request timed below, so what
    // differs between them is the grammar sampler.
    one_token_latency(&server, &plain, 1).await;
    let base = one_token_latency(&server, &plain, 5).await;
    // 650 members of 28 characters: about 61 KB of GBNF from llama.cpp's converter (1,700 gave
    // 160,645 bytes), just under max_grammar_bytes (65,536) and well under max_schema_nodes (5,000).
    let members: Vec<String> = (0..650).map(|i| format!("{i:0>6}-abcdefghijklmnopqrstu")).collect();
    let wide_enum = chat_with_schema(json!({"type": "object", "properties": {"pick": {"enum": members}}}));
    let enum_time = one_token_latency(&server, &wide_enum, 3).await;
    // A string of up to 3,500 characters: llama.cpp's converter writes `char{0,3500}`, which its
    // grammar parser expands (counted as 16 bytes a repeat: 56,000 of the 65,536 allowed).
    let long_string = chat_with_schema(json!({"type": "object", "properties": {"text": {"type": "string", "maxLength": 3_500}}}));
    let string_time = one_token_latency(&server, &long_string, 3).await;
    // 4,900 longer members (about 250 KB) are over the byte budget: refused, by name.
    let members: Vec<String> = (0..4_900).map(|i| format!("{i:0>6}-abcdefghijklmnopqrstuvwxyz0123456789")).collect();
    let (status, body) = post(&server, "/v1/chat/completions", &chat_with_schema(json!({"enum": members}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("limits.max_grammar_bytes = 65536"), "{body}");
    eprintln!("one-token chat, medians of 5 (plain) and 3 (grammars): plain {base:?}; 650-member enum grammar {enum_time:?}; maxLength 3,500 string {string_time:?}");
    for (what, t) in [("enum", enum_time), ("string", string_time)] {
        assert!(t < base + Duration::from_secs(20), "{what}: {t:?} against {base:?}");
    }
}

async fn respond(server: &Server, input: &str, previous: Option<&str>) -> Value {
    let mut body = json!({"model": CHAT, "input": input, "max_output_tokens": 16, "temperature": 0});
    if let Some(p) = previous {
        body["previous_response_id"] = json!(p);
    }
    let (status, reply) = post(server, "/v1/responses", &body).await;
    assert_eq!(status, 200, "{reply}\n{}", server.log());
    reply
}

async fn get_status(server: &Server, path: &str) -> u16 {
    reqwest::get(server.url(path)).await.map(|r| r.status().as_u16()).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[tokio::test]
async fn stored_responses_beyond_the_quota_are_evicted_oldest_first() {
    let server = Server::start_with(Options { config: Some("[limits]\nmax_stored_responses = 3\n"), ..Options::default() });
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = respond(&server, &format!("Say the number {i}."), None).await;
        ids.push(r["id"].as_str().unwrap_or_default().to_owned());
    }
    let mut kept = Vec::new();
    for id in &ids {
        kept.push(get_status(&server, &format!("/v1/responses/{id}")).await);
    }
    assert_eq!(kept, [404, 404, 200, 200, 200], "{ids:?}");
    let on_disk = std::fs::read_dir(server.dir.path().join("state/responses")).map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("resp_")).count());
    assert_eq!(on_disk.ok(), Some(3));
    // A follow-up to an evicted response is the client's 400, naming the id.
    let (status, body) = post(&server, "/v1/responses", &json!({"model": CHAT, "input": "And then?", "previous_response_id": ids[0]})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains(&ids[0]), "{body}");
    assert_eq!(body["error"]["param"], "previous_response_id");
}

#[tokio::test]
async fn a_chain_of_follow_ups_works_and_its_records_do_not_grow() {
    // Enough turns to see the prompt grow while each record stays one turn, few enough for CI's 2 cores.
    const TURNS: usize = 24;
    let server = Server::start();
    let record_size = |id: &str| std::fs::metadata(server.dir.path().join(format!("state/responses/{id}.json"))).map(|m| m.len()).unwrap_or(0);
    let mut previous: Option<String> = None;
    let mut sizes = Vec::new();
    let mut input_tokens = Vec::new();
    for i in 0..TURNS {
        let r = respond(&server, &format!("Turn {i}: say ok."), previous.as_deref()).await;
        let id = r["id"].as_str().unwrap_or_default().to_owned();
        assert_eq!(r["previous_response_id"].as_str(), previous.as_deref());
        sizes.push(record_size(&id));
        input_tokens.push(r["usage"]["input_tokens"].as_u64().unwrap_or(0));
        previous = Some(id);
    }
    // The history is rebuilt from the chain: the prompt grows with every turn...
    assert!(input_tokens[TURNS - 1] > input_tokens[1] + (TURNS as u64 - 2) * 5, "input tokens {input_tokens:?}");
    // ...while each record holds one turn (the answer varies a little in length).
    let (first, last, largest) = (sizes[1], sizes[TURNS - 1], sizes.iter().copied().max().unwrap_or(0));
    assert!(first > 0 && largest < first * 2, "record sizes {sizes:?}");
    eprintln!("record bytes: turn 2 {first}, turn {TURNS} {last}, largest {largest}; input tokens turn 2 {}, turn {TURNS} {}", input_tokens[1], input_tokens[TURNS - 1]);
}

#[tokio::test]
async fn embedding_tokens_stop_strings_and_search_filters_are_refused_by_name() {
    let server = Server::start_with(Options { config: Some("[limits]\nmax_embedding_tokens_per_request = 1000\n"), ..Options::default() });
    let embed = |input: Value| json!({"model": "all-minilm-l6-v2", "input": input});
    let long = "word ".repeat(400);
    let (status, body) = post(&server, "/v1/embeddings", &embed(json!([long, long, long]))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("limits.max_embedding_tokens_per_request = 1000"), "{body}");
    // Within the budget: tokenized once (off the workers) and counted exactly, [CLS] and [SEP] included.
    let (status, body) = post(&server, "/v1/embeddings", &embed(json!(["hello world", long]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 4 + 402, "{body}");
    let stops: Vec<String> = (0..17).map(|i| format!("stop{i}")).collect();
    let (status, body) = post(&server, "/v1/chat/completions", &json!({"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "stop": stops})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("limits.max_stop_strings"), "{body}");
    let stores: Value = reqwest::get(server.url("/v1/vector_stores")).await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or(Value::Null);
    let inbox = stores["data"][0]["id"].as_str().unwrap_or_default().to_owned();
    let values: Vec<u32> = (0..2_000).collect();
    let search = format!("/v1/vector_stores/{inbox}/search");
    let (status, body) = post(&server, &search, &json!({"query": "soil", "filters": {"type": "in", "key": "page", "value": values}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("limits.max_filter_values = 1024"), "{body}");
    let (status, body) = post(&server, &search, &json!({"query": "soil", "max_num_results": 51})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("limits.max_num_results"), "{body}");
    let (status, body) = post(&server, &search, &json!({"query": "soil", "filters": {"type": "in", "key": "page", "value": [1, 2]}})).await;
    assert_eq!(status, 200, "{body}");
}
