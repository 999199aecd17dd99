//! hearth as systemd runs it: the notify protocol over a socket this test owns (`STATUS=` while
//! loading, `READY=1`, `WATCHDOG=1` pings, `STOPPING=1` and a clean drain on SIGTERM), a hung
//! engine thread stopping the pings, and the unit, sysusers file and RPM as an operator meets them.

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
    let socket = notify.path.to_string_lossy().into_owned();
    let mut env: Vec<(&str, &str)> = vec![("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", WATCHDOG_USEC)];
    env.extend_from_slice(extra);
    Server::start_with(Options { env, ..Options::default() })
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

    let status = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success());
    notify.until(Duration::from_secs(10), "STOPPING=1", |m| has(m, "STOPPING=1"));
    let (exit, log) = server.wait_exit();
    assert!(exit.success(), "hearth should exit 0 after a drain: {exit:?}\n{log}");
    assert!(log.contains("draining"), "{log}");
}

#[tokio::test]
async fn sigterm_lets_a_stream_in_flight_finish() {
    let mut notify = Notifications::bind();
    let server = start_under_systemd(&notify, &[]);
    notify.until(Duration::from_secs(30), "READY=1", |m| has(m, "READY=1"));
    let body = serde_json::json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Count."}],
        "max_tokens": 48, "ignore_eos": true, "stream": true});
    let response = reqwest::Client::new().post(server.url("/v1/chat/completions")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 200);
    // The stream has started; now ask hearth to stop.
    let kill = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(kill.success());
    let text = response.text().await.unwrap_or_else(|e| panic!("stream cut by the drain: {e}"));
    assert!(text.ends_with("data: [DONE]\n\n"), "the stream in flight completes: {text}");
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    notify.until(Duration::from_secs(10), "STOPPING=1", |m| has(m, "STOPPING=1"));
    let (exit, log) = server.wait_exit();
    assert!(exit.success(), "{exit:?}\n{log}");
}

// Multi-threaded: the notify socket is read with blocking calls while a request runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_engine_thread_stops_the_watchdog_pings() {
    let mut notify = Notifications::bind();
    let server = start_under_systemd(&notify, &[("HEARTH_DEBUG_HANG_ENGINE", "all-minilm-l6-v2")]);
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
    let health = reqwest::get(server.url("/health")).await.map(|r| r.status().as_u16()).ok();
    assert_eq!(health, Some(200));
    assert!(server.log().contains("Engine thread stalled"), "{}", server.log());
    hung.abort();
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
        "DeviceAllow=char-nvidia-uvm rw", "WatchdogSec=60s", "TimeoutStopSec=30s",
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
