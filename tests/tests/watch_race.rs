//! The watched folder under a swap race, against the real binary: regular files are dropped into
//! the folder and, the moment the watcher starts reading them, replaced (one `rename` each) by a
//! symbolic link to a secret outside the folder, a FIFO, a link to `/dev/zero`, or a `/dev/zero`
//! device node. The watcher must skip each with a log line, never block (a FIFO opened the plain
//! way waits for a writer for ever; `/dev/zero` never ends), and never copy a foreign byte into the
//! store: a thread reads every file the registry stores while the race runs.
//! The same server's log carries the parse worker's start-up self-check line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_tests::{Options, Server};
use serde_json::Value;

/// Watched folders settle fast in tests.
const FAST_WATCH: &str = "[ingest]\nstable_seconds = 0.3\nrescan_seconds = 0.5\n";
/// Bytes that live outside the folder and must never reach the store.
const SECRET: &str = "SECRET-7Q4X-NEVER-INGESTED";
/// Files swapped per round.
const FILES: usize = 24;

/// What replaces a regular file.
#[derive(Debug, Clone, Copy)]
enum Trap {
    LinkToSecret,
    Fifo,
    LinkToDevZero,
    DevZeroNode,
}

impl Trap {
    /// Creates the trap at `path`; false where this machine does not allow it (a device node
    /// needs CAP_MKNOD).
    fn make(self, path: &Path, secret: &Path) -> bool {
        match self {
            Trap::LinkToSecret => std::os::unix::fs::symlink(secret, path).is_ok(),
            Trap::LinkToDevZero => std::os::unix::fs::symlink("/dev/zero", path).is_ok(),
            Trap::Fifo => std::process::Command::new("mkfifo").arg(path).status().is_ok_and(|s| s.success()),
            // A file system mounted `nodev` refuses to open it: then it tests nothing.
            Trap::DevZeroNode => {
                std::process::Command::new("mknod").arg(path).args(["c", "1", "5"]).status().is_ok_and(|s| s.success()) && std::fs::File::open(path).is_ok()
            }
        }
    }

    /// How the watcher's log line names it.
    fn found(self) -> &'static str {
        match self {
            Trap::LinkToSecret | Trap::LinkToDevZero => "found=a symbolic link",
            Trap::Fifo => "found=a FIFO, not a regular file",
            Trap::DevZeroNode => "found=a character device, not a regular file",
        }
    }
}

/// The log without terminal colour codes.
fn plain_log(server: &Server) -> String {
    let log = server.log();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn wait_for_log(server: &Server, what: &str, timeout: Duration, found: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + timeout;
    while !found(&plain_log(server)) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", plain_log(server));
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reads every content file that appears in the files registry while it runs; returns the
/// contents it saw, by file name.
struct RegistryWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(String, Vec<u8>)>>,
}

impl RegistryWatch {
    fn start(files_dir: PathBuf) -> RegistryWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut contents = Vec::new();
            loop {
                let last = flag.load(Ordering::SeqCst);
                for entry in std::fs::read_dir(&files_dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    // Content is `file-<hex>`; records and their temporary copies have a dot.
                    if !name.starts_with("file-") || name.contains('.') || !entry.path().is_file() || seen.contains(&name) {
                        continue;
                    }
                    // Stored content is renamed into place complete; a file deleted meanwhile is
                    // read on a later pass or not at all.
                    if let Ok(bytes) = std::fs::read(entry.path()) {
                        seen.insert(name.clone());
                        contents.push((name, bytes));
                    }
                }
                if last {
                    return contents;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        RegistryWatch { stop, thread }
    }

    fn finish(self) -> Vec<(String, Vec<u8>)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_else(|_| panic!("the registry watch panicked"))
    }
}

async fn inbox_files(server: &Server) -> Vec<Value> {
    let v: Value = reqwest::get(server.url("/v1/vector_stores")).await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or(Value::Null);
    let Some(vs) = v["data"].as_array().and_then(|d| d.iter().find(|s| s["name"] == "inbox")).and_then(|s| s["id"].as_str()) else {
        return Vec::new();
    };
    let v: Value = reqwest::get(server.url(&format!("/v1/vector_stores/{vs}/files?limit=100"))).await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or(Value::Null);
    v["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn swapped_in_links_fifos_and_devices_are_skipped_never_read_and_never_block() {
    let server = Server::start_with(Options { config: Some(FAST_WATCH), env: vec![("HEARTH_TEST_SECRET", SECRET)] });

    // The parse worker's confinement, said once at start-up.
    wait_for_log(&server, "the parse worker's self-check line", Duration::from_secs(60), |log| {
        log.contains("parse worker: Landlock ABI v") || log.contains("kernel lacks Landlock")
    });
    let log = plain_log(&server);
    assert!(!log.contains("parse worker: confinement failed") && !log.contains("parse worker: it sees environment"), "{log}");
    assert!(!log.contains(SECRET), "the secret reached the log");

    let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, SECRET.repeat(10)).unwrap_or_else(|e| panic!("{e}"));
    let inbox = server.inbox();
    let registry = RegistryWatch::start(server.dir.path().join("state/files"));

    let mut used = Vec::new();
    for (round, trap) in [Trap::LinkToSecret, Trap::Fifo, Trap::LinkToDevZero, Trap::DevZeroNode].into_iter().cycle().take(8).enumerate() {
        let names: Vec<String> = (0..FILES).map(|j| format!("r{round}-{j}.txt")).collect();
        // Traps wait in a staging folder on the same file system: a swap is one rename.
        let staging = server.dir.path().join(format!("staging{round}"));
        std::fs::create_dir(&staging).unwrap_or_else(|e| panic!("{e}"));
        if !names.iter().all(|n| trap.make(&staging.join(n), &secret)) {
            eprintln!("round {round}: {trap:?} cannot be made on this machine; skipped");
            continue;
        }
        used.push(trap);
        for (j, name) in names.iter().enumerate() {
            std::fs::write(inbox.join(name), format!("Race round {round}, file {j}: the kettle is in the left cupboard.")).unwrap_or_else(|e| panic!("{e}"));
        }
        // The moment the watcher has read the first file of this round, swap them all.
        let first = format!("Watched file queued for ingestion. path=r{round}-");
        wait_for_log(&server, &format!("round {round} to start"), Duration::from_secs(60), |log| log.contains(&first));
        for name in &names {
            std::fs::rename(staging.join(name), inbox.join(name)).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    // The watcher is not stuck on any of it: a file dropped now is ingested.
    std::fs::write(inbox.join("after.txt"), "After the race, the watcher still reads new files.").unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !inbox_files(&server).await.iter().any(|f| f["filename"] == "after.txt" && f["status"] == "completed") {
        assert!(Instant::now() < deadline, "after.txt was not ingested: the watcher is stuck\n{}", plain_log(&server));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stored = registry.finish();
    let log = plain_log(&server);
    let skips: Vec<&str> = log.lines().filter(|l| l.contains("skipped, not read")).collect();
    eprintln!("{} files stored during the race, {} swaps caught at the open", stored.len(), skips.len());
    for trap in &used {
        assert!(skips.iter().any(|l| l.contains(trap.found())), "no swap to {trap:?} was caught at the open ({}):\n{log}", trap.found());
    }
    assert!(!stored.is_empty(), "the registry watch saw no file");
    for (name, bytes) in &stored {
        let text = String::from_utf8_lossy(bytes);
        assert!(text.starts_with("Race round ") || text.starts_with("After the race"), "{name} holds foreign bytes: {:?}", &text[..text.len().min(80)]);
        assert!(!text.contains(SECRET), "{name} holds the secret");
    }
    assert!(!log.contains(SECRET), "the secret reached the log");
}
