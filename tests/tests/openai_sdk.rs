//! The official `openai` Python package as the client, unmodified: chat (plain and streamed),
//! completions, embeddings (the SDK's default base64 path) and error mapping. The script lives in
//! `tests/python/sdk_check.py` and exits non-zero with a message on the first failed check.

use hearth_tests::{repo_root, run_python_check, Server};

#[test]
fn the_openai_python_package_works_against_hearth() {
    let server = Server::start();
    let (url, reference) = (server.url("/v1"), repo_root().join("tests/fixtures/minilm_reference.json"));
    run_python_check(&server, "sdk_check.py", &[url.as_ref(), reference.as_os_str()], "all openai SDK checks passed");
}
