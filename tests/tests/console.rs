//! The web console as a browser meets it, against the real binary with API keys.
//!
//! - Headers and content: `/` and every asset it reaches (the stylesheet, the icon, and each
//!   JavaScript module with the modules it imports) come with the strict Content-Security-Policy,
//!   `nosniff` and the cache headers (`no-cache` for the page, a year `immutable` for the
//!   versioned assets); no asset names an `http://` or `https://` URL (the one exception is the
//!   SVG namespace, an identifier that is never fetched); assets need no key but pass the Host
//!   guard; a wrong version or name is 404; the console's session endpoint tells a key's scope;
//!   and a same-origin `Origin` (the console's own POSTs) passes the guard where another origin
//!   does not. `hearth routes` lists the console's routes.
//! - In a real headless Chromium (`tests/python/console_check.py`, selenium with Debian's
//!   chromium and chromedriver): the key prompt, uploading a PDF, a streamed answer with a
//!   "file, page" citation, the page preview with the passage marked, models, metrics, a read
//!   key's disabled controls, a phone-width layout. Screenshots go to `target/console-screenshots/`.
//!   The citation's preview shows the PDF page as an image (fetched with the key, shown from a
//!   blob: URL) whose alt text names the page, above the text.
//! - The page image route itself over plain HTTP: `GET /v1/files/{id}/pages/{page}/image` is a
//!   PNG of the requested width with private caching and says whether the passage was found; a
//!   page out of range and an unknown file are 404, a Markdown file, page 0 and a passage over
//!   2,000 characters are 400 in OpenAI's error shape, and no key is 401.

use std::collections::BTreeSet;

use hearth_tests::{file_form, hearth_command, repo_root, run_python_check, Options, Server};
use reqwest::header::{HeaderMap, CACHE_CONTROL, CONTENT_TYPE};

const ADMIN: &str = "console-admin-key-000000000001";
const READ: &str = "console-read-key-0000000000001";
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// The SVG namespace: an identifier in `createElementNS` and `xmlns`, never fetched.
const SVG_NS: &str = "http://www.w3.org/2000/svg";

fn config() -> String {
    format!("[server]\napi_keys = [\"{ADMIN}\", {{ key = \"{READ}\", scope = \"read\" }}]\n")
}

fn start() -> Server {
    let config = config();
    Server::start_with(Options { config: Some(&config), ..Options::default() })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// The URLs (`/console/...`) a page or a module names: `href`/`src` attributes and `./x.js` imports.
fn references(text: &str, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in text.split(['"', '\'']) {
        if piece.starts_with("/console/") {
            out.push(piece.to_owned());
        } else if let Some(name) = piece.strip_prefix("./") {
            if name.ends_with(".js") && !name.contains('/') {
                out.push(format!("{base}{name}"));
            }
        }
    }
    out
}

#[tokio::test]
async fn console_assets_have_strict_headers_and_no_remote_urls() {
    let server = start();
    let client = reqwest::Client::new();

    // The page: no key needed, strict headers, revalidated on every load.
    let page = client.get(server.url("/")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(header(&headers, "content-security-policy"), CSP);
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(&headers, CACHE_CONTROL.as_str()), "no-cache");
    assert!(header(&headers, CONTENT_TYPE.as_str()).starts_with("text/html"));
    let html = page.text().await.unwrap_or_default();
    assert!(!html.contains("<script>") && !html.contains(" style=") && !html.contains("<style"), "no inline script or style in the page");

    // Every asset the page reaches, modules through their imports.
    let first = references(&html, "");
    let version_dir = first.iter().find(|u| u.ends_with(".js")).and_then(|u| u.rsplit_once('/')).map(|(dir, _)| format!("{dir}/")).unwrap_or_else(|| panic!("no script in {html}"));
    let mut todo: Vec<String> = first;
    let mut seen = BTreeSet::new();
    let mut total = html.len();
    while let Some(url) = todo.pop() {
        if !seen.insert(url.clone()) {
            continue;
        }
        assert!(url.starts_with(&version_dir), "{url} is not under this build's {version_dir}");
        let r = client.get(server.url(&url)).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(r.status(), 200, "{url}");
        let h = r.headers().clone();
        assert_eq!(header(&h, "content-security-policy"), CSP, "{url}");
        assert_eq!(header(&h, "x-content-type-options"), "nosniff", "{url}");
        assert_eq!(header(&h, CACHE_CONTROL.as_str()), "public, max-age=31536000, immutable", "{url}");
        let kind = header(&h, CONTENT_TYPE.as_str()).to_owned();
        let expected = match url.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("svg") => "image/svg+xml",
            other => panic!("{url}: unexpected asset type {other:?}"),
        };
        assert!(kind.starts_with(expected), "{url}: {kind}");
        let text = r.text().await.unwrap_or_default();
        total += text.len();
        let scrubbed = text.replace(SVG_NS, "");
        assert!(!scrubbed.contains("http://") && !scrubbed.contains("https://"), "{url} names a remote URL");
        assert!(!scrubbed.contains("//cdn") && !scrubbed.contains("@import") && !scrubbed.contains("url(http"), "{url} loads something from elsewhere");
        if url.ends_with(".js") {
            todo.extend(references(&text, &version_dir));
        }
    }
    for module in ["app.js", "api.js", "ask.js", "preview.js", "library.js", "models.js", "metrics.js", "prometheus.js", "reports.js", "console.css"] {
        assert!(seen.contains(&format!("{version_dir}{module}")), "{module} is not reached from the page: {seen:?}");
    }
    assert!(total < 300 * 1024, "the console is {total} bytes");

    // A stale version or an unknown name: 404, not some other file.
    for wrong in ["/console/000000000000/app.js".to_owned(), format!("{version_dir}nope.js"), format!("{version_dir}..%2Fmod.rs")] {
        assert_eq!(client.get(server.url(&wrong)).send().await.map(|r| r.status().as_u16()).unwrap_or(0), 404, "{wrong}");
    }

    // The Host guard applies to the assets too.
    let rebound = client.get(server.url("/")).header("host", "rebind.attacker.example").send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rebound.status(), 403);

    // The session: a key is needed; it tells the scope and the watched folder.
    let session = |key: Option<&'static str>| {
        let mut r = client.get(server.url("/v1/console/session"));
        if let Some(key) = key {
            r = r.bearer_auth(key);
        }
        r.send()
    };
    assert_eq!(session(None).await.map(|r| r.status().as_u16()).unwrap_or(0), 401);
    let read: serde_json::Value = session(Some(READ)).await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
    assert_eq!((read["scope"].as_str(), read["keys_required"].as_bool()), (Some("read"), Some(true)), "{read}");
    assert_eq!(read["watched_folders"][0]["vector_store"], "inbox", "{read}");
    let admin: serde_json::Value = session(Some(ADMIN)).await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
    assert_eq!(admin["scope"], "admin");

    // The console's own POSTs carry its origin: same origin passes, another does not.
    let host = server.base.trim_start_matches("http://").to_owned();
    let create = |origin: String| client.post(server.url("/v1/vector_stores")).bearer_auth(ADMIN).header("origin", origin).json(&serde_json::json!({"name": "from-console"})).send();
    assert_eq!(create(format!("http://{host}")).await.map(|r| r.status().as_u16()).unwrap_or(0), 200);
    assert_eq!(create("http://evil.example".to_owned()).await.map(|r| r.status().as_u16()).unwrap_or(0), 403);

    // `hearth routes` lists the console.
    let routes = hearth_command().arg("routes").output().unwrap_or_else(|e| panic!("hearth routes: {e}"));
    let listed = String::from_utf8_lossy(&routes.stdout);
    for route in ["GET /", "GET /console/{version}/{name}", "GET /v1/console/session"] {
        assert!(listed.lines().any(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ") == route), "{route} not in:\n{listed}");
    }
}

/// `POST /v1/files` with the admin key; the new file's id.
async fn upload(server: &Server, name: &str, content: &[u8]) -> String {
    let (content_type, body) = file_form(name, content);
    let r = reqwest::Client::new()
        .post(server.url("/v1/files"))
        .bearer_auth(ADMIN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("upload {name}: {e}"));
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    v["id"].as_str().unwrap_or_else(|| panic!("upload {name}: {v}")).to_owned()
}

/// The width and height a PNG's header states.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 24, "not a PNG: {:?}", &png[..png.len().min(16)]);
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (be(16), be(20))
}

#[tokio::test]
async fn page_images_of_pdfs_with_the_passage_highlighted() {
    let server = start();
    let client = reqwest::Client::new();
    let pdf = upload(&server, "three_pages.pdf", &std::fs::read(repo_root().join("ingest/tests/fixtures/three_pages.pdf")).unwrap_or_default()).await;
    let notes = upload(&server, "notes.md", b"# Notes\n\nThe secret launch code is not here.\n").await;
    let get = |path: String, key: Option<&'static str>| {
        let mut r = client.get(server.url(&path));
        if let Some(key) = key {
            r = r.bearer_auth(key);
        }
        r.send()
    };
    let passage = "The secret launch code on page two is ZEBRA-4817.";
    let image = |page: &str, highlight: &str| format!("/v1/files/{pdf}/pages/{page}/image?width=600&highlight={}", highlight.replace(' ', "%20"));

    // Page 2 with its passage: a PNG 600 px wide, privately cached, the passage found.
    let r = get(image("2", passage), Some(READ)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(header(&h, CONTENT_TYPE.as_str()), "image/png");
    assert_eq!(header(&h, CACHE_CONTROL.as_str()), "private, max-age=3600");
    assert_eq!(header(&h, "x-hearth-highlight"), "whole");
    assert_eq!(header(&h, "x-hearth-page-count"), "3");
    let two = r.bytes().await.unwrap_or_default();
    let (w, height) = png_size(&two);
    assert_eq!(w, 600);
    assert!((840..=860).contains(&height), "A4 at 600 px wide: {height}");

    // The same passage is not on page 1; page 1 is another picture.
    let r = get(image("1", passage), Some(READ)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.status().as_u16(), header(&r.headers().clone(), "x-hearth-highlight").to_owned()), (200, "not-found".to_owned()));
    let one = r.bytes().await.unwrap_or_default();
    assert_ne!(one, two);

    // Errors, each in OpenAI's shape with what is wrong.
    let error = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        (status, v["error"]["message"].as_str().unwrap_or_default().to_owned(), v["error"]["param"].as_str().map(str::to_owned))
    };
    let (status, message, _) = error(get(image("999", ""), Some(READ)).await.unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("page 999") && message.contains("3 page(s)"), "{message}");
    let (status, message, _) = error(get(format!("/v1/files/{notes}/pages/1/image"), Some(READ)).await.unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("only for PDFs") && message.contains("chunk text"), "{message}");
    let (status, message, _) = error(get("/v1/files/file-00000000000000000000000000000000/pages/1/image".into(), Some(READ)).await.unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(status, 404, "{message}");
    for page in ["0", "two"] {
        let (status, message, param) = error(get(image(page, ""), Some(READ)).await.unwrap_or_else(|e| panic!("{e}"))).await;
        assert_eq!((status, param.as_deref()), (400, Some("page")), "{page}: {message}");
    }
    let (status, message, param) = error(get(image("2", &"a".repeat(2001)), Some(READ)).await.unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!((status, param.as_deref()), (400, Some("highlight")), "{message}");
    assert_eq!(get(image("2", passage), None).await.map(|r| r.status().as_u16()).unwrap_or(0), 401);

    let routes = hearth_command().arg("routes").output().unwrap_or_else(|e| panic!("hearth routes: {e}"));
    let listed = String::from_utf8_lossy(&routes.stdout);
    assert!(listed.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()[..].starts_with(&["GET", "/v1/files/{id}/pages/{page}/image", "read"])), "{listed}");
}

#[test]
fn the_console_works_in_headless_chromium() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(std::path::Path::new(tool).is_file(), "{tool} is missing: `make test` installs chromium and chromium-driver (apt)");
    }
    let server = start();
    let shots = repo_root().join("target/console-screenshots");
    println!("console screenshots: {}", shots.display());
    // The README's sample: a greedy answer about page 2's salt shares its words, so it is cited.
    let pdf = repo_root().join("examples/bread-guide.pdf");
    run_python_check(&server, "console_check.py", &[server.base.as_str(), ADMIN, READ, &pdf.to_string_lossy(), &shots.to_string_lossy()], "all console checks passed");
}
