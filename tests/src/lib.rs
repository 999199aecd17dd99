//! Test harness: the real `hearth` binary, started on `127.0.0.1:0` with a temporary state
//! directory and the real small models from `models/` (fetched by `make setup`).
//!
//! The server prints one line, `hearth listening on http://ADDR`, on stdout once it has bound; the
//! harness reads it to learn the port, then waits for `/ready`. Its stderr (the logs) goes to a
//! file that a failing test prints; the rest of its stdout to another ([`Server::stdout`]).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to load its models.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub mod cli;

/// The repository root (where `models/` and `.venv/` live).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The `hearth` binary built in the same profile as this test.
pub fn hearth_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> -> target/<profile>/hearth
    let profile_dir = exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let bin = profile_dir.join("hearth");
    assert!(bin.is_file(), "{} is missing: build it first (`cargo build --release --bin hearth`, as `make test` does)", bin.display());
    bin
}

/// A `hearth` command run from the repository root with a clean `HEARTH__*` environment.
pub fn hearth_command() -> Command {
    let mut cmd = Command::new(hearth_bin());
    cmd.current_dir(repo_root());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HEARTH__") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A running hearth server; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The state directory (and the config file and log, when given).
    pub dir: tempfile::TempDir,
}

/// How to start a server.
#[derive(Default)]
pub struct Options<'a> {
    /// TOML laid over the default configuration with `--config`.
    pub config: Option<&'a str>,
    /// Extra environment variables.
    pub env: Vec<(&'a str, &'a str)>,
}

impl Server {
    /// Start with the default configuration and wait until ready.
    pub fn start() -> Server {
        Self::start_with(Options::default())
    }

    /// Start with options and wait until ready; panics with the server's log if it does not get there.
    pub fn start_with(options: Options<'_>) -> Server {
        let server = Self::spawn(options).unwrap_or_else(|(status, log)| panic!("hearth exited ({status:?}) before listening:\n{log}"));
        server.wait_ready();
        server
    }

    /// Start without waiting for readiness. On failure to reach the listening line, returns the exit
    /// status and the log.
    pub fn spawn(options: Options<'_>) -> Result<Server, (Option<ExitStatus>, String)> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let log_path = dir.path().join("hearth.log");
        let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("log file: {e}"));
        let mut cmd = hearth_command();
        // Every server watches its own `inbox` in the temporary directory, never the repository's.
        let toml = format!(
            "{}\n[[ingest.watch]]\npath = \"{}\"\nvector_store = \"inbox\"\n",
            options.config.unwrap_or_default(),
            dir.path().join("inbox").display()
        );
        let path = dir.path().join("hearth.toml");
        std::fs::File::create(&path).and_then(|mut f| f.write_all(toml.as_bytes())).unwrap_or_else(|e| panic!("config: {e}"));
        cmd.arg("--config").arg(path);
        cmd.arg("serve")
            .env("HEARTH__SERVER__LISTEN", "127.0.0.1:0")
            .env("HEARTH__SERVER__STATE_DIR", dir.path().join("state"))
            .env("HEARTH__ENGINE__THREADS", "2")
            .envs(options.env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn hearth: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let mut stdout_log = std::fs::File::create(dir.path().join("stdout.log")).unwrap_or_else(|e| panic!("stdout file: {e}"));
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let _ = writeln!(stdout_log, "{line}");
                    if let Some(url) = line.strip_prefix("hearth listening on ") {
                        break url.trim().to_owned();
                    }
                }
                _ => {
                    let status = child.wait().ok();
                    return Err((status, std::fs::read_to_string(&log_path).unwrap_or_default()));
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(stdout_log, "{line}");
            }
        });
        Ok(Server { child, base, dir })
    }

    /// The watched folder (`inbox` in the temporary directory, vector store `inbox`).
    pub fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }

    /// Full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hearth.log")).unwrap_or_default()
    }

    /// What the server printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Poll `/ready` until 200, or panic with the log.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if http_get_status(&self.url("/ready")).is_ok_and(|status| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hearth not ready within {READY_TIMEOUT:?}:\n{}", self.log());
    }

    /// Wait for the process to exit by itself (for start-up failure tests).
    pub fn wait_exit(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        (status, self.log())
    }

    /// Ask the server to stop, as `systemctl stop` does (SIGTERM: it drains, then exits).
    pub fn terminate(&self) {
        let kill = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(kill.success(), "kill -TERM {}: {kill:?}", self.pid());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET over a plain TCP connection; returns the status code (blocking, for readiness polling).
fn http_get_status(url: &str) -> std::io::Result<u16> {
    use std::io::Read;
    let rest = url.strip_prefix("http://").ok_or_else(|| std::io::Error::other("not http"))?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12]).ok().and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other("bad status line"))
}

/// Run `tests/python/SCRIPT` with the repository's virtual environment (the real `openai` package)
/// against `server`, passing `args`; panics with the script's output and the server's log unless
/// it exits 0 and prints `passed_line`. The scripts stop with a message at their first failed check.
pub fn run_python_check<S: AsRef<std::ffi::OsStr>>(server: &Server, script: &str, args: &[S], passed_line: &str) {
    let python = repo_root().join(".venv/bin/python");
    assert!(python.is_file(), "{} missing: run `make setup` (it installs the openai package)", python.display());
    let out = Command::new(python)
        .arg(repo_root().join("tests/python").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run python: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}", server.log());
    assert!(stdout.contains(passed_line), "{stdout}");
}

/// `POST /v1/files` (purpose `assistants`) with a hand-built multipart body; returns the file id.
/// Panics with the server's answer when the upload is refused.
pub async fn upload_file(server: &Server, name: &str, content: &[u8]) -> String {
    let (status, v) = post_file(server, name, content).await.unwrap_or_else(|e| panic!("upload: {e}"));
    assert_eq!(status, 200, "upload {name}: {v}");
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

/// A new vector store holding `files` (paths under the repository), once all are ingested; panics
/// with the server's log when one fails or `within` passes first.
pub async fn store_with(server: &Server, name: &str, files: &[&str], within: std::time::Duration) -> String {
    let (status, store) = post_json(server, "/v1/vector_stores", &serde_json::json!({"name": name})).await;
    assert!((200..300).contains(&status), "create vector store {name}: {status} {store}");
    let vs = store["id"].as_str().unwrap_or_default().to_owned();
    for path in files {
        let path = repo_root().join(path);
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = upload_file(server, &file_name, &bytes).await;
        let (status, body) = post_json(server, &format!("/v1/vector_stores/{vs}/files"), &serde_json::json!({"file_id": file})).await;
        assert!((200..300).contains(&status), "attach {file_name}: {status} {body}");
    }
    let deadline = std::time::Instant::now() + within;
    loop {
        let (_, r) = get_json(server, &format!("/v1/vector_stores/{vs}")).await;
        if r["file_counts"]["completed"] == files.len() {
            return vs;
        }
        assert!(r["file_counts"]["failed"] == 0 && std::time::Instant::now() < deadline, "ingestion: {r}\n{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The multipart body of `POST /v1/files` (purpose `assistants`, one file) and its content type.
pub fn file_form(name: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "hearthtestboundary7MA4YWxkTrZu0gW";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n").into_bytes();
    body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend_from_slice(content);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `POST /v1/files` (purpose `assistants`): the status and JSON body, whatever they are; an error
/// when no answer came (the server died or refused the connection).
pub async fn post_file(server: &Server, name: &str, content: &[u8]) -> Result<(u16, serde_json::Value), reqwest::Error> {
    let (content_type, body) = file_form(name, content);
    let r = reqwest::Client::new()
        .post(server.url("/v1/files"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(serde_json::Value::Null)))
}

/// `GET path`: the status and the JSON body (`null` when the body is not JSON).
pub async fn get_json(server: &Server, path: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(server.url(path)).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// `POST path` with a JSON body: the status and the JSON answer (`null` when it is not JSON).
pub async fn post_json(server: &Server, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new().post(server.url(path)).json(body).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The value of metric `name` in the series labelled with `model` in `/metrics`; panics when absent.
pub async fn model_metric(server: &Server, name: &str, model: &str) -> f64 {
    let body = reqwest::get(server.url("/metrics")).await.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(model))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}
