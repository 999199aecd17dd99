//! The OpenAPI document and schemathesis against the live daemon.
//!
//! `/openapi.json` must describe every route of the route table (`hearth routes`), with the same
//! methods; then schemathesis (the real PyPI package, `tests/requirements.txt`) generates requests
//! from it against the real binary: no 5xx, answers that match the document, daemon alive. CI runs
//! a bounded number of cases per operation; `make fuzz-api` runs 10,000.

use std::collections::BTreeSet;

use hearth_tests::{hearth_command, repo_root, Options, Server};

/// Cases per operation in CI (about 40 operations).
const CI_CASES: &str = "12";
const KEY: &str = "openapi-test-admin-key";

/// `METHOD path` for every route `hearth routes` lists.
fn route_table() -> BTreeSet<String> {
    let out = hearth_command().arg("routes").output().unwrap_or_else(|e| panic!("hearth routes: {e}"));
    assert!(out.status.success(), "hearth routes failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some(format!("{} {}", parts.next()?, parts.next()?))
        })
        .collect()
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let server = Server::start();
    let r = reqwest::get(server.url("/openapi.json")).await.unwrap_or_else(|e| panic!("GET /openapi.json: {e}"));
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap_or_else(|e| panic!("not JSON: {e}"));
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "not OpenAPI 3.1: {}", doc["openapi"]);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap_or_else(|| panic!("no paths")) {
        for method in item.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            if ["get", "post", "delete", "put", "patch", "options", "head"].contains(&method.as_str()) {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    // A query string that does not parse is OpenAI's JSON 400 (actix alone answers text/plain).
    let r = reqwest::get(server.url("/v1/files?limit=-1")).await.unwrap_or_else(|e| panic!("GET /v1/files: {e}"));
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap_or_else(|e| panic!("the 400 is not JSON: {e}"));
    assert_eq!(body["error"]["code"], "invalid_value", "{body}");
    let routes = route_table();
    assert!(routes.len() >= 30, "the route table lists only {} routes", routes.len());
    let missing: Vec<_> = routes.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(missing.is_empty(), "routes missing from /openapi.json: {missing:?}");
    assert!(extra.is_empty(), "/openapi.json documents routes that do not exist: {extra:?}");
    // Every JSON body is described by a schema, so clients and fuzzers can generate it.
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        if let Some(body) = item.get("post").and_then(|op| op.get("requestBody")) {
            let content = &body["content"];
            assert!(content.get("application/json").or_else(|| content.get("multipart/form-data")).is_some_and(|c| c.get("schema").is_some()), "POST {path}: request body without a schema: {body}");
        }
    }
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let server = Server::start_with(Options { env: vec![("HEARTH__SERVER__API_KEYS", KEY)], ..Options::default() });
    let python = repo_root().join(".venv/bin/python");
    let out = std::process::Command::new(python)
        .arg(repo_root().join("tests/python/fuzz_api.py"))
        .args(["--url", &server.base, "--api-key", KEY, "--max-examples", CI_CASES, "--seed", "7"])
        .output()
        .unwrap_or_else(|e| panic!("run fuzz_api.py: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout.lines().find(|l| l.starts_with("fuzz-api:")).unwrap_or("(no summary)");
    eprintln!("{summary}");
    assert!(
        out.status.success() && stdout.contains("fuzz-api passed"),
        "schemathesis failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    let requests: u64 = summary.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(requests >= 100, "schemathesis sent only {requests} requests: {summary}");
}
