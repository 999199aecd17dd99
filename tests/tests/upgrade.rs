//! Upgrades: state written by one release is opened by the next. `tests/fixtures/state-v1/` is a
//! state directory written by the release that introduced the state format (one vector store,
//! one file; `tests/fixtures/state-v1.md` says how it was made). The built binary must open a copy
//! and find the file by search; `hearth migrate --check` reports the format; a directory of a newer
//! format is refused at start-up with a message naming both formats.

use std::path::Path;

use hearth_tests::{get_json, hearth_command, post_json, repo_root, Options, Server};
use serde_json::{json, Value};

/// A copy of `from` (files and directories) at `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// A copy of the format-1 fixture in a new temporary directory: (the directory, the state path).
fn fixture_copy() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = dir.path().join("state");
    copy_dir(&repo_root().join("tests/fixtures/state-v1"), &state);
    let state = state.to_str().unwrap_or_else(|| panic!("non-UTF-8 temporary path")).to_owned();
    (dir, state)
}

fn migrate_check(state: &str) -> std::process::Output {
    hearth_command().args(["migrate", "--check"]).env("HEARTH__SERVER__STATE_DIR", state).output().unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn state_written_by_the_first_versioned_release_is_opened_and_searched() {
    let (_dir, state) = fixture_copy();
    let check = migrate_check(&state);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), format!("{state}: format 1, nothing to migrate"));

    let server = Server::start_with(Options { env: vec![("HEARTH__SERVER__STATE_DIR", state.as_str())], ..Options::default() });
    let (status, stores) = get_json(&server, "/v1/vector_stores").await;
    assert_eq!(status, 200, "{stores}");
    let store = stores["data"].as_array().into_iter().flatten().find(|s| s["name"] == "fixture").unwrap_or_else(|| panic!("no store `fixture`: {stores}\n{}", server.log()));
    assert_eq!(store["file_counts"]["completed"], 1, "{store}");
    let id = store["id"].as_str().unwrap_or_default();
    let (status, found) = post_json(&server, &format!("/v1/vector_stores/{id}/search"), &json!({"query": "When is the lighthouse lamp clock wound?"})).await;
    assert_eq!(status, 200, "{found}");
    let first: &Value = &found["data"][0];
    assert_eq!(first["filename"], "lighthouse.txt", "{found}");
    assert!(first["content"][0]["text"].as_str().is_some_and(|t| t.contains("winds the lamp clock every evening at nine")), "{found}");
    // Keyword search reads the tantivy index of the fixture too.
    let (status, found) = post_json(&server, &format!("/v1/vector_stores/{id}/search"), &json!({"query": "Skerry", "search_mode": "keyword"})).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["data"][0]["filename"], "lighthouse.txt", "{found}");
    drop(server);
    // Opening it kept the format.
    let manifest = std::fs::read_to_string(Path::new(&state).join("VERSION")).unwrap_or_default();
    assert!(manifest.lines().any(|l| l.trim() == "format = 1"), "{manifest}");
}

#[test]
fn a_state_directory_of_a_newer_format_is_refused_with_both_formats_named() {
    let (_dir, state) = fixture_copy();
    std::fs::write(Path::new(&state).join("VERSION"), "format = 2\nwritten_by = \"hearth 9.9.9 (commit 0123456789ab)\"\n").unwrap_or_else(|e| panic!("{e}"));
    let check = migrate_check(&state);
    assert_eq!(check.status.code(), Some(1));
    let message = String::from_utf8_lossy(&check.stderr);
    assert!(message.contains("has format 2 (written by hearth 9.9.9") && message.contains("newer than format 1"), "{message}");

    let refused = Server::spawn(Options { env: vec![("HEARTH__SERVER__STATE_DIR", state.as_str())], ..Options::default() });
    let (status, log) = match refused {
        Ok(server) => server.wait_exit(),
        Err((status, log)) => (status.unwrap_or_else(|| panic!("no exit status:\n{log}")), log),
    };
    assert!(!status.success(), "{log}");
    assert!(log.contains("has format 2") && log.contains("does not downgrade state"), "{log}");
    // Nothing was written over the newer state.
    let manifest = std::fs::read_to_string(Path::new(&state).join("VERSION")).unwrap_or_default();
    assert!(manifest.starts_with("format = 2"), "{manifest}");
}
