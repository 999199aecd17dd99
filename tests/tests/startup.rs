//! Start-up and configuration as an operator meets them: `hearth validate`, `--version`, layered
//! settings, API keys, and models that are missing, corrupt or not the pinned file.

use std::io::{Read, Write};
use std::process::Output;

use hearth_tests::{hearth_command, Options, Server};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    hearth_command().args(args).envs(env.iter().copied()).output().unwrap_or_else(|e| panic!("run hearth: {e}"))
}

fn write_config(dir: &tempfile::TempDir, toml: &str) -> String {
    let path = dir.path().join("hearth.toml");
    std::fs::write(&path, toml).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_is_printed() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    // The first line; then the commit and the llama.cpp tree (tests/tests/first_hour.rs checks those).
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().next(), Some(format!("hearth {}", env!("CARGO_PKG_VERSION")).as_str()));
}

#[test]
fn validate_accepts_the_default_configuration() {
    let out = run(&["validate"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn validate_names_a_misspelt_key_and_its_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write_config(&dir, "[server]\nlisten_adress = \"127.0.0.1:9000\"\n");
    let out = run(&["validate", "--config", &path], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("server.listen_adress") && err.contains(&path), "{err}");
}

#[test]
fn validate_names_a_misspelt_environment_variable() {
    let out = run(&["validate"], &[("HEARTH__SERVER__LISTN", "127.0.0.1:9000")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("server.listn") && err.contains("environment"), "{err}");
}

#[test]
fn validate_names_invalid_vector_index_settings() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write_config(&dir, "[store]\nconnectivity = 1\n");
    let out = run(&["validate", "--config", &path], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("store.connectivity"), "{}", stderr(&out));

    let out = run(&["validate"], &[("HEARTH__STORE__QUANTIZATION", "i4")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("store.quantization"), "{}", stderr(&out));

    let out = run(&["validate"], &[("HEARTH__STORE__QUANTIZATION", "i8"), ("HEARTH__STORE__EXPANSION_SEARCH", "128")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn validate_names_an_invalid_value() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write_config(&dir, "[server]\nmax_body_bytes = \"lots\"\n");
    let out = run(&["validate", "--config", &path], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("server.max_body_bytes"), "{err}");

    let out = run(&["validate"], &[("HEARTH__SERVER__LISTEN", "not-an-address")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("server.listen"), "{}", stderr(&out));

    let out = run(&["validate", "--config", "/nonexistent/hearth.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/hearth.toml"));
}

#[test]
fn validate_names_an_invalid_engine_setting() {
    let out = run(&["validate"], &[("HEARTH__ENGINE__MAX_DECODE_SLOWDOWN", "0.5")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("engine.max_decode_slowdown") && err.contains("0.5"), "{err}");
    let out = run(&["validate"], &[("HEARTH__ENGINE__MAX_DECODE_SLOWDOWN", "2")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_non_loopback_address_needs_an_api_key() {
    let out = run(&["serve"], &[("HEARTH__SERVER__LISTEN", "0.0.0.0:0")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("server.listen") && err.contains("api_keys"), "{err}");
    let every_interface = [("HEARTH__SERVER__LISTEN", "0.0.0.0:0"), ("HEARTH__SERVER__API_KEYS", "a-long-secret-key")];
    let names = run(&["validate"], &every_interface);
    assert_eq!(names.status.code(), Some(2));
    assert!(stderr(&names).contains("server.allowed_hosts"), "every interface needs the names clients use: {}", stderr(&names));
    let ok = run(&["validate"], &[every_interface[0], every_interface[1], ("HEARTH__SERVER__ALLOWED_HOSTS", "hearth.lan,10.1.2.3")]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn environment_overrides_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write_config(&dir, "[server]\nlisten = \"127.0.0.1:7000\"\n");
    let out = run(&["validate", "--config", &path], &[("HEARTH__SERVER__LISTEN", "127.0.0.1:9000")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:9000"), "{}", stderr(&out));
    let out = run(&["validate", "--config", &path], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:7000"));
}

fn model_config(path: &str, sha: Option<&str>) -> String {
    let sha = sha.map(|s| format!("sha256 = \"{s}\"\n")).unwrap_or_default();
    format!("[[models]]\nname = \"broken\"\nkind = \"chat\"\npath = \"{path}\"\n{sha}")
}

#[test]
fn a_missing_model_file_is_a_clean_start_up_error() {
    let config = model_config("/nonexistent/model.gguf", None);
    let server = Server::spawn(Options { config: Some(&config), ..Options::default() });
    let (status, log) = match server {
        Ok(s) => s.wait_exit(),
        Err((status, log)) => (status.unwrap_or_else(|| panic!("no status")), log),
    };
    assert!(!status.success());
    assert!(log.contains("/nonexistent/model.gguf"), "{log}");
}

#[test]
fn a_corrupt_model_is_a_clean_start_up_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let bad = dir.path().join("corrupt.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00 definitely not a model").unwrap_or_else(|e| panic!("{e}"));
    let config = model_config(&bad.display().to_string(), None);
    let (status, log) = match Server::spawn(Options { config: Some(&config), ..Options::default() }) {
        Ok(s) => s.wait_exit(),
        Err((status, log)) => (status.unwrap_or_else(|| panic!("no status")), log),
    };
    assert!(!status.success());
    // The fit reads the GGUF header before llama.cpp sees the file, and says what is wrong with it.
    assert!(log.contains("start-up failed: model `broken`") && log.contains("corrupt.gguf: malformed GGUF header"), "{log}");
}

#[test]
fn a_model_that_is_not_the_pinned_file_is_refused() {
    let config = model_config("models/all-MiniLM-L6-v2.f16.gguf", Some(&"0".repeat(64)));
    let (status, log) = match Server::spawn(Options { config: Some(&config), ..Options::default() }) {
        Ok(s) => s.wait_exit(),
        Err((status, log)) => (status.unwrap_or_else(|| panic!("no status")), log),
    };
    assert!(!status.success());
    assert!(log.contains("sha256") && log.contains("refusing"), "{log}");
}

/// Send headers that promise a large body and never send it: the reply must come anyway.
fn status_without_body(server: &Server, auth: Option<&str>) -> u16 {
    let host = server.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("{e}"));
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap_or_else(|e| panic!("{e}"));
    let auth = auth.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap_or_else(|e| panic!("no reply before the body was sent: {e}"));
    String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0)
}

#[tokio::test]
async fn api_keys_are_checked_before_the_body_is_read() {
    let server = Server::start_with(Options { env: vec![("HEARTH__SERVER__API_KEYS", "first-secret-key,second-secret-key")], ..Options::default() });
    assert_eq!(status_without_body(&server, None), 401);
    assert_eq!(status_without_body(&server, Some("wrong-secret-key")), 401);
    let c = reqwest::Client::new();
    let models = |key: Option<&'static str>| {
        let mut r = c.get(server.url("/v1/models"));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        async move { r.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    assert_eq!(models(None).await, 401);
    assert_eq!(models(Some("second-secret-key")).await, 200);
    assert_eq!(models(Some("first-secret-key")).await, 200);
    let health = c.get(server.url("/health")).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(health, 200, "probes stay open");
    let body = c.get(server.url("/v1/models")).send().await.unwrap_or_else(|e| panic!("{e}"));
    let err: serde_json::Value = body.json().await.unwrap_or_default();
    assert_eq!(err["error"]["type"], "authentication_error");
}
