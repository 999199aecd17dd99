//! Every document format hearth reads, end to end through the watched folder of the real binary
//! with the real models: DOCX, PPTX, XLSX, ODS, ODT, EPUB, e-mail (its attachment becomes a document
//! of its own), a scanned (image-only) PDF read by OCR, a PDF whose cross-reference table
//! pdf-extract cannot read (PDFium takes over), and a zip-bomb DOCX refused with a clear reason.
//! The files are made by `tests/python/make_documents.py` with the libraries people's files come
//! from; each phrase must come back on the page (slide, sheet, chapter) that file put it on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hearth_tests::{get_json as get, post_json as post, repo_root, Options, Server};
use serde_json::{json, Value};

/// Watched folders settle fast in tests.
const FAST_WATCH: &str = "[ingest]\nstable_seconds = 0.3\nrescan_seconds = 0.5\n";

fn make_documents(dir: &std::path::Path) -> Value {
    let python = repo_root().join(".venv/bin/python");
    let script = repo_root().join("tests/python/make_documents.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run `make test-tools` to install tests/requirements.txt)", python.display()));
    assert!(out.status.success(), "make_documents.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

async fn inbox_files(server: &Server, vs: &str) -> Vec<Value> {
    let (_, v) = get(server, &format!("/v1/vector_stores/{vs}/files?limit=100")).await;
    v["data"].as_array().cloned().unwrap_or_default()
}

/// The files' names by id, from the Files API.
async fn names(server: &Server) -> HashMap<String, String> {
    let (_, v) = get(server, "/v1/files").await;
    v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| (f["id"].as_str().unwrap_or_default().to_owned(), f["filename"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

#[tokio::test]
async fn every_format_is_cited_on_its_page() {
    let docs = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let expected = make_documents(docs.path());
    let expected = expected.as_object().cloned().unwrap_or_default();
    let server = Server::start_with(Options { config: Some(FAST_WATCH), ..Options::default() });
    let started = Instant::now();
    for name in expected.keys() {
        let src = docs.path().join(name);
        if src.exists() {
            std::fs::copy(&src, server.inbox().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    // The inbox store, then every file (the attachment included) out of in_progress.
    let deadline = Instant::now() + Duration::from_secs(300);
    let (vs, files) = loop {
        let (_, v) = get(&server, "/v1/vector_stores").await;
        let vs = v["data"].as_array().into_iter().flatten().find(|s| s["name"] == "inbox").and_then(|s| s["id"].as_str()).map(str::to_owned);
        if let Some(vs) = vs {
            let files = inbox_files(&server, &vs).await;
            let names = names(&server).await;
            let named: HashMap<String, Value> = files
                .into_iter()
                .filter_map(|f| Some((names.get(f["id"].as_str()?)?.clone(), f)))
                .collect();
            let done = expected.keys().all(|n| named.get(n).is_some_and(|f| f["status"] != "in_progress"));
            if done {
                break (vs, named);
            }
        }
        assert!(Instant::now() < deadline, "not every file was ingested in 300 s\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("{} files ingested in {:.1} s", files.len(), started.elapsed().as_secs_f64());

    for (name, want) in &expected {
        let file = &files[name];
        if let Some(reason) = want.get("error").and_then(Value::as_str) {
            assert_eq!(file["status"], "failed", "{name}: {file}");
            let message = file["last_error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(reason), "{name}: {message:?} should say {reason:?}");
            continue;
        }
        assert_eq!(file["status"], "completed", "{name}: {file}\n{}", server.log());
        let id = file["id"].as_str().unwrap_or_default();
        let (status, content) = get(&server, &format!("/v1/vector_stores/{vs}/files/{id}/content")).await;
        assert_eq!(status, 200, "{content}");
        let chunks = content["data"].as_array().cloned().unwrap_or_default();
        if let Some(words) = want.get("words").and_then(Value::as_array) {
            // The scanned PDF: at least 95 % of the source's words come back, on page 1.
            let text: String = chunks.iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join(" ");
            let found = words.iter().filter_map(Value::as_str).filter(|w| text.contains(*w)).count();
            assert!(found * 100 >= words.len() * 95, "{name}: {found} of {} words recognized in {text:?}", words.len());
            assert!(chunks.iter().all(|c| c["page"] == 1), "{name}: {chunks:?}");
            assert_eq!(file["attributes"]["parser"], "ocr", "{name}: {file}");
            continue;
        }
        for (phrase, page) in want.as_object().into_iter().flatten() {
            let hit = chunks.iter().find(|c| c["text"].as_str().is_some_and(|t| t.contains(phrase.as_str())));
            let hit = hit.unwrap_or_else(|| panic!("{name}: {phrase:?} in no chunk: {chunks:?}"));
            assert_eq!(&hit["page"], page, "{name}: {phrase:?} cited on the wrong page: {hit}");
        }
    }
    // The engine that read each file is recorded on it.
    assert_eq!(files["broken.pdf"]["attributes"]["parser"], "pdfium", "{}", files["broken.pdf"]);
    assert_eq!(files["report.docx"]["attributes"]["parser"], "docx");
    // The e-mail's attachment is a document of its own that points back at the message.
    assert_eq!(files["orchard.txt"]["attributes"]["attachment_of"], files["mail.eml"]["id"], "{}", files["orchard.txt"]);
    // Chunk attributes: a slide's title is the page label, an OCR page says so.
    let (status, v) = post(&server, &format!("/v1/vector_stores/{vs}/search"), &json!({"query": "giraffe necks", "max_num_results": 3})).await;
    assert_eq!(status, 200, "{v}");
    let hit = v["data"].as_array().into_iter().flatten().find(|h| h["filename"] == "deck.pptx").cloned().unwrap_or_default();
    assert_eq!(hit["attributes"]["page_label"], "Beta review", "{v}");
    let (_, v) = post(&server, &format!("/v1/vector_stores/{vs}/search"), &json!({"query": "invoices for office chairs", "max_num_results": 5})).await;
    let hit = v["data"].as_array().into_iter().flatten().find(|h| h["filename"] == "scan.pdf").cloned().unwrap_or_default();
    assert_eq!(hit["attributes"]["ocr"], true, "{v}");
}
