//! The model library as a user meets it: `hearth models import` of a GGUF and of an OCI image
//! layout written here (blobs, index.json, a manifest, tar layers with /models/model.gguf and a
//! whiteout), then the real daemon serving the imported model by library name and answering a
//! chat; `hearth models pull` from a local HTTP server that cuts the first download short (the
//! pull resumes with a Range request) and a wrong sha256 that publishes nothing; `hearth quantize`
//! of the embedding model (Q8_0 and Q4_K_M, cosine and recall@10 against the F16 source) and of
//! the chat model (requantized from Q4_1, perplexity against the source).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use hearth_tests::cli::{describe, run, sha256_file, stdout_json};
use hearth_tests::{get_json, post_json, repo_root, Options, Server};
use serde_json::Value;

const CHAT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const EMBED_MODEL: &str = "models/all-MiniLM-L6-v2.f16.gguf";

fn digest(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = dir.path().join("b");
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{e}"));
    sha256_file(&p)
}

/// A tar of `files` (path, bytes).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, *bytes).unwrap_or_else(|e| panic!("{e}"));
    }
    b.into_inner().unwrap_or_else(|e| panic!("{e}"))
}

/// An OCI image layout at `root`: each layer a blob, a manifest naming them, index.json naming it.
fn write_oci_layout(root: &Path, layers: &[Vec<u8>]) {
    let blobs = root.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("{e}"));
    let put = |bytes: &[u8]| {
        let d = digest(bytes);
        std::fs::write(blobs.join(&d), bytes).unwrap_or_else(|e| panic!("{e}"));
        format!("sha256:{d}")
    };
    let layer_descs: Vec<Value> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(l), "size": l.len()}))
        .collect();
    let config = put(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 37},
        "layers": layer_descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest), "size": manifest.len(),
         "annotations": {"org.opencontainers.image.ref.name": "smollm2:test"}}]});
    std::fs::write(root.join("index.json"), serde_json::to_vec(&index).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_gguf_and_oci_image_are_listed_verified_and_served_by_library_name() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = dir.path().join("state");
    let state_s = state.display().to_string();
    let chat = repo_root().join(CHAT_MODEL);

    // A plain GGUF.
    let started = Instant::now();
    let got = stdout_json(&run(&["models", "import", &chat.display().to_string(), "--name", "smol", "--state-dir", &state_s, "--json"]));
    println!("import of a {} MB GGUF: {:.2} s (wall {:.2} s)", got["entry"]["size"].as_u64().unwrap_or(0) / 1_000_000, got["seconds"].as_f64().unwrap_or(0.0), started.elapsed().as_secs_f64());
    assert_eq!(got["entry"]["sha256"].as_str(), Some(sha256_file(&chat).as_str()));
    assert_eq!(got["entry"]["quantization"], "Q4_1");

    // A ModelCar image: layer 1 has the model and a stale file, layer 2 whites the stale file out.
    let model_bytes = std::fs::read(&chat).unwrap_or_else(|e| panic!("{e}"));
    let layer1 = tar_of(&[("models/model.gguf", &model_bytes), ("models/stale.gguf", b"GGUF stale"), ("etc/os-release", b"ID=test")]);
    let layer2 = tar_of(&[("models/.wh.stale.gguf", b"")]);
    let layout = dir.path().join("modelcar");
    write_oci_layout(&layout, &[layer1, layer2]);
    let started = Instant::now();
    let got = stdout_json(&run(&["models", "import", &layout.display().to_string(), "--name", "car", "--state-dir", &state_s, "--json"]));
    println!("import of a {} MB OCI layout: {:.2} s (wall {:.2} s)", model_bytes.len() / 1_000_000, got["seconds"].as_f64().unwrap_or(0.0), started.elapsed().as_secs_f64());
    assert_eq!(got["entry"]["files"].as_array().map(Vec::len), Some(1), "the whiteout removed stale.gguf: {got}");
    assert_eq!(got["entry"]["sha256"].as_str(), Some(sha256_file(&chat).as_str()));
    assert!(got["entry"]["source"].as_str().is_some_and(|s| s.starts_with("oci:")));

    // The same name twice, a file that is not a model, a safetensors-only image: clear refusals.
    let again = run(&["models", "import", &chat.display().to_string(), "--name", "car", "--state-dir", &state_s]);
    assert_eq!(again.status.code(), Some(2), "{}", describe(&again));
    assert!(describe(&again).contains("already in the library"), "{}", describe(&again));
    let st_layout = dir.path().join("safetensors-car");
    write_oci_layout(&st_layout, &[tar_of(&[("models/model.safetensors", b"{}"), ("models/config.json", b"{}")])]);
    let refused = run(&["models", "import", &st_layout.display().to_string(), "--state-dir", &state_s]);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(describe(&refused).contains("converting safetensors is not supported") && describe(&refused).contains("model.safetensors"), "{}", describe(&refused));

    let listed = stdout_json(&run(&["models", "list", "--json", "--state-dir", &state_s]));
    let names: Vec<&str> = listed["data"].as_array().map(|a| a.iter().filter_map(|e| e["name"].as_str()).collect()).unwrap_or_default();
    assert_eq!(names, vec!["smol", "car"]);
    let shown = stdout_json(&run(&["models", "show", "car", "--json", "--state-dir", &state_s]));
    assert_eq!(shown["architecture"], "llama");
    assert_eq!(shown["context_length"], 8192);
    assert_eq!(shown["chat_template"], true);
    assert!(shown["parameters"].as_u64().is_some_and(|p| (100_000_000..200_000_000).contains(&p)), "{shown}");
    assert!(shown["fits"]["fits_cpu_ram"].is_boolean(), "{shown}");
    let verified = run(&["models", "verify", "--state-dir", &state_s]);
    assert!(verified.status.success(), "{}", describe(&verified));

    // Serve the OCI-imported model by its library name and chat with it.
    let config = "[[models]]\nname = \"car\"\nkind = \"chat\"\npath = \"library:car\"\nmax_model_len = 2048\nkv_cache_tokens = 4096\nmax_num_seqs = 2\n";
    let server = Server::start_with(Options { config: Some(config), env: vec![("HEARTH__SERVER__STATE_DIR", &state_s)] });
    let (status, body) = post_json(
        &server,
        "/v1/chat/completions",
        &serde_json::json!({"model": "car", "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["choices"][0]["message"]["content"].as_str().is_some_and(|c| !c.trim().is_empty()), "{body}");
    let (status, lib) = get_json(&server, "/v1/models/library").await;
    assert_eq!(status, 200, "{lib}");
    assert_eq!(lib["data"].as_array().map(Vec::len), Some(2), "{lib}");
    // The served model cannot be removed over HTTP; `hearth models rm` refuses it too.
    let client = reqwest::Client::new();
    let resp = client.delete(server.url("/v1/models/library/car")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 409);
    let cfg_path = dir.path().join("serves-car.toml");
    std::fs::write(&cfg_path, format!("[server]\nstate_dir = \"{state_s}\"\n{config}")).unwrap_or_else(|e| panic!("{e}"));
    let rm = run(&["--config", &cfg_path.display().to_string(), "models", "rm", "car"]);
    assert_eq!(rm.status.code(), Some(2), "{}", describe(&rm));
    assert!(describe(&rm).contains("serves `car`"), "{}", describe(&rm));
    // The other one goes, over HTTP.
    let resp = client.delete(server.url("/v1/models/library/smol")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!state.join("models/smol").exists());
    drop(server);

    // A configuration naming a model the library lacks fails validation with the reason.
    std::fs::write(&cfg_path, format!("[server]\nstate_dir = \"{state_s}\"\n[[models]]\nname = \"x\"\nkind = \"chat\"\npath = \"library:nope\"\n")).unwrap_or_else(|e| panic!("{e}"));
    let bad = run(&["--config", &cfg_path.display().to_string(), "validate"]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    assert!(describe(&bad).contains("no model named `nope`"), "{}", describe(&bad));
}

/// A Python HTTP server over `dir` with Range support that cuts the first whole-file answer after
/// `cut` bytes; it prints `PORT n` first, then one line per request: `GET path range`.
fn range_server(dir: &Path, cut: u64) -> (Child, u16, std::sync::mpsc::Receiver<String>) {
    let script = r#"
import http.server, os, sys
root, cut = sys.argv[1], int(sys.argv[2])
state = {"cut_done": False}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        path = os.path.join(root, self.path.lstrip("/"))
        rng = self.headers.get("Range")
        print("GET", self.path, rng or "-", flush=True)
        if not os.path.isfile(path):
            self.send_error(404); return
        size = os.path.getsize(path)
        start = 0
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size-1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            if not rng and not state["cut_done"]:
                state["cut_done"] = True
                self.wfile.write(f.read(cut)); self.wfile.flush()
                self.connection.shutdown(2); self.close_connection = True
                return
            while True:
                b = f.read(1 << 20)
                if not b: break
                self.wfile.write(b)
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print("PORT", s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .arg(cut.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let port = first.strip_prefix("PORT ").and_then(|p| p.trim().parse().ok()).unwrap_or_else(|| panic!("server said {first:?}"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, port, rx)
}

#[test]
fn pull_resumes_a_cut_download_and_refuses_a_wrong_sha256() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state_s = dir.path().join("state").display().to_string();
    let source = repo_root().join(EMBED_MODEL);
    let size = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0);
    let sha = sha256_file(&source);
    let (mut server, port, requests) = range_server(&repo_root().join("models"), 3_000_000);
    let url = format!("http://127.0.0.1:{port}/all-MiniLM-L6-v2.f16.gguf");

    let started = Instant::now();
    let got = stdout_json(&run(&["models", "pull", &url, "--sha256", &sha, "--name", "minilm", "--state-dir", &state_s, "--json"]));
    println!("pull of {size} bytes over loopback with one cut: {:.2} s (wall {:.2} s)", got["seconds"].as_f64().unwrap_or(0.0), started.elapsed().as_secs_f64());
    assert_eq!(got["entry"]["sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(got["entry"]["size"].as_u64(), Some(size));
    assert!(got["resumed"].as_u64().is_some_and(|n| n >= 1), "{got}");
    assert!(got["received"].as_u64().is_some_and(|n| n <= size + 3_000_000), "{got}");
    let seen: Vec<String> = requests.try_iter().collect();
    assert!(seen.iter().any(|l| l.contains("bytes=")), "no Range request reached the server: {seen:?}");

    // A wrong checksum: refused, nothing published, nothing left to resume.
    let wrong = "0".repeat(64);
    let refused = run(&["models", "pull", &url, "--sha256", &wrong, "--name", "bad", "--state-dir", &state_s]);
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(describe(&refused).contains("sha256 mismatch"), "{}", describe(&refused));
    let listed = stdout_json(&run(&["models", "list", "--json", "--state-dir", &state_s]));
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    assert!(!dir.path().join("state/models/bad").exists());
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path().join("state/models/.downloads")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = server.kill();
    let _ = server.wait();
}

fn quantize(args: &[&str]) -> Value {
    let started = Instant::now();
    let got = stdout_json(&run(&[&["quantize"], args, &["--json", "--threads", "2"]].concat()));
    println!("hearth quantize {}: {:.1} s wall\n{}", args.join(" "), started.elapsed().as_secs_f64(), serde_json::to_string_pretty(&got).unwrap_or_default());
    got
}

#[test]
fn quantized_embedding_model_keeps_cosine_and_recall() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state_s = dir.path().join("state").display().to_string();
    let source = repo_root().join(EMBED_MODEL).display().to_string();
    let q8 = quantize(&[&source, "--recipe", "w8a8-int8", "--name", "minilm-q8", "--state-dir", &state_s]);
    assert_eq!(q8["entry"]["quantization"], "Q8_0");
    assert_eq!(q8["entry"]["recipe"]["name"], "w8a8-int8");
    let e8 = &q8["report"]["embedding"];
    assert!(e8["mean_cosine"].as_f64().is_some_and(|c| c >= 0.99), "Q8_0 must keep cosine >= 0.99: {e8}");
    assert!(e8["recall_at_10"].as_f64().is_some_and(|r| r >= 0.8), "{e8}");
    let q4 = quantize(&[&source, "--recipe", "w4a16", "--name", "minilm-q4", "--state-dir", &state_s]);
    assert_eq!(q4["entry"]["quantization"], "Q4_K_M");
    let e4 = &q4["report"]["embedding"];
    let (c8, c4) = (e8["mean_cosine"].as_f64().unwrap_or(0.0), e4["mean_cosine"].as_f64().unwrap_or(0.0));
    assert!(c4 > 0.9 && c4 < c8, "Q4_K_M loses more than Q8_0 but stays close: q8 {c8}, q4 {c4}");
    assert!(q4["entry"]["size"].as_u64() < q8["entry"]["size"].as_u64());
    // The library holds both, with their recipes.
    let listed = stdout_json(&run(&["models", "list", "--json", "--state-dir", &state_s]));
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2), "{listed}");
}

#[test]
fn requantized_chat_model_reports_perplexity_against_its_source() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state_s = dir.path().join("state").display().to_string();
    let source = repo_root().join(CHAT_MODEL).display().to_string();
    let plain = run(&["quantize", &source, "--recipe", "w8a8-int8", "--state-dir", &state_s]);
    assert_eq!(plain.status.code(), Some(2), "{}", describe(&plain));
    assert!(describe(&plain).contains("already quantized (Q4_1)") && describe(&plain).contains("--allow-requantize"), "{}", describe(&plain));

    let q8 = quantize(&[&source, "--recipe", "w8a8-int8", "--allow-requantize", "--max-chunks", "4", "--state-dir", &state_s]);
    let p8 = &q8["report"]["perplexity"];
    let (src, new) = (p8["source"].as_f64().unwrap_or(0.0), p8["quantized"].as_f64().unwrap_or(0.0));
    assert!(src > 1.0 && src < 1000.0, "{p8}");
    assert!((new - src).abs() / src < 0.02, "Q4_1 -> Q8_0 keeps perplexity within 2%: {p8}");
    assert_eq!(q8["entry"]["recipe"]["requantized"], true);
    let q4 = quantize(&[&source, "--recipe", "w4a16", "--allow-requantize", "--max-chunks", "4", "--state-dir", &state_s]);
    let p4 = &q4["report"]["perplexity"];
    assert!(p4["quantized"].as_f64().is_some_and(|p| p > src * 0.98 && p < src * 1.5), "{p4}");
    println!(
        "perplexity on the README, 4 x 512 tokens: source Q4_1 {src:.3}, requantized Q8_0 {new:.3}, Q4_K_M {:.3}",
        p4["quantized"].as_f64().unwrap_or(0.0)
    );
    let _ = std::io::stdout().flush();
}
