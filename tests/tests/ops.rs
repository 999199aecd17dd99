//! hearth as systemd runs it: the notify protocol over a socket this test owns (`STATUS=` while
//! loading, `READY=1`, `WATCHDOG=1` pings, `STOPPING=1` and a clean drain on SIGTERM), a hung
//! engine thread stopping the pings and turning `/ready` 503, a 1,000-input embedding request
//! that keeps them coming (the heartbeat beats inside work) while a small request shares the
//! engine, an engine thread that panics ending the process non-zero under systemd and reported by
//! `/ready` and `/health` outside it, and the unit, sysusers file and RPM as an operator meets them.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hearth_tests::{hearth_bin, repo_root, Options, Server};

/// `WATCHDOG_USEC` given to hearth: it pings every half of it.
const WATCHDOG_USEC: &str = "2000000";

/// The service manager's end of `NOTIFY_SOCKET`.
struct Notifications {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
    /// Every message so far, in arrival order, with its arrival time.
    seen: Vec<(Instant, String)>,
}

impl Notifications {
    fn bind() -> Notifications {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap_or_else(|e| panic!("{e}"));
        Notifications { socket, path, _dir: dir, seen: Vec::new() }
    }

    /// Receive until `done` holds for the messages so far, or panic after `limit`.
    fn until(&mut self, limit: Duration, what: &str, done: impl Fn(&[(Instant, String)]) -> bool) {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while !done(&self.seen) {
            assert!(Instant::now() < deadline, "no {what} within {limit:?}; got {:?}", self.messages());
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
    }

    /// Everything received during `period` from now.
    fn collect_for(&mut self, period: Duration) -> Vec<String> {
        let start = self.seen.len();
        let end = Instant::now() + period;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
        self.seen[start..].iter().map(|(_, m)| m.clone()).collect()
    }

    fn messages(&self) -> Vec<&str> {
        self.seen.iter().map(|(_, m)| m.as_str()).collect()
    }
}

fn has(messages: &[(Instant, String)], line: &str) -> bool {
    messages.iter().any(|(_, m)| m.lines().any(|l| l == line))
}

fn count(messages: &[(Instant, String)], line: &str) -> usize {
    messages.iter().filter(|(_, m)| m.lines().any(|l| l == line)).count()
}

fn position(messages: &[&str], pred: impl Fn(&str) -> bool) -> Option<usize> {
    messages.iter().position(|m| pred(m))
}

fn start_under_systemd(notify: &Notifications, extra: &[(&'static str, &'static str)]) -> Server {
    start_with_watchdog(notify, WATCHDOG_USEC, extra)
}

fn start_with_watchdog(notify: &Notifications, watchdog_usec: &str, extra: &[(&'static str, &'static str)]) -> Server {
    let socket = notify.path.to_string_lossy().into_owned();
    let mut env: Vec<(&str, &str)> = vec![("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", watchdog_usec)];
    env.extend_from_slice(extra);
    Server::start_with(Options { env, ..Options::default() })
}

const EMBED: &str = "all-minilm-l6-v2";

/// GET `path`: status and JSON body.
async fn get_json(server: &Server, path: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(server.url(path)).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// POST `body` to `/v1/embeddings`: status and JSON body.
async fn embed(server: &Server, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(server.url("/v1/embeddings"))
        .json(&body)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The embedding model's `vllm:num_requests_running` from `/metrics`.
async fn embed_running(server: &Server) -> f64 {
    let text = reqwest::get(server.url("/metrics")).await.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("vllm:num_requests_running{") && l.contains(&format!("model_name=\"{EMBED}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no vllm:num_requests_running for {EMBED} in /metrics"))
}

/// `n` distinct sentences of about 30 tokens each: a batch of 32 is about 1,000 tokens, under a
/// second of MiniLM on two cores, so the test's short watchdog is not outlasted by one batch on a
/// busy machine, while 1,000 of them take several watchdog periods (15 s on the 2-core box).
fn passages(n: usize) -> Vec<String> {
    const WORDS: [&str; 12] = ["river", "ledger", "copper", "violin", "harvest", "glacier", "tariff", "orbit", "pepper", "cathedral", "falcon", "lantern"];
    (0..n)
        .map(|i| {
            let w = |k: usize| WORDS[(i / 12usize.pow(k as u32)) % WORDS.len()];
            format!(
                "Passage {i}: the {} was filed beside the {} and the {}, while the {} waited near the {} for the {}.",
                w(0), w(1), w(2), w(1), w(2), w(0)
            )
        })
        .collect()
}

#[test]
fn notify_protocol_status_ready_watchdog_stopping_in_order() {
    let mut notify = Notifications::bind();
    let server = start_under_systemd(&notify, &[]);
    notify.until(Duration::from_secs(30), "READY=1 and two watchdog pings", |m| has(m, "READY=1") && count(m, "WATCHDOG=1") >= 2);

    let messages = notify.messages();
    let loading = position(&messages, |m| m.starts_with("STATUS=Loading 2 model(s)")).unwrap_or_else(|| panic!("{messages:?}"));
    let ready = position(&messages, |m| m.lines().any(|l| l == "READY=1")).unwrap_or_else(|| panic!("{messages:?}"));
    let first_ping = position(&messages, |m| m == "WATCHDOG=1").unwrap_or_else(|| panic!("{messages:?}"));
    assert!(loading < ready && ready < first_ping, "order: STATUS {loading}, READY {ready}, WATCHDOG {first_ping}: {messages:?}");
    assert!(messages[ready].contains("STATUS=Serving 2 model(s)"), "{messages:?}");
    // Pings come about every half timeout (1 s), not in a burst.
    let pings: Vec<Instant> = notify.seen.iter().filter(|(_, m)| m == "WATCHDOG=1").map(|(t, _)| *t).collect();
    let gap = pings[1].duration_since(pings[0]);
    assert!(gap > Duration::from_millis(500) && gap < Duration::from_millis(1900), "ping gap {gap:?}");

    server.terminate();
    notify.until(Duration::from_secs(10), "STOPPING=1", |m| has(m, "STOPPING=1"));
    let (exit, log) = server.wait_exit();
    assert!(exit.success(), "hearth should exit 0 after a drain: {exit:?}\n{log}");
    assert!(log.contains("draining"), "{log}");
}

/// A streamed chat answer of `max_tokens` tokens (`ignore_eos`), its headers received.
async fn start_stream(server: &Server, max_tokens: u32) -> reqwest::Response {
    let body = serde_json::json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Count."}],
        "max_tokens": max_tokens, "ignore_eos": true, "stream": true});
    let response = reqwest::Client::new().post(server.url("/v1/chat/completions")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 200);
    response
}

#[tokio::test]
async fn sigterm_lets_a_stream_in_flight_finish() {
    let mut notify = Notifications::bind();
    // The drain is long here: on a 2-core box shared with the other servers of this file, ggml's
    // spinning threads can stretch 48 tokens from 0.6 s to over 30 s.
    let server = start_under_systemd(&notify, &[("HEARTH__SERVER__DRAIN_SECONDS", "300")]);
    notify.until(Duration::from_secs(30), "READY=1", |m| has(m, "READY=1"));
    let response = start_stream(&server, 48).await;
    // The stream has started; now ask hearth to stop.
    server.terminate();
    let text = response.text().await.unwrap_or_else(|e| panic!("stream cut by the drain: {e}\nserver log:\n{}", server.log()));
    assert!(text.ends_with("data: [DONE]\n\n"), "the stream in flight completes: {text}");
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    notify.until(Duration::from_secs(10), "STOPPING=1", |m| has(m, "STOPPING=1"));
    let (exit, log) = server.wait_exit();
    assert!(exit.success(), "{exit:?}\n{log}");
}

/// `drain_seconds` bounds the drain: a stream far longer than it is cut, and hearth still exits 0
/// soon after the stop instead of waiting for the generation.
#[tokio::test]
async fn a_stream_longer_than_the_drain_is_cut_and_hearth_exits() {
    let mut notify = Notifications::bind();
    let server = start_under_systemd(&notify, &[("HEARTH__SERVER__DRAIN_SECONDS", "1")]);
    notify.until(Duration::from_secs(30), "READY=1", |m| has(m, "READY=1"));
    let response = start_stream(&server, 4000).await;
    let stopped = Instant::now();
    server.terminate();
    let text = response.text().await;
    assert!(text.is_err() || !text.as_deref().unwrap_or_default().contains("[DONE]"), "4,000 tokens finished inside a 1 s drain: {text:?}");
    let (exit, log) = server.wait_exit();
    let took = stopped.elapsed();
    assert!(exit.success(), "{exit:?}\n{log}");
    assert!(took < Duration::from_secs(15), "hearth took {took:?} to stop with a 1 s drain\n{log}");
    assert!(log.contains("draining requests in flight"), "{log}");
}

/// `[engine] cpu_wait`: by default `serve` re-executes itself (same pid) with libgomp's spin count
/// at 3,000; `sleep` sets the passive wait policy instead, `spin` leaves the environment alone, and
/// a user's own variable wins.
#[test]
fn serve_runs_llama_cpp_threads_with_the_configured_wait_policy() {
    let var = |server: &Server, name: &str| {
        let environ = std::fs::read(format!("/proc/{}/environ", server.pid())).unwrap_or_else(|e| panic!("environ: {e}"));
        let prefix = format!("{name}=");
        environ.split(|&b| b == 0).find_map(|v| v.strip_prefix(prefix.as_bytes()).map(|p| String::from_utf8_lossy(p).into_owned()))
    };
    let start = |env: Vec<(&'static str, &'static str)>| Server::start_with(Options { env, ..Options::default() });
    let brief = start(vec![]);
    assert_eq!(var(&brief, "GOMP_SPINCOUNT").as_deref(), Some("3000"), "{}", brief.log());
    assert_eq!(var(&brief, "OMP_WAIT_POLICY"), None);
    drop(brief);
    let sleep = start(vec![("HEARTH__ENGINE__CPU_WAIT", "sleep")]);
    assert_eq!(var(&sleep, "OMP_WAIT_POLICY").as_deref(), Some("PASSIVE"));
    drop(sleep);
    let spin = start(vec![("HEARTH__ENGINE__CPU_WAIT", "spin")]);
    assert_eq!((var(&spin, "OMP_WAIT_POLICY"), var(&spin, "GOMP_SPINCOUNT")), (None, None));
    drop(spin);
    let user = start(vec![("OMP_WAIT_POLICY", "ACTIVE")]);
    assert_eq!(var(&user, "OMP_WAIT_POLICY").as_deref(), Some("ACTIVE"));
    assert_eq!(var(&user, "GOMP_SPINCOUNT"), None);
}

// Multi-threaded: the notify socket is read with blocking calls while a request runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_engine_thread_stops_the_watchdog_pings_and_turns_ready_503() {
    let mut notify = Notifications::bind();
    let server =
        start_under_systemd(&notify, &[("HEARTH_DEBUG_HANG_ENGINE", "all-minilm-l6-v2"), ("HEARTH__ENGINE__STALL_SECONDS", "2")]);
    notify.until(Duration::from_secs(30), "READY=1 and a ping", |m| has(m, "READY=1") && count(m, "WATCHDOG=1") >= 1);

    // The embedding engine's thread parks for good inside its first job.
    let request = reqwest::Client::new()
        .post(server.url("/v1/embeddings"))
        .json(&serde_json::json!({"model": "all-minilm-l6-v2", "input": "hang"}))
        .timeout(Duration::from_secs(60))
        .send();
    let hung = tokio::spawn(request);
    notify.until(Duration::from_secs(20), "a STATUS naming the stalled engine", |m| {
        m.iter().any(|(_, s)| s.starts_with("STATUS=engine `all-minilm-l6-v2` has made no progress"))
    });
    // Silence: three ping periods without WATCHDOG=1, while the HTTP side still answers.
    let after = notify.collect_for(Duration::from_secs(3));
    assert!(!after.iter().any(|m| m == "WATCHDOG=1"), "pings after the stall: {after:?}");
    assert!(!hung.is_finished(), "the embedding request is stuck with its engine");
    // The process answers (/health 200, degraded); /ready names the engine with no heartbeat.
    let (health, body) = get_json(&server, "/health").await;
    assert_eq!(health, 200);
    assert_eq!(body["status"], "degraded", "{body}");
    let (ready, body) = get_json(&server, "/ready").await;
    assert_eq!(ready, 503, "{body}");
    let reason = body["error"]["message"].as_str().unwrap_or_default();
    assert!(reason.contains("model `all-minilm-l6-v2`: no heartbeat for "), "{body}");
    assert!(!reason.contains("smollm2"), "the idle chat engine beats: {body}");
    assert!(server.log().contains("Engine thread stalled"), "{}", server.log());
    hung.abort();
}

/// `WATCHDOG_USEC` for the long request: pings every 3 s, stopped by a heartbeat older than 6 s.
/// About a quarter of the request's length on the 2-core box (15 s alone, 25 s beside the other
/// tests of this file), and several times an embedding batch there even under that load.
const LONG_WATCHDOG_USEC: &str = "6000000";

/// A 1,000-input embedding request takes several watchdog periods on a small CPU; the engine
/// beats after every batch, so the pings never stop, and a small request sent meanwhile is
/// answered between its batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_embedding_request_keeps_the_watchdog_fed_and_shares_the_engine() {
    let mut notify = Notifications::bind();
    let server = start_with_watchdog(&notify, LONG_WATCHDOG_USEC, &[]);
    notify.until(Duration::from_secs(30), "READY=1", |m| has(m, "READY=1"));
    // The service manager's end of the socket is read on a thread of its own meanwhile.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                notify.collect_for(Duration::from_millis(100));
            }
            notify
        })
    };
    let started = Instant::now();
    let big = {
        // About 100 tokens each: 1,000 of them outlast the 6 s watchdog on an idle 2-core machine
        // too (25-token passages took 6.9 s there, too short to prove anything).
        let long: Vec<String> = passages(1000).into_iter().map(|p| [p.as_str(); 4].join(" ")).collect();
        let body = serde_json::json!({"model": EMBED, "input": long});
        let url = server.url("/v1/embeddings");
        tokio::spawn(async move {
            let r = reqwest::Client::new().post(url).json(&body).timeout(Duration::from_secs(600)).send().await.unwrap_or_else(|e| panic!("{e}"));
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap_or_default(), Instant::now())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while embed_running(&server).await < 1.0 {
        assert!(Instant::now() < deadline && !big.is_finished(), "the big request never showed as running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let (status, small) = embed(&server, serde_json::json!({"model": EMBED, "input": "a small request"})).await;
    let small_latency = asked.elapsed();
    assert_eq!(status, 200, "{small}");
    assert_eq!(small["data"].as_array().map(Vec::len), Some(1));
    assert!(!big.is_finished(), "the small request ({small_latency:?}) is answered while the big one runs");

    let (status, body, finished) = big.await.unwrap_or_else(|e| panic!("{e}"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let notify = reading.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1000));
    let took = finished - started;
    let timeout = Duration::from_micros(LONG_WATCHDOG_USEC.parse().unwrap_or_default());
    // One silent job of this length would have stopped the pings: its age passes the timeout
    // before a ping period after it ends.
    assert!(took > timeout + timeout / 2, "the request took {took:?}: too short to outlast the watchdog on this machine; raise its size");
    assert!(small_latency * 4 < took, "small {small_latency:?} against big {took:?}");
    let stalled: Vec<&str> = notify.messages().into_iter().filter(|m| m.contains("has made no progress")).collect();
    assert!(stalled.is_empty(), "{stalled:?}\n{}", server.log());
    // Pings all through the request: no silence longer than half the timeout, plus slack for a busy machine.
    let mut marks = vec![started];
    marks.extend(notify.seen.iter().filter(|(t, m)| m == "WATCHDOG=1" && *t > started && *t < finished).map(|(t, _)| *t));
    marks.push(finished);
    let longest = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    assert!(longest <= timeout / 2 + Duration::from_secs(1), "a {longest:?} silence during a {took:?} request; pings at {:?}", marks);
    println!("1,000 inputs in {took:?}, a small request meanwhile in {small_latency:?}, {} pings, longest silence {longest:?}", marks.len() - 2);
}

/// Under systemd an engine thread that panicked ends the process with a non-zero status (the
/// unit's Restart=on-failure brings hearth back), after a STATUS= line that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_an_engine_thread_that_panics_ends_the_process_non_zero() {
    let mut notify = Notifications::bind();
    let server = start_under_systemd(&notify, &[("HEARTH_DEBUG_PANIC_ENGINE", EMBED)]);
    notify.until(Duration::from_secs(30), "READY=1", |m| has(m, "READY=1"));
    // The request fails with 503, or its connection closes as the process ends.
    let response = reqwest::Client::new()
        .post(server.url("/v1/embeddings"))
        .json(&serde_json::json!({"model": EMBED, "input": "panic"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    if let Ok(r) = response {
        assert_eq!(r.status().as_u16(), 503);
    }
    let status = format!("STATUS=model `{EMBED}`: engine thread stopped (it panicked: HEARTH_DEBUG_PANIC_ENGINE test hook); exiting");
    notify.until(Duration::from_secs(10), "a STATUS naming the stopped engine", |m| m.iter().any(|(_, s)| s == &status));
    let (exit, log) = tokio::task::spawn_blocking(move || server.wait_exit()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exit.code(), Some(70), "EX_SOFTWARE: {exit:?}\n{log}");
    assert!(log.contains("Engine thread panicked") && log.contains("exiting so the service manager restarts hearth"), "{log}");
}

/// Outside systemd the process lives on: the model with the dead thread answers 503, /ready says
/// which engine stopped and why, /health is 200 but "degraded", the error is logged once, and the
/// other model still serves.
#[tokio::test]
async fn outside_systemd_an_engine_thread_that_panics_turns_ready_503_and_health_degraded() {
    let server = Server::start_with(Options { env: vec![("HEARTH_DEBUG_PANIC_ENGINE", EMBED)], ..Options::default() });
    let (status, body) = embed(&server, serde_json::json!({"model": EMBED, "input": "panic"})).await;
    assert_eq!(status, 503, "{body}");
    let why = format!("model `{EMBED}`: engine thread stopped (it panicked: HEARTH_DEBUG_PANIC_ENGINE test hook)");
    let (status, body) = get_json(&server, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["message"], why.as_str(), "{body}");
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!((status, body["status"].as_str(), body["reason"].as_str()), (200, Some("degraded"), Some(why.as_str())), "{body}");
    let (status, body) = embed(&server, serde_json::json!({"model": EMBED, "input": "again"})).await;
    assert_eq!(status, 503, "still refused, not hung: {body}");
    let chat = reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok();
    assert_eq!(chat, Some(200), "the chat model still serves");
    // The watcher looks twice a second: after three looks the error is still there once.
    let logged = "Engine thread stopped; the model answers 503";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains(logged) {
        assert!(Instant::now() < deadline, "not logged: {}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.log().matches(logged).count(), 1, "{}", server.log());
    assert_eq!(server.log().matches("Engine thread panicked").count(), 1, "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_debug_variable_no_engine_hangs() {
    let mut notify = Notifications::bind();
    let server = start_under_systemd(&notify, &[]);
    notify.until(Duration::from_secs(30), "READY=1", |m| has(m, "READY=1"));
    let body: serde_json::Value = reqwest::Client::new()
        .post(server.url("/v1/embeddings"))
        .json(&serde_json::json!({"model": "all-minilm-l6-v2", "input": "fine"}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(body["data"][0]["embedding"].is_array(), "{body}");
    let later = notify.collect_for(Duration::from_secs(2));
    assert!(later.iter().any(|m| m == "WATCHDOG=1"), "pings continue: {later:?}");
}

/// `systemd-analyze verify` exits 0 on some errors: any stderr output fails the test.
fn analyze_verify(unit: &Path) {
    let out = Command::new("systemd-analyze").arg("verify").arg(unit).output().unwrap_or_else(|e| panic!("systemd-analyze: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify {}: {:?}\n{stderr}", unit.display(), out.status);
}

#[test]
fn the_unit_verifies_and_is_hardened_without_hiding_the_gpu() {
    let unit = std::fs::read_to_string(repo_root().join("systemd/hearth.service")).unwrap_or_else(|e| panic!("{e}"));
    for line in [
        "Type=notify", "ExecStartPre=/usr/bin/hearth validate", "ExecStart=/usr/bin/hearth serve", "StateDirectory=hearth",
        "ConfigurationDirectory=hearth", "User=hearth", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
        "NoNewPrivileges=yes", "SystemCallFilter=@system-service", "UMask=0077", "DeviceAllow=char-nvidia-frontend rw",
        "DeviceAllow=char-nvidia-uvm rw", "WatchdogSec=60s", "TimeoutStopSec=45s",
    ] {
        assert!(unit.lines().any(|l| l == line), "hearth.service lacks `{line}`");
    }
    assert!(unit.lines().any(|l| l.starts_with("RestrictAddressFamilies=")) && unit.lines().any(|l| l.starts_with("MemoryMax=")));
    assert!(!unit.lines().any(|l| l.starts_with("PrivateDevices=yes")), "PrivateDevices=yes hides /dev/nvidia*");
    // Verify against the binary just built: the unit's /usr/bin/hearth is not installed here.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let local = dir.path().join("hearth.service");
    std::fs::write(&local, unit.replace("/usr/bin/hearth", &hearth_bin().display().to_string())).unwrap_or_else(|e| panic!("{e}"));
    analyze_verify(&local);
}

#[test]
fn sysusers_creates_the_service_user() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(root.path().join("etc")).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(repo_root().join("systemd/hearth.sysusers"))
        .output()
        .unwrap_or_else(|e| panic!("systemd-sysusers: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap_or_default();
    let hearth = passwd.lines().find(|l| l.starts_with("hearth:")).unwrap_or_else(|| panic!("no hearth user in {passwd}"));
    assert!(hearth.ends_with(":/var/lib/hearth:/usr/sbin/nologin"), "{hearth}");
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap_or_default();
    assert!(group.lines().any(|l| l.starts_with("video:") && l.ends_with("hearth")), "{group}");
}

#[test]
fn status_names_the_files_being_ingested_then_returns_to_serving() {
    let mut notify = Notifications::bind();
    let server = start_under_systemd(&notify, &[]);
    notify.until(Duration::from_secs(30), "READY=1", |m| has(m, "READY=1"));
    let paragraph = "The watched folder turns every file dropped into it into searchable chunks.\n\n".repeat(30);
    for i in 0..40 {
        std::fs::write(server.inbox().join(format!("note-{i:02}.txt")), format!("Note {i}.\n\n{paragraph}")).unwrap_or_else(|e| panic!("{e}"));
    }
    let ingesting = |m: &str| m.starts_with("STATUS=Serving 2 model(s) on ") && m.contains("; ingesting ") && m.ends_with(" file(s)");
    notify.until(Duration::from_secs(60), "a STATUS naming the files in ingestion", |m| m.iter().any(|(_, s)| ingesting(s)));
    let first = notify.seen.iter().position(|(_, s)| ingesting(s)).unwrap_or_default();
    notify.until(Duration::from_secs(120), "STATUS back to serving once the queue is empty", |m| {
        m[first..].iter().any(|(_, s)| s.starts_with("STATUS=Serving 2 model(s) on ") && !s.contains("ingesting"))
    });
    assert!(server.log().matches("File ingested.").count() == 40, "{}", server.log());
}

/// `systemd-analyze security` rates the unit "OK" or better (at most 2.0 of 10), and the README
/// reports the score measured with this systemd version.
#[test]
fn systemd_analyze_security_rates_the_unit_ok() {
    let unit = std::fs::read_to_string(repo_root().join("systemd/hearth.service")).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let local = dir.path().join("hearth.service");
    std::fs::write(&local, unit.replace("/usr/bin/hearth", &hearth_bin().display().to_string())).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&local).output().unwrap_or_else(|e| panic!("systemd-analyze: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let verdict = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for hearth.service: ").nth(1))
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{text}"));
    let mut words = verdict.split_whitespace();
    let (score, label) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let value: f64 = score.parse().unwrap_or_else(|e| panic!("{verdict}: {e}"));
    assert!(value <= 2.0, "exposure {verdict}: the hardening regressed\n{text}");
    let version = Command::new("systemd-analyze").arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let major = version.split_whitespace().nth(1).unwrap_or_default();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap_or_default();
    if readme.contains(&format!("(systemd {major})")) {
        assert!(readme.contains(&format!("rates it **{score} {label}**")), "README's systemd-analyze security score differs from the measured {score} {label}");
    }
}

/// One datagram of journald's native protocol: `NAME=value\n`, or `NAME\n`, a little-endian
/// u64 length, the value and `\n` for values that hold a newline.
fn journal_fields(mut data: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'\n' || b == b'=').unwrap_or(data.len());
        let name = String::from_utf8_lossy(&data[..end]).into_owned();
        if data.get(end) == Some(&b'=') {
            let rest = &data[end + 1..];
            let stop = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            fields.push((name, String::from_utf8_lossy(&rest[..stop]).into_owned()));
            data = rest.get(stop + 1..).unwrap_or_default();
        } else {
            let rest = data.get(end + 1..).unwrap_or_default();
            let len = rest.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or_else(|| panic!("truncated field {name}")) as usize;
            let value = rest.get(8..8 + len).unwrap_or_else(|| panic!("truncated value of {name}"));
            fields.push((name, String::from_utf8_lossy(value).into_owned()));
            data = rest.get(8 + len + 1..).unwrap_or_default();
        }
    }
    fields
}

/// Started by systemd (`JOURNAL_STREAM` set), hearth logs to journald's socket with structured
/// fields. The socket's path is fixed (`/run/systemd/journal/socket`), so hearth runs in a mount
/// namespace of its own (unshare) where this test's socket is mounted on that path; the host's
/// `/run` is untouched.
#[test]
fn under_systemd_logs_go_to_the_journal_with_structured_fields() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let journal_dir = dir.path().join("journal");
    std::fs::create_dir(&journal_dir).unwrap_or_else(|e| panic!("{e}"));
    let journal = UnixDatagram::bind(journal_dir.join("socket")).unwrap_or_else(|e| panic!("{e}"));
    journal.set_read_timeout(Some(Duration::from_millis(200))).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("hearth.toml");
    std::fs::write(&config, format!("[[ingest.watch]]\npath = \"{}\"\nvector_store = \"inbox\"\n", dir.path().join("inbox").display()))
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap_or_else(|e| panic!("{e}"));

    let mut cmd = Command::new("unshare");
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0) != 0 {
        cmd.arg("--map-root-user");
    }
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"d=$1; shift; mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && mount --bind "$d" /run/systemd/journal && exec "$@""#)
        .arg("sh")
        .arg(&journal_dir)
        .arg(hearth_bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .current_dir(repo_root());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HEARTH__") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .env_remove("NOTIFY_SOCKET")
        .env("JOURNAL_STREAM", "8:4242")
        .env("HEARTH__SERVER__LISTEN", "127.0.0.1:0")
        .env("HEARTH__SERVER__STATE_DIR", dir.path().join("state"))
        .env("HEARTH__ENGINE__THREADS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("unshare (util-linux): {e}"));

    let mut entries: Vec<Vec<(String, String)>> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let message = |e: &[(String, String)], text: &str| e.iter().any(|(k, v)| k == "MESSAGE" && v == text);
    let receive_until = |entries: &mut Vec<Vec<(String, String)>>, buf: &mut [u8], text: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !entries.iter().any(|e| message(e, text)) {
            let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "no journal entry `{text}` within 60 s; {} entries; stderr:\n{log}", entries.len());
            if let Ok(n) = journal.recv(buf) {
                entries.push(journal_fields(&buf[..n]));
            }
        }
    };
    receive_until(&mut entries, &mut buf, "Ready.");
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(kill.success());
    receive_until(&mut entries, &mut buf, "Stopped.");
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status:?}");

    let field = |e: &[(String, String)], name: &str| e.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let find = |text: &str| entries.iter().find(|e| message(e, text)).unwrap_or_else(|| panic!("no `{text}` in {entries:?}"));
    let listening = find("Listening.");
    assert!(field(listening, "F_BOUND").starts_with("127.0.0.1:"), "{listening:?}");
    assert_eq!(field(listening, "PRIORITY"), "6", "info is priority 6: {listening:?}");
    assert_eq!(field(listening, "SYSLOG_IDENTIFIER"), "hearth");
    assert_eq!(field(listening, "TARGET"), "hearth::server");
    assert!(field(listening, "CODE_FILE").ends_with("server.rs") && !field(listening, "CODE_LINE").is_empty(), "{listening:?}");
    let models: Vec<String> = entries.iter().filter(|e| message(e, "Model loaded.")).map(|e| field(e, "F_MODEL")).collect();
    assert!(models.contains(&"smollm2-135m-instruct".to_owned()) && models.contains(&"all-minilm-l6-v2".to_owned()), "{models:?}");
    let drain = find("Stop requested; draining requests in flight.");
    assert_eq!((field(drain, "F_SIGNAL"), field(drain, "F_DRAIN_S")), ("SIGTERM".to_owned(), "20".to_owned()), "{drain:?}");
    // The journal replaced the terminal: nothing of this went to stderr.
    let terminal = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    assert!(!terminal.contains("Listening.") && !terminal.contains("Ready."), "{terminal}");
}
