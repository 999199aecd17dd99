//! Connection limits against the real binary (issue #19 item 3): streaming clients that stop
//! reading are cancelled after `[server] stall_timeout_seconds` and give their running slot back,
//! a body that stops arriving gets 408 after `body_read_timeout_seconds` while the server keeps
//! answering, and `max_connections` holds further connections back until open ones close.

use std::time::{Duration, Instant};

use hearth_tests::{Options, Server};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const CHAT: &str = "smollm2-135m-instruct";
const STALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Readers that stop reading, as many as the engine runs at once (`max_num_seqs`). Each must fill
/// its event channel (256 events) and the connection's buffers (a 4 KiB `send_buffer_bytes`, and
/// actix's own) before it stalls: a few hundred tokens, so a small number keeps the test quick on
/// a busy two-core machine.
const STALLED_READERS: usize = 2;

/// A metric's value for the chat model from `/metrics`.
async fn metric(server: &Server, name: &str) -> f64 {
    hearth_tests::model_metric(server, name, CHAT).await
}

fn addr(server: &Server) -> std::net::SocketAddr {
    let hostport = server.base.strip_prefix("http://").unwrap_or_else(|| panic!("{}", server.base));
    hostport.parse().unwrap_or_else(|e| panic!("{hostport}: {e}"))
}

/// A streamed chat request from a client with a tiny receive buffer that never reads a byte.
async fn stalled_reader(server: &Server, i: usize) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap_or_else(|e| panic!("{e}"));
    socket.set_recv_buffer_size(1024).unwrap_or_else(|e| panic!("{e}"));
    let mut stream = socket.connect(addr(server)).await.unwrap_or_else(|e| panic!("{e}"));
    let body = json!({
        "model": CHAT, "stream": true, "max_tokens": 4000, "ignore_eos": true,
        "stream_options": {"include_usage": true, "continuous_usage_stats": true},
        "messages": [{"role": "user", "content": format!("Tell story number {i}, a very long one.")}],
    })
    .to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        addr(server),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    stream
}

#[tokio::test]
async fn streaming_readers_that_stop_reading_do_not_block_the_next_client() {
    let config = format!(
        "[server]\nstall_timeout_seconds = {}\nsend_buffer_bytes = 4096\n\n[[models]]\nname = \"{CHAT}\"\nkind = \"chat\"\npath = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"\nmax_num_seqs = {READERS}\nmax_queue = 4\nmax_model_len = 8192\nkv_cache_tokens = 32768\n",
        STALL_TIMEOUT.as_secs(),
        READERS = STALLED_READERS
    );
    // One engine thread: on a busy two-core machine two spin-waiting threads crawl.
    let server = Server::start_with(Options { config: Some(&config), env: vec![("HEARTH__ENGINE__THREADS", "1")] });
    let started = Instant::now();
    let mut stalled = Vec::new();
    for i in 0..STALLED_READERS {
        stalled.push(stalled_reader(&server, i).await);
    }
    // Wait until the readers run and the engine has stopped computing (no step for 1.5 s): every one
    // of them waits on a client whose buffers are full (or the first is already cancelled).
    let mut last = (-1.0, Instant::now());
    loop {
        let running = metric(&server, "vllm:num_requests_running").await;
        let steps = metric(&server, "hearth_engine_steps_total").await;
        let frozen = running == STALLED_READERS as f64 && steps >= 10.0 && steps == last.0 && last.1.elapsed() >= Duration::from_millis(1500);
        if frozen || metric(&server, "hearth_engine_stalled_requests_total").await > 0.0 {
            break;
        }
        if steps != last.0 {
            last = (steps, Instant::now());
        }
        assert!(started.elapsed() < Duration::from_secs(240), "the readers never stalled: running {running}, steps {steps}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let filled = started.elapsed();
    // One more client, with every running slot held by a reader that does not read.
    let asked = Instant::now();
    let body = json!({"model": CHAT, "max_tokens": 8, "messages": [{"role": "user", "content": "Say hi."}]});
    let client = reqwest::Client::builder().timeout(STALL_TIMEOUT + Duration::from_secs(20)).build().unwrap_or_else(|e| panic!("{e}"));
    // The status comes early (a held response keeps the connection alive); the answer is the body.
    let answer = match client.post(server.url("/v1/chat/completions")).json(&body).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await),
        Err(e) => (0, Err(e)),
    };
    let waited = asked.elapsed();
    let text = answer.1.unwrap_or_else(|e| panic!("the next client got no answer in {waited:?} ({e}):\n{}", server.log()));
    assert_eq!(answer.0, 200, "{text}");
    assert!(text.contains("\"finish_reason\""), "{text}");
    eprintln!("buffers full after {filled:?} ({} engine steps); the next client answered in {waited:?}", last.0);
    let log = server.log();
    let cancelled = log.matches("generation cancelled").count();
    assert_eq!(cancelled, STALLED_READERS, "every stalled reader is cancelled once:\n{log}");
    assert!(log.contains("over [server] stall_timeout_seconds"), "{log}");
    assert_eq!(metric(&server, "hearth_engine_stalled_requests_total").await, STALLED_READERS as f64);
    // Their KV came back: nothing runs, the cache holds no active block.
    assert_eq!(metric(&server, "vllm:num_requests_running").await, 0.0);
    assert_eq!(metric(&server, "vllm:kv_cache_usage_perc").await, 0.0);
    drop(stalled);
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_and_the_server_keeps_answering() {
    let server = Server::start_with(Options { config: Some("[server]\nbody_read_timeout_seconds = 2\n"), ..Options::default() });
    let mut slow = TcpStream::connect(addr(&server)).await.unwrap_or_else(|e| panic!("{e}"));
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\":",
        addr(&server)
    );
    let sent = Instant::now();
    slow.write_all(head.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    // Meanwhile the server answers others.
    let health = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap_or_else(|e| panic!("{e}"));
    let status = health.get(server.url("/health")).send().await.map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(200)), "/health while a body dribbles: {status:?}");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    let waited = sent.elapsed();
    assert!(read.is_ok(), "the connection was not closed within 10 s; got so far: {}", String::from_utf8_lossy(&answer));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\"") && answer.contains("body_read_timeout_seconds"), "{answer}");
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(7), "408 after {waited:?}");
    // A complete request on a fresh connection is unaffected.
    let body = json!({"model": CHAT, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]});
    let ok = reqwest::Client::new().post(server.url("/v1/chat/completions")).json(&body).send().await.map(|r| r.status().as_u16());
    assert!(matches!(ok, Ok(200)), "{ok:?}");
}

#[tokio::test]
async fn connections_beyond_max_connections_wait_until_open_ones_close() {
    // Two workers with four connections each. Twelve idle connections fill the eight places; a
    // /health request waits behind them until actix closes the idle ones (no request headers
    // within 5 s), then is answered.
    let server = Server::start_with(Options { config: Some("[server]\nmax_connections = 8\nhttp_workers = 2\n"), ..Options::default() });
    let fast = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap_or_else(|e| panic!("{e}"));
    assert!(fast.get(server.url("/health")).send().await.is_ok_and(|r| r.status().as_u16() == 200));
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(TcpStream::connect(addr(&server)).await.unwrap_or_else(|e| panic!("{e}")));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let patient = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_else(|e| panic!("{e}"));
    let status = patient.get(server.url("/health")).send().await.map(|r| r.status().as_u16());
    let waited = asked.elapsed();
    assert!(matches!(status, Ok(200)), "{status:?} after {waited:?}");
    assert!(waited >= Duration::from_secs(3), "answered in {waited:?}: the cap of 8 connections did not hold the 13th back");
    drop(idle);
    let status = fast.get(server.url("/health")).send().await.map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(200)), "after the idle connections closed: {status:?}");
}
