//! The official `openai` Python package as the client, unmodified: chat (plain and streamed),
//! completions, embeddings (the SDK's default base64 path) and error mapping. The script lives in
//! `tests/python/sdk_check.py` and exits non-zero with a message on the first failed check.

use std::process::Command;

use hearth_tests::{repo_root, Server};

#[test]
fn the_openai_python_package_works_against_hearth() {
    let python = repo_root().join(".venv/bin/python");
    assert!(python.is_file(), "{} missing: run `make setup` (it installs the openai package)", python.display());
    let server = Server::start();
    let out = Command::new(python)
        .arg(repo_root().join("tests/python/sdk_check.py"))
        .arg(server.url("/v1"))
        .arg(repo_root().join("tests/fixtures/minilm_reference.json"))
        .output()
        .unwrap_or_else(|e| panic!("run python: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sdk_check failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}", server.log());
    assert!(stdout.contains("all openai SDK checks passed"), "{stdout}");
}
