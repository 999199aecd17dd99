//! A new user's first hour, against the real binary and models: the README's quickstart run
//! literally (the commands between its `<!-- quickstart -->` markers), `hearth status` and its
//! `--json`, `hearth ask`'s citations, `[[models]]` merged by name, `serve --model/--listen/--port`,
//! a configuration without an embedding model, `HEARTH_API_KEY`, and the binary's own
//! `completions`, `man` and `--version`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use hearth_tests::{hearth_bin, hearth_command, repo_root, Options, Server};
use serde_json::Value;

const SAMPLE: &str = "bread-guide.pdf";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `hearth ARGS` from the repository root (no `HEARTH__*` from the test's environment), with `env`.
fn hearth(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = hearth_command();
    cmd.args(args).env_remove("HEARTH_API_KEY").envs(env.iter().copied());
    cmd.output().unwrap_or_else(|e| panic!("run hearth: {e}"))
}

/// `host:port` of a server's base URL.
fn addr(server: &Server) -> &str {
    server.base.trim_start_matches("http://")
}

/// The shell commands between `<!-- quickstart -->` and `<!-- /quickstart -->` in README.md:
/// the lines of its code blocks, `\`-continued lines joined, comments and blank lines dropped.
fn quickstart_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap_or_else(|e| panic!("README.md: {e}"));
    let start = readme.find("<!-- quickstart -->").unwrap_or_else(|| panic!("README.md has no <!-- quickstart --> marker"));
    let end = readme[start..].find("<!-- /quickstart -->").map(|i| start + i).unwrap_or_else(|| panic!("README.md has no <!-- /quickstart --> marker"));
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in readme[start..end].lines().filter(|l| !l.trim_start().starts_with("```") && !l.contains("quickstart -->")) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

#[test]
fn the_readme_quickstart_runs_verbatim_and_ends_with_a_cited_answer() {
    let commands = quickstart_commands();
    assert!(commands.len() >= 3, "the quickstart block is too short: {commands:?}");
    assert!(commands.iter().any(|c| c.contains("hearth ask")), "{commands:?}");
    // `make run` is this server: the default configuration, its watched folder `inbox` in a
    // temporary directory, on a free port.
    let server = Server::start();
    let mut outputs = Vec::new();
    for command in &commands {
        let command = command
            .replace("inbox/", &format!("{}/", server.inbox().display()))
            .replace("./target/release/hearth", &hearth_bin().display().to_string())
            .replace("http://127.0.0.1:8080", &server.base);
        // The client commands find the daemon the way a user's do: the configured address (the
        // environment layer here), no --target.
        let out = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(repo_root())
            .env("HEARTH__SERVER__LISTEN", addr(&server))
            .env_remove("HEARTH_API_KEY")
            .output()
            .unwrap_or_else(|e| panic!("sh: {e}"));
        assert!(out.status.success(), "`{command}` failed ({:?}):\n{}\n{}\nserver log:\n{}", out.status, text(&out.stdout), text(&out.stderr), server.log());
        outputs.push((command, text(&out.stdout)));
    }
    let output_of = |needle: &str| outputs.iter().find(|(c, _)| c.contains(needle)).map(|(_, o)| o.as_str()).unwrap_or_else(|| panic!("no `{needle}` command"));
    let status = output_of("hearth status");
    assert!(status.lines().any(|l| l.contains(SAMPLE) && l.contains("completed")), "{status}");
    let answer = output_of("hearth ask");
    let sources = answer.split("Sources:").nth(1).unwrap_or_else(|| panic!("no Sources in:\n{answer}"));
    let cited = sources.lines().filter_map(|l| l.split_once(&format!("{SAMPLE}, page "))).filter_map(|(_, page)| page.trim().parse::<u32>().ok());
    assert!(cited.clone().count() >= 1 && cited.clone().all(|p| (1..=3).contains(&p)), "no citation of {SAMPLE} with a page in:\n{answer}");
    if let Some((_, curl)) = outputs.iter().find(|(c, _)| c.starts_with("curl")) {
        let response: Value = serde_json::from_str(curl).unwrap_or_else(|e| panic!("curl's answer is not JSON ({e}):\n{curl}"));
        let annotations: Vec<&Value> = response["output"].as_array().into_iter().flatten().flat_map(|item| item["content"].as_array().into_iter().flatten()).flat_map(|c| c["annotations"].as_array().into_iter().flatten()).collect();
        assert!(annotations.iter().any(|a| a["filename"] == SAMPLE && a["page"].as_u64().is_some()), "{response}");
    }
}

#[test]
fn status_json_has_models_devices_stores_and_each_files_progress() {
    let server = Server::start();
    std::fs::copy(repo_root().join("examples").join(SAMPLE), server.inbox().join(SAMPLE)).unwrap_or_else(|e| panic!("copy: {e}"));
    let out = hearth(&["status", "--json", "--target", &server.base, "--wait-for", SAMPLE, "--timeout", "120"], &[]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(status["ready"], true, "{status}");
    let kinds: Vec<&str> = status["models"].as_array().into_iter().flatten().filter_map(|m| m["kind"].as_str()).collect();
    assert!(kinds.contains(&"chat") && kinds.contains(&"embedding"), "{status}");
    assert!(status["devices"].as_array().is_some_and(|d| d.iter().any(|d| d["type"] == "cpu")), "{status}");
    assert_eq!(status["watched_folder"]["on"], true, "{status}");
    let folder = &status["watched_folder"]["folders"][0];
    assert!(folder["path"].as_str().is_some_and(|p| p.ends_with("inbox")) && folder["vector_store"] == "inbox", "{status}");
    let inbox = status["vector_stores"].as_array().into_iter().flatten().find(|s| s["name"] == "inbox").unwrap_or_else(|| panic!("no inbox store: {status}"));
    let file = &inbox["files"][0];
    assert_eq!((file["filename"].as_str(), file["status"].as_str(), file["chunk_count"].as_u64()), (Some(SAMPLE), Some("completed"), Some(3)), "{status}");
    assert_eq!(status["ingestion"]["completed"], 1, "{status}");
    // A file that never comes: the wait ends with exit 1 and says so.
    let out = hearth(&["status", "--target", &server.base, "--wait-for", "absent.pdf", "--timeout", "1"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("absent.pdf is not ingested after 1 s"), "{}", text(&out.stderr));
    // No daemon there: a clear error naming the address.
    let out = hearth(&["status", "--target", "http://127.0.0.1:9"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot reach http://127.0.0.1:9"), "{}", text(&out.stderr));
}

#[test]
fn without_an_embedding_model_start_up_warns_and_status_says_the_folder_is_off() {
    let config = "replace_default_models = true\n[[models]]\nname = \"smollm2-135m-instruct\"\nkind = \"chat\"\npath = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"\nmax_model_len = 2048\nkv_cache_tokens = 2048\n";
    let server = Server::start_with(Options { config: Some(config), ..Options::default() });
    let log = server.log();
    assert!(log.contains("WARNING: no embedding model is configured") && log.contains("the watched folder") && log.contains("are OFF"), "{log}");
    let out = hearth(&["status", "--json", "--target", &server.base], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status["watched_folder"]["on"], false, "{status}");
    assert!(status["watched_folder"]["reason"].as_str().is_some_and(|r| r.contains("no embedding model")), "{status}");
    let out = hearth(&["status", "--target", &server.base], &[]);
    assert!(text(&out.stdout).contains("watched folder: off"), "{}", text(&out.stdout));
}

#[tokio::test]
async fn a_users_models_are_merged_with_the_defaults_by_name() {
    // A new chat model is added, the default embedding model is retuned by name: nothing is lost.
    let config = "[[models]]\nname = \"smol-second\"\nkind = \"chat\"\npath = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\"\nmax_model_len = 2048\nkv_cache_tokens = 2048\n\n[[models]]\nname = \"all-minilm-l6-v2\"\nmax_num_seqs = 4\n";
    let server = Server::start_with(Options { config: Some(config), ..Options::default() });
    let (_, models) = hearth_tests::get_json(&server, "/v1/models").await;
    let ids: Vec<&str> = models["data"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids.len(), 3, "{models}");
    for id in ["smollm2-135m-instruct", "all-minilm-l6-v2", "smol-second"] {
        assert!(ids.contains(&id), "{id} missing: {models}");
    }
    // The watched folder still works: it needs the embedding model the user's list kept.
    std::fs::write(server.inbox().join("note.txt"), "The lighthouse lamp is wound at nine every evening.").unwrap_or_else(|e| panic!("{e}"));
    let out = hearth(&["status", "--target", &server.base, "--wait-for", "note.txt", "--timeout", "120"], &[]);
    assert!(out.status.success(), "{}\n{}\n{}", text(&out.stdout), text(&out.stderr), server.log());
}

/// `hearth serve ARGS` (a configuration that watches nothing) until it prints its address.
struct Serve {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = dir.path().join("hearth.toml");
        std::fs::write(&config, "[ingest]\nwatch = []\n").unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::File::create(dir.path().join("log")).unwrap_or_else(|e| panic!("{e}"));
        let mut child = hearth_command()
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .args(args)
            .env("HEARTH__SERVER__STATE_DIR", dir.path().join("state"))
            .env("HEARTH__ENGINE__THREADS", "2")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let line = BufReader::new(stdout).lines().map_while(Result::ok).find_map(|l| l.strip_prefix("hearth listening on ").map(str::to_owned));
        let log_text = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        let base = line.unwrap_or_else(|| panic!("hearth serve {args:?} never listened:\n{}", log_text()));
        Serve { child, base, _dir: dir }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn serve_takes_model_listen_and_port() {
    // --listen over the environment's 127.0.0.1:0 (the harness default), --port over --listen's port.
    let serve = Serve::start(&["--model", "models/SmolLM2-135M-Instruct.Q4_1.gguf", "--listen", "127.0.0.3:9", "--port", "0"]);
    let base = serve.base.clone();
    let (host, port) = base.trim_start_matches("http://").rsplit_once(':').unwrap_or_default();
    assert_eq!(host, "127.0.0.3", "{base}");
    assert!(port.parse::<u16>().is_ok_and(|p| p != 9 && p != 0), "{base}");
    // While the models load, status answers (exit 0) with `ready: false` and the reason.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        let out = hearth(&["status", "--json", "--target", &base], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
        if status["ready"] == true {
            break status;
        }
        assert!(status["not_ready_reason"].is_string(), "{status}");
        assert!(std::time::Instant::now() < deadline, "not ready in 120 s: {status}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let models: Vec<(&str, &str)> = status["models"].as_array().into_iter().flatten().filter_map(|m| Some((m["id"].as_str()?, m["kind"].as_str()?))).collect();
    assert_eq!(models, [("SmolLM2-135M-Instruct.Q4_1", "chat"), ("all-minilm-l6-v2", "embedding")], "{status}");
    // A model path that is no file stops start-up, naming it.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("hearth.toml");
    std::fs::write(&config, "[ingest]\nwatch = []\n").unwrap_or_else(|e| panic!("{e}"));
    let state = dir.path().join("state");
    let out = hearth(
        &["--config", config.to_str().unwrap_or_default(), "serve", "--model", "models/absent.gguf", "--port", "0"],
        &[("HEARTH__SERVER__STATE_DIR", state.to_str().unwrap_or_default())],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("absent.gguf"), "{}", text(&out.stderr));
}

#[test]
fn the_api_key_comes_from_hearth_api_key() {
    let key = "first-hour-admin-key";
    let server = Server::start_with(Options { config: Some(&format!("[server]\napi_keys = [\"{key}\"]\n")), ..Options::default() });
    let without = hearth(&["status", "--target", &server.base], &[]);
    assert_eq!(without.status.code(), Some(1));
    assert!(text(&without.stderr).contains("HTTP 401"), "{}", text(&without.stderr));
    let with = hearth(&["status", "--target", &server.base], &[("HEARTH_API_KEY", key)]);
    assert!(with.status.success(), "{}", text(&with.stderr));
    assert!(text(&with.stdout).contains("ready"), "{}", text(&with.stdout));
    // The key never shows in the help (hide_env_values).
    let help = hearth(&["status", "--help"], &[("HEARTH_API_KEY", key)]);
    assert!(text(&help.stdout).contains("HEARTH_API_KEY") && !text(&help.stdout).contains(key), "{}", text(&help.stdout));
}

#[test]
fn client_commands_need_no_readable_configuration() {
    // A --config that cannot be read (as /etc/hearth/hearth.toml is for an ordinary user): the
    // target falls back to the default address instead of a configuration error.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let unreadable = dir.path().join("missing.toml");
    let out = hearth(&["--config", unreadable.to_str().unwrap_or_default(), "status", "--target", "http://127.0.0.1:9"], &[]);
    assert!(text(&out.stderr).contains("cannot reach http://127.0.0.1:9"), "{}", text(&out.stderr));
    let out = hearth(&["--config", unreadable.to_str().unwrap_or_default(), "status"], &[("HEARTH__SERVER__LISTEN", "127.0.0.1:9")]);
    assert!(text(&out.stderr).contains("cannot reach http://127.0.0.1:9/ready"), "{}", text(&out.stderr));
}

#[test]
fn completions_and_the_man_page_come_from_the_binary() {
    for (shell, marker) in [("bash", "_hearth()"), ("zsh", "#compdef hearth"), ("fish", "complete -c hearth")] {
        let out = hearth(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker) && script.contains("status") && script.contains("wait-for"), "{shell}:\n{script}");
    }
    let out = hearth(&["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("tcsh"), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let page = dir.path().join("hearth.1");
    let out = hearth(&["man", "--out", page.to_str().unwrap_or_default()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let roff = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{e}"));
    assert!(roff.contains(".TH hearth 1") && roff.contains("HEARTH SERVE") && roff.contains("HEARTH ASK") && roff.contains("\\-\\-wait\\-for"), "{roff}");
    assert!(!roff.contains("parse-worker") && !roff.contains("PARSE-WORKER"), "the hidden command is in the man page");
}

#[test]
fn version_names_the_commit_and_the_llama_cpp_tree() {
    let out = hearth(&["--version"], &[]);
    assert!(out.status.success());
    let version = text(&out.stdout);
    let lines: Vec<&str> = version.lines().collect();
    assert_eq!(lines.first().copied(), Some(format!("hearth {}", env!("CARGO_PKG_VERSION")).as_str()), "{version}");
    let commit = lines.iter().find_map(|l| l.strip_prefix("commit: ")).unwrap_or_else(|| panic!("no commit line: {version}"));
    if repo_root().join(".git").exists() {
        // A commit of this repository (the build may predate the newest one).
        assert!(commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()), "{version}");
        let known = Command::new("git").args(["cat-file", "-e", &format!("{commit}^{{commit}}")]).current_dir(repo_root()).status();
        assert!(known.is_ok_and(|s| s.success()), "{commit} is not a commit here");
    } else {
        assert_eq!(commit, "unknown");
    }
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).unwrap_or_default();
    let sys_version = lock.split("name = \"llama-cpp-sys-2\"\nversion = \"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_else(|| panic!("no llama-cpp-sys-2 in Cargo.lock"));
    let llama = lines.iter().find_map(|l| l.strip_prefix("llama.cpp: ")).unwrap_or_else(|| panic!("no llama.cpp line: {version}"));
    assert!(llama.starts_with(&format!("llama-cpp-sys-2 {sys_version}")), "{version}");
}
