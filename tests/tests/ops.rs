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
