//! `hearth bench` against a fake OpenAI-compatible server with known, fixed delays.
//!
//! The fake server (plain `std::net`, a thread per connection) streams chat completions: it waits
//! `ttft` before the first token and `itl` between tokens (or a longer `stall` before one chosen
//! token of every request), sends `max_tokens` tokens with
//! continuous usage, and records when each request arrived and what it asked for. The real
//! `hearth bench` binary runs against it; the tests read its `--json` report and exit status.

#![expect(clippy::unwrap_used, reason = "a test fails loudly on the first unexpected error")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hearth_tests::hearth_command;
use serde_json::{json, Value};

/// How the fake server behaves.
#[derive(Clone, Copy)]
struct Behavior {
    ttft: Duration,
    itl: Duration,
    /// Generations at once; more wait for a slot (their TTFT grows).
    capacity: usize,
    /// Answer every n-th chat request with 429.
    reject_every: Option<usize>,
    /// Wait this long instead of `itl` before the given (1-based) token of every request.
    stall: Option<(u64, Duration)>,
    /// Serve `/tokenize`, counting this many tokens per word (`a` counts one).
    tokens_per_word: Option<usize>,
    /// Answer every request with 503 for this long after starting, as a server loading its models.
    loading: Duration,
}

impl Behavior {
    fn new(ttft_ms: u64, itl_ms: u64) -> Behavior {
        Behavior { ttft: Duration::from_millis(ttft_ms), itl: Duration::from_millis(itl_ms), capacity: usize::MAX, reject_every: None, stall: None, tokens_per_word: None, loading: Duration::ZERO }
    }
}

/// What the fake server saw.
#[derive(Default)]
struct Seen {
    arrivals: Vec<Instant>,
    bodies: Vec<Value>,
    /// Requests answered 503 while loading.
    while_loading: usize,
}

struct FakeServer {
    base: String,
    seen: Arc<Mutex<Seen>>,
}

/// Slots of generation capacity.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
    capacity: usize,
}

impl FakeServer {
    fn start(behavior: Behavior) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let slots = Arc::new(Slots { used: Mutex::new(0), freed: Condvar::new(), capacity: behavior.capacity });
        let sink = seen.clone();
        let ready_at = Instant::now() + behavior.loading;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (sink, slots) = (sink.clone(), slots.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, behavior, ready_at, &sink, &slots);
                });
            }
        });
        FakeServer { base, seen }
    }

    /// Arrival times of chat requests, in order.
    fn arrivals(&self) -> Vec<Instant> {
        let mut a = self.seen.lock().unwrap().arrivals.clone();
        a.sort();
        a
    }
}

fn serve(stream: TcpStream, behavior: Behavior, ready_at: Instant, seen: &Mutex<Seen>, slots: &Slots) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let arrived = Instant::now();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let respond = |out: &mut TcpStream, status: &str, content_type: &str, body: &str| {
        write!(out, "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    };
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    if arrived < ready_at {
        seen.lock().unwrap().while_loading += 1;
        return respond(&mut out, "503 Service Unavailable", "application/json", r#"{"error":{"message":"models are still loading; retry shortly"}}"#);
    }
    match path {
        "/v1/models" => return respond(&mut out, "200 OK", "application/json", &json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).to_string()),
        "/metrics" => return respond(&mut out, "200 OK", "text/plain", "# TYPE hearth_gpu_utilization_ratio gauge\nhearth_gpu_utilization_ratio{gpu=\"0\"} 0.25\n"),
        "/tokenize" if behavior.tokens_per_word.is_some() => {
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let count = fake_token_count(request["content"].as_str().unwrap_or(""), behavior.tokens_per_word.unwrap_or(1));
            return respond(&mut out, "200 OK", "application/json", &json!({"tokens": vec![0; count]}).to_string());
        }
        "/v1/chat/completions" => {}
        _ => return respond(&mut out, "404 Not Found", "application/json", r#"{"error":{"message":"not found"}}"#),
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.arrivals.push(arrived);
        seen.bodies.push(request.clone());
        seen.arrivals.len()
    };
    if behavior.reject_every.is_some_and(|k| n % k == 0) {
        return respond(&mut out, "429 Too Many Requests", "application/json", r#"{"error":{"message":"busy","type":"overloaded"}}"#);
    }
    let tokens = request["max_tokens"].as_u64().unwrap_or(16);
    {
        let mut used = slots.used.lock().unwrap();
        while *used >= slots.capacity {
            used = slots.freed.wait(used).unwrap();
        }
        *used += 1;
    }
    let result = (|| {
        write!(out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")?;
        let chunk = |out: &mut TcpStream, delta: Value, finish: Value, done: u64| {
            let c = json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": {"prompt_tokens": 20, "completion_tokens": done}});
            write!(out, "data: {c}\n\n")?;
            out.flush()
        };
        chunk(&mut out, json!({"role": "assistant", "content": ""}), Value::Null, 0)?;
        std::thread::sleep(behavior.ttft);
        for i in 1..=tokens {
            match behavior.stall {
                Some((at, stall)) if at == i => std::thread::sleep(stall),
                _ if i > 1 => std::thread::sleep(behavior.itl),
                _ => {}
            }
            chunk(&mut out, json!({"content": " tok"}), Value::Null, i)?;
        }
        chunk(&mut out, json!({}), json!("length"), tokens)?;
        write!(out, "data: {}\n\ndata: [DONE]\n\n", json!({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": tokens}}))?;
        out.flush()
    })();
    *slots.used.lock().unwrap() -= 1;
    slots.freed.notify_all();
    result
}

/// The fake server's tokenizer: `per_word` tokens a word, one for `a`.
fn fake_token_count(text: &str, per_word: usize) -> usize {
    text.split_whitespace().map(|w| if w == "a" { 1 } else { per_word }).sum()
}

/// Run `hearth bench` with arguments against `base`, writing the JSON report into `dir`.
fn bench(base: &str, dir: &Path, name: &str, args: &[&str]) -> (Output, Option<Value>) {
    let json_path = dir.join(format!("{name}.json"));
    let output = hearth_command()
        .arg("bench")
        .args(["--target", base, "--json"])
        .arg(&json_path)
        .args(args)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&json_path).ok().map(|t| serde_json::from_str(&t).unwrap());
    (output, report)
}

fn text(output: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", output.status, String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn within(value: f64, lo: f64, hi: f64, what: &str, output: &Output) {
    assert!((lo..=hi).contains(&value), "{what} = {value}, expected {lo}..={hi}\n{}", text(output));
}

#[test]
fn reports_the_servers_ttft_and_itl() {
    let server = FakeServer::start(Behavior::new(100, 20));
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = bench(&server.base, dir.path(), "run", &["--profile", "synchronous", "--max-requests", "6", "--data", "synthetic:prompt_tokens=16,output_tokens=11"]);
    assert!(output.status.success(), "{}", text(&output));
    let report = report.unwrap();
    assert_eq!(report["model"], "fake-model", "the model comes from /v1/models");
    let s = &report["profiles"][0]["summary"];
    assert_eq!(s["completed"], 6, "{}", text(&output));
    assert_eq!(report["profiles"][0]["records"].as_array().unwrap().len(), 6);
    within(s["ttft_ms"]["p50"].as_f64().unwrap(), 100.0, 125.0, "TTFT p50", &output);
    within(s["ttft_ms"]["p99"].as_f64().unwrap(), 100.0, 160.0, "TTFT p99", &output);
    within(s["itl_ms"]["p50"].as_f64().unwrap(), 20.0, 24.0, "ITL p50", &output);
    within(s["itl_ms"]["mean"].as_f64().unwrap(), 20.0, 24.0, "ITL mean", &output);
    // 100 ms + 10 × 20 ms per request, one at a time.
    within(s["e2e_ms"]["p50"].as_f64().unwrap(), 300.0, 340.0, "E2E p50", &output);
    within(s["requests_per_s"].as_f64().unwrap(), 2.8, 3.4, "requests/s", &output);
    within(s["output_tokens_mean"].as_f64().unwrap(), 11.0, 11.0, "output tokens", &output);
    within(s["gpu_utilization"].as_f64().unwrap_or(-1.0), 0.25, 0.25, "GPU utilization from /metrics", &output);
    let bodies = &server.seen.lock().unwrap().bodies;
    assert!(bodies.iter().all(|b| b["max_tokens"] == 11 && b["ignore_eos"] == true && b["stream"] == true), "{bodies:?}");
    let prompt = bodies[0]["messages"][0]["content"].as_str().unwrap();
    assert_eq!(prompt.split_whitespace().count(), 16, "{prompt}");
    assert_ne!(bodies[0]["messages"], bodies[1]["messages"], "every synthetic prompt differs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("TTFT mean") && stdout.contains("synchronous"), "{stdout}");
}

#[test]
fn pooled_token_gaps_show_a_stall_that_the_per_request_itl_averages_away() {
    // 21 tokens a request: 19 gaps of 10 ms and one of 300 ms before the 11th token.
    let server = FakeServer::start(Behavior { stall: Some((11, Duration::from_millis(300))), ..Behavior::new(20, 10) });
    let dir = tempfile::tempdir().unwrap();
    let slo = dir.path().join("slo.toml");
    std::fs::write(&slo, "itl_p99_ms = 60\nitl_gap_p99_ms = 100\n").unwrap();
    let (output, report) = bench(
        &server.base,
        dir.path(),
        "stall",
        &["--profile", "synchronous", "--max-requests", "4", "--data", "synthetic:prompt_tokens=8,output_tokens=21", "--slo", slo.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(3), "the gap objective fails, the per-request one passes
{}", text(&output));
    let report = report.unwrap();
    let s = &report["profiles"][0]["summary"];
    assert_eq!(s["completed"], 4, "{}", text(&output));
    let (itl, gap) = (&s["itl_ms"], &s["itl_gap_ms"]);
    let f = |v: &Value| v.as_f64().unwrap();
    // Each request's mean gap is (19 × 10 + 300) / 20 = 24.5 ms: the stall is averaged away.
    within(f(&itl["mean"]), 24.0, 35.0, "per-request ITL mean", &output);
    within(f(&itl["max"]), 24.0, 40.0, "per-request ITL max", &output);
    // Pooled, one gap in 20 is the stall: the p99 and the max are 300 ms, the median 10 ms.
    assert_eq!(gap["count"], 80, "4 requests × 20 gaps
{}", text(&output));
    within(f(&gap["p50"]), 9.5, 20.0, "gap p50", &output);
    within(f(&gap["p90"]), 10.0, 40.0, "gap p90", &output);
    within(f(&gap["p99"]), 290.0, 400.0, "gap p99", &output);
    within(f(&gap["max"]), 290.0, 450.0, "gap max", &output);
    within(f(&gap["mean"]), f(&itl["mean"]) * 0.99, f(&itl["mean"]) * 1.01, "gap mean = per-request ITL mean", &output);
    for record in report["profiles"][0]["records"].as_array().unwrap() {
        within(f(&record["max_gap_ms"]), 290.0, 450.0, "each record's longest gap", &output);
    }
    let verdicts = &report["profiles"][0]["verdicts"];
    let failing: Vec<&str> = verdicts.as_array().unwrap().iter().filter(|v| v["pass"] == false).map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(failing, vec!["itl_gap_p99_ms"], "{verdicts}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let row = stdout.lines().skip_while(|l| !l.starts_with("token gaps (ms)")).nth(2).unwrap_or_else(|| panic!("no token gap table\n{stdout}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..2], ["synchronous", "80"], "{stdout}");
    let p99: f64 = cells[5].parse().unwrap();
    assert!((290.0..=400.0).contains(&p99), "the table's gap p99 column: {row}");
}

#[test]
fn slo_gate_passes_a_fast_server_fails_a_slow_one_and_compare_shows_the_ratio() {
    let fast = FakeServer::start(Behavior::new(100, 20));
    let slow = FakeServer::start(Behavior::new(400, 20));
    let dir = tempfile::tempdir().unwrap();
    let slo = dir.path().join("slo.toml");
    std::fs::write(&slo, "ttft_p95_ms = 250\nitl_p95_ms = 40\nerror_rate = 0.0\n").unwrap();
    let slo = slo.to_str().unwrap();
    let args = ["--profile", "synchronous", "--max-requests", "3", "--data", "synthetic:prompt_tokens=8,output_tokens=5", "--slo", slo];
    let (ok, _) = bench(&fast.base, dir.path(), "fast", &args);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("SLO gate: PASS"), "{}", text(&ok));
    let (failed, report) = bench(&slow.base, dir.path(), "slow", &args);
    assert_eq!(failed.status.code(), Some(3), "{}", text(&failed));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("SLO gate: FAIL"), "{}", text(&failed));
    let verdicts = report.unwrap()["profiles"][0]["verdicts"].clone();
    let failing: Vec<&str> = verdicts.as_array().unwrap().iter().filter(|v| v["pass"] == false).map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(failing, vec!["ttft_p95_ms"], "{verdicts}");

    let compare = hearth_command().args(["bench", "compare"]).arg(dir.path().join("fast.json")).arg(dir.path().join("slow.json")).output().unwrap();
    assert!(compare.status.success(), "{}", text(&compare));
    let table = String::from_utf8_lossy(&compare.stdout);
    let ratio: f64 = table
        .lines()
        .find(|l| l.contains("TTFT p50 ms"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no TTFT p50 ratio in\n{table}"));
    within(ratio, 3.3, 4.1, "slow/fast TTFT p50 ratio", &compare);
}

#[test]
fn constant_profile_sends_at_the_requested_rate() {
    let server = FakeServer::start(Behavior::new(10, 5));
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = bench(&server.base, dir.path(), "run", &["--profile", "constant:20", "--max-requests", "30", "--data", "synthetic:prompt_tokens=8,output_tokens=4"]);
    assert!(output.status.success(), "{}", text(&output));
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 30);
    let gaps: Vec<f64> = arrivals.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    let rate = gaps.len() as f64 / gaps.iter().sum::<f64>();
    within(rate, 18.0, 22.0, "rate seen by the server", &output);
    let late = gaps.iter().filter(|g| !(0.025..=0.075).contains(*g)).count();
    assert!(late <= 2, "gaps should be about 50 ms: {gaps:?}");
    let send_rate = report.unwrap()["profiles"][0]["summary"]["send_rate"].as_f64().unwrap();
    within(send_rate, 18.0, 22.0, "reported send rate", &output);
}

#[test]
fn poisson_profile_sends_at_the_requested_mean_rate_with_random_gaps() {
    let server = FakeServer::start(Behavior::new(10, 5));
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = bench(&server.base, dir.path(), "run", &["--profile", "poisson:20", "--max-requests", "60", "--seed", "7", "--data", "synthetic:prompt_tokens=8,output_tokens=4"]);
    assert!(output.status.success(), "{}", text(&output));
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 60);
    let gaps: Vec<f64> = arrivals.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
    within(1.0 / mean, 15.0, 25.0, "mean rate seen by the server", &output);
    // Exponential gaps have a coefficient of variation of 1; evenly spaced ones of about 0.
    within(sd / mean, 0.6, 1.5, "coefficient of variation of the gaps", &output);
}

#[test]
fn max_seconds_ends_a_profile_and_cancels_what_is_in_flight() {
    let server = FakeServer::start(Behavior::new(100, 100));
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (output, report) = bench(&server.base, dir.path(), "run", &["--profile", "concurrent:2", "--max-seconds", "1", "--data", "synthetic:prompt_tokens=8,output_tokens=50"]);
    let took = started.elapsed();
    assert!(output.status.success(), "{}", text(&output));
    assert!(took < Duration::from_secs(4), "took {took:?}\n{}", text(&output));
    let s = &report.unwrap()["profiles"][0]["summary"];
    assert_eq!((s["completed"].as_u64(), s["cancelled"].as_u64(), s["errored"].as_u64()), (Some(0), Some(2), Some(0)), "{s}");
}

#[test]
fn errors_are_counted_by_kind_and_fail_an_error_rate_objective() {
    let server = FakeServer::start(Behavior { reject_every: Some(2), ..Behavior::new(5, 5) });
    let dir = tempfile::tempdir().unwrap();
    let slo = dir.path().join("slo.toml");
    std::fs::write(&slo, "error_rate = 0.1\n").unwrap();
    let (output, report) = bench(&server.base, dir.path(), "run", &["--max-requests", "6", "--data", "synthetic:prompt_tokens=8,output_tokens=3", "--slo", slo.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let s = &report.unwrap()["profiles"][0]["summary"];
    assert_eq!(s["errors"], json!({"http_429": 3}), "{s}");
    within(s["error_rate"].as_f64().unwrap(), 0.5, 0.5, "error rate", &output);
}

#[test]
fn sweep_reports_the_highest_rate_meeting_the_slo_and_draws_the_report() {
    // Two generations at a time, ~90 ms each: about 22 requests/s at most.
    let server = FakeServer::start(Behavior { capacity: 2, ..Behavior::new(50, 10) });
    let dir = tempfile::tempdir().unwrap();
    let slo = dir.path().join("slo.toml");
    std::fs::write(&slo, "ttft_p95_ms = 150\n").unwrap();
    let html = dir.path().join("report.html");
    let (output, report) = bench(
        &server.base,
        dir.path(),
        "sweep",
        &["--profile", "sweep:4", "--max-seconds", "1.2", "--max-concurrency", "16", "--data", "synthetic:prompt_tokens=8,output_tokens=5", "--slo", slo.to_str().unwrap(), "--gpu-cost-per-hour", "2.0", "--report", html.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(0), "a sweep passes when some rate meets the objectives\n{}", text(&output));
    let report = report.unwrap();
    let profiles: Vec<&str> = report["profiles"].as_array().unwrap().iter().map(|p| p["summary"]["profile"].as_str().unwrap()).collect();
    assert_eq!(profiles.len(), 4, "{profiles:?}");
    assert_eq!(&profiles[..2], ["synchronous", "throughput"]);
    assert!(profiles[2..].iter().all(|p| p.starts_with("constant:")), "{profiles:?}");
    let rate = |i: usize| report["profiles"][i]["summary"]["requests_per_s"].as_f64().unwrap();
    let best = report["highest_sustainable_rate"].as_f64().unwrap_or_else(|| panic!("no sustainable rate\n{}", text(&output)));
    assert!(best >= rate(0) && best < rate(1), "sustainable {best} should lie between synchronous {} and throughput {}\n{}", rate(0), rate(1), text(&output));
    assert_eq!(report["profiles"][1]["verdicts"][0]["pass"], false, "16 streams on 2 slots must miss the TTFT objective\n{}", text(&output));
    let cost = report["profiles"][0]["summary"]["cost_per_million_output_tokens"].as_f64().unwrap();
    let tokens = report["profiles"][0]["summary"]["output_tokens_per_s"].as_f64().unwrap();
    within(cost, 2.0 / (tokens * 3600.0) * 1e6 * 0.999, 2.0 / (tokens * 3600.0) * 1e6 * 1.001, "cost per million output tokens", &output);
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 4, "four charts");
    assert!(page.contains("Time to first token vs request rate") && page.contains("SLO gate: PASS"));
}

#[test]
fn bad_slo_files_and_unreachable_targets_are_clear_errors() {
    let server = FakeServer::start(Behavior::new(5, 5));
    let dir = tempfile::tempdir().unwrap();
    let slo = dir.path().join("slo.toml");
    std::fs::write(&slo, "ttft_p97_ms = 100\n").unwrap();
    let (output, _) = bench(&server.base, dir.path(), "bad", &["--max-requests", "1", "--slo", slo.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ttft_p97_ms"), "{}", text(&output));
    assert!(server.arrivals().is_empty(), "nothing is sent when the SLO file is bad");

    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (output, _) = bench(&format!("http://{closed}"), dir.path(), "closed", &["--max-requests", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("could not reach"), "{}", text(&output));
}

#[test]
fn a_target_still_loading_its_models_is_waited_for_then_measured() {
    let server = FakeServer::start(Behavior { loading: Duration::from_millis(1500), ..Behavior::new(5, 5) });
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = bench(&server.base, dir.path(), "loading", &["--model", "fake-model", "--profile", "concurrent:2", "--max-requests", "4", "--data", "synthetic:prompt_tokens=8,output_tokens=4"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("waiting up to 120 s for it to load"), "{}", text(&output));
    let s = &report.unwrap()["profiles"][0]["summary"];
    assert_eq!((s["completed"].as_u64(), s["errored"].as_u64()), (Some(4), Some(0)), "{s}");
    // Only the readiness polls met the 503s; every measured request came after loading.
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 4);
    assert!(arrivals[0] - started >= Duration::from_millis(1500), "{:?}", arrivals[0] - started);
    assert!(server.seen.lock().unwrap().while_loading >= 2);

    // A target that keeps loading past --wait-ready is a clear error, and nothing is measured.
    let stuck = FakeServer::start(Behavior { loading: Duration::from_secs(600), ..Behavior::new(5, 5) });
    let started = Instant::now();
    let (output, _) = bench(&stuck.base, dir.path(), "stuck", &["--wait-ready", "1", "--max-requests", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("still answered 503 Service Unavailable after 1 s"), "{}", text(&output));
    assert!(started.elapsed() < Duration::from_secs(10) && stuck.arrivals().is_empty());
}

#[test]
fn synthetic_prompts_are_sized_with_the_targets_tokenizer_even_when_words_take_several_tokens() {
    // Random-weight test models have vocabularies where an English word is several tokens.
    let server = FakeServer::start(Behavior { tokens_per_word: Some(4), ..Behavior::new(1, 1) });
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = bench(&server.base, dir.path(), "fit", &["--profile", "concurrent:2", "--max-requests", "6", "--data", "synthetic:prompt_tokens=50,output_tokens=3"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(report.unwrap()["token_counting"].as_str().unwrap().starts_with("exact"));
    let bodies = &server.seen.lock().unwrap().bodies;
    assert_eq!(bodies.len(), 6);
    for body in bodies {
        let prompt = body["messages"][0]["content"].as_str().unwrap();
        assert_eq!(fake_token_count(prompt, 4), 50, "{prompt}");
    }
}
