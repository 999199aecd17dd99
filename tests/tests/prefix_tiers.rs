//! The tiered prefix cache through the real binary and the real small model: a prompt's greedy
//! output is the same computed cold, shared from the KV cache (hot), restored from host RAM, and
//! restored from disk after a restart; a corrupt file is skipped, deleted and the prompt computed;
//! a changed KV setting never restores the old files (they are deleted at start-up).
//!
//! One state directory serves the successive servers, as a restarted daemon would find it.
//! With `kv_layout = "per_sequence"` (a KV stream per sequence) the output is the unified layout's,
//! cold, from a prefix copied out of another running sequence's stream, and restored from RAM.
//!
//! On batch invariance (see tests/engine.rs): llama.cpp's CPU decode splits the KV cells among
//! threads by their index in the cache, so where a restored prefix lands can change the last bits of
//! a logit, and a near-tied greedy choice can flip (seen on the first token of an open question, with the
//! cache off, only because another prompt had been computed before). The prompts here continue a
//! list (days, numbers), whose greedy continuation was the same in every order tried; a wrong
//! restore (wrong positions, another prompt's state, a truncation in the wrong place) derails it
//! within a token or two.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth_tests::{Options, Server};
use serde_json::{json, Value};

const CHAT: &str = "smollm2-135m-instruct";

async fn complete(server: &Server, prompt: &str) -> Value {
    let body = json!({"model": CHAT, "prompt": prompt, "max_tokens": 12, "temperature": 0, "ignore_eos": true});
    let (status, v) = hearth_tests::post_json(server, "/v1/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn text(v: &Value) -> String {
    v["choices"][0]["text"].as_str().unwrap_or_default().to_owned()
}

fn cached(v: &Value) -> u64 {
    v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0)
}

fn prompt_tokens(v: &Value) -> u64 {
    v["usage"]["prompt_tokens"].as_u64().unwrap_or(0)
}

/// A prefix-cache metric of the chat model for `tier` ("" for the families without one).
async fn tier_metric(server: &Server, name: &str, tier: &str) -> u64 {
    let body = reqwest::get(server.url("/metrics")).await.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    let tier_label = format!("tier=\"{tier}\"");
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(CHAT))
        .find(|l| if tier.is_empty() { !l.contains("tier=") } else { l.contains(&tier_label) })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("{name} {tier} not in /metrics:\n{body}"))
}

fn start(state: &Path, env: &[(&str, &str)]) -> Server {
    let state = state.to_string_lossy().into_owned();
    let mut all = vec![("HEARTH__SERVER__STATE_DIR", state.as_str())];
    all.extend_from_slice(env);
    // Owned strings outlive the call: the harness copies the environment into the command.
    let owned: Vec<(String, String)> = all.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with(Options { env, ..Options::default() })
}

/// The chat model's finished files in the disk tier.
fn files(state: &Path) -> Vec<PathBuf> {
    let dir = state.join("prefix-cache").join(CHAT);
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|d| d.path()).filter(|p| p.extension().is_some_and(|e| e == "kv")).collect();
    found.sort();
    found
}

/// Wait until the disk tier holds `n` finished files.
fn wait_for_files(state: &Path, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = files(state);
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn system_prompt(topic: &str) -> String {
    format!("You are the {topic} assistant of a small company. Answer from the company handbook only, cite the page, and say so when the handbook does not cover a question. ").repeat(6)
}

#[tokio::test]
async fn greedy_output_is_the_same_cold_hot_from_ram_and_from_disk_after_a_restart() {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = format!("{}\nThe days of the week are Monday, Tuesday,", system_prompt("HR"));
    let q = format!("{}\nCounting in English: one, two, three, four,", system_prompt("IT"));

    let server = start(state.path(), &[]);
    let cold = complete(&server, &p).await;
    assert_eq!(cached(&cold), 0);
    let n = prompt_tokens(&cold);
    assert!(n > 200, "a prompt of several blocks: {n}");
    // Hot: the blocks are still in the KV cache.
    let hot = complete(&server, &p).await;
    assert!(cached(&hot) >= n - 16, "hot: cached {} of {n}", cached(&hot));
    assert_eq!(text(&hot), text(&cold));
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_hits_total", "hot").await, 1);
    // p, now reused, stays in the KV cache's protected pool here; q is saved too.
    let q_cold = complete(&server, &q).await;
    assert_eq!(cached(&q_cold), 0);
    let saved = wait_for_files(state.path(), 2);
    assert_eq!(saved.len(), 2, "p and q written to the disk tier: {saved:?}");
    assert!(tier_metric(&server, "hearth_prefix_cache_bytes", "ram").await > 0);
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_saves_total", "").await, 2);
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_saves_skipped_total", "").await, 0, "one request at a time: no save waits for credit");
    drop(server); // SIGKILL: the files written so far are complete, by their rename

    // After the restart p's file is read (disk). q, restored from its file too, pushes p's blocks
    // out of the KV cache (never served from it in this process, they are kept only until the
    // next request finishes), and p comes back from RAM.
    let server = start(state.path(), &[]);
    let from_disk = complete(&server, &p).await;
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_hits_total", "disk").await, 1, "restored from disk after the restart");
    assert!(cached(&from_disk) >= n - 16, "disk: cached {} of {n}", cached(&from_disk));
    assert_eq!(text(&from_disk), text(&cold));
    let q_disk = complete(&server, &q).await;
    assert_eq!(text(&q_disk), text(&q_cold));
    let from_ram = complete(&server, &p).await;
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_hits_total", "ram").await, 1, "restored from RAM");
    assert!(cached(&from_ram) >= n - 16, "ram: cached {} of {n}", cached(&from_ram));
    assert_eq!(text(&from_ram), text(&cold));
    drop(server);

    // A corrupt file: skipped, deleted, the prompt computed (same output).
    let files_now = files(state.path());
    for f in &files_now {
        let mut bytes = std::fs::read(f).unwrap_or_default();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x55;
        std::fs::write(f, bytes).unwrap_or_else(|e| panic!("{e}"));
    }
    let server = start(state.path(), &[]);
    let recomputed = complete(&server, &p).await;
    assert_eq!(cached(&recomputed), 0, "nothing restored from a corrupt file");
    assert_eq!(text(&recomputed), text(&cold));
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_restores_total", "disk").await, 1, "the file was tried");
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_hits_total", "disk").await, 0);
    // p's file (the first) is deleted, p saved anew under a new name; q's is not looked at yet.
    let left = wait_for_files(state.path(), 2);
    assert!(!files_now[0].exists(), "the corrupt file of p is deleted");
    assert_eq!(left.len(), 2, "q's file and p's new one: {left:?}");
    drop(server);

    // Another KV setting (flash attention off): old files are stale, deleted at start-up, never restored.
    let before = files(state.path());
    assert!(!before.is_empty());
    let server = start(state.path(), &[("HEARTH__ENGINE__FLASH_ATTENTION", "off")]);
    assert!(before.iter().all(|f| !f.exists()), "stale files deleted: {before:?}");
    let other = complete(&server, &p).await;
    assert_eq!(cached(&other), 0);
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_restores_total", "disk").await, 0);
}

/// A server with `config` laid over the default one, its state in `state`.
/// `systemctl stop` right after an answer: the stop waits for the engine thread, so the prefix it
/// just saved is on disk, complete, and the restarted daemon serves it from there.
#[tokio::test]
async fn a_prefix_saved_just_before_a_sigterm_is_on_disk_after_the_restart() {
    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let p = format!("{}\nThe months of the year are January, February,", system_prompt("sales"));
    let server = start(state.path(), &[]);
    let cold = complete(&server, &p).await;
    let n = prompt_tokens(&cold);
    // No wait for the file: the stop itself must let the write finish.
    server.terminate();
    let (exit, log) = server.wait_exit();
    assert!(exit.success(), "{exit:?}\n{log}");
    assert_eq!(files(state.path()).len(), 1, "the saved prefix is a finished file after the stop:\n{log}");
    let server = start(state.path(), &[]);
    let restored = complete(&server, &p).await;
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_hits_total", "disk").await, 1, "{}", server.log());
    assert!(cached(&restored) >= n - 16, "disk: cached {} of {n}", cached(&restored));
    assert_eq!(text(&restored), text(&cold));
}

fn start_with_config(state: &Path, config: &str) -> Server {
    let state = state.to_string_lossy().into_owned();
    Server::start_with(Options { config: Some(config), env: vec![("HEARTH__SERVER__STATE_DIR", state.as_str())] })
}

/// Start a streamed completion of `prompt` and wait for its first event: its prompt is computed
/// and it keeps decoding (its KV stream in use) while the response is read on.
async fn start_streaming(server: &Server, prompt: &str, max_tokens: u32) -> reqwest::Response {
    let body = json!({"model": CHAT, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": true, "stream": true});
    let mut response = reqwest::Client::new().post(server.url("/v1/completions")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(first.is_some_and(|c| !c.is_empty()), "no first event");
    response
}

/// Read a streamed response to its end.
async fn drain(mut response: reqwest::Response) {
    while response.chunk().await.unwrap_or_else(|e| panic!("{e}")).is_some() {}
}

#[tokio::test]
async fn per_sequence_streams_give_the_unified_output_cold_copied_and_restored() {
    // Two streams of 1024 cells, so the per-sequence cache stays small on the CPU.
    const SMALL: &str = "[[models]]\nname = \"smollm2-135m-instruct\"\nmax_num_seqs = 2\nmax_model_len = 1024\n";
    let p = format!("{}\nThe days of the week are Monday, Tuesday,", system_prompt("HR"));
    let q = format!("{}\nCounting in English: one, two, three, four,", system_prompt("IT"));
    let r = format!("{}\nThe months of the year are January, February,", system_prompt("Sales"));

    let unified_state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = start_with_config(unified_state.path(), SMALL);
    let want = text(&complete(&server, &p).await);
    drop(server);

    let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = start_with_config(state.path(), &format!("[engine]\nkv_layout = \"per_sequence\"\n{SMALL}"));
    assert!(server.log().contains("kv_unified=false streams=2 stream_cells=1024"), "per-sequence streams:\n{}", server.log());
    let cold = complete(&server, &p).await;
    assert_eq!(cached(&cold), 0);
    let n = prompt_tokens(&cold);
    assert_eq!(text(&cold), want, "cold, per sequence");

    // p again, streamed: it takes id 0, whose stream still holds p (hot, no copy). While it decodes,
    // a third p takes id 1 and copies stream 0.
    let running = start_streaming(&server, &p, 40).await;
    let copied = complete(&server, &p).await;
    assert!(cached(&copied) >= n - 16, "copied: cached {} of {n}", cached(&copied));
    assert_eq!(text(&copied), want, "from a stream copied out of a running sequence");
    drain(running).await;
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_hits_total", "hot").await, 2);

    // q and r take both streams at once; p, saved to RAM when it first finished, is restored.
    let running = start_streaming(&server, &q, 40).await;
    assert_eq!(cached(&complete(&server, &r).await), 0);
    drain(running).await;
    let restored = complete(&server, &p).await;
    assert_eq!(tier_metric(&server, "hearth_prefix_cache_hits_total", "ram").await, 1, "restored from RAM");
    assert!(cached(&restored) >= n - 16, "ram: cached {} of {n}", cached(&restored));
    assert_eq!(text(&restored), want, "restored from RAM into a stream");
}
