//! Parsing in a child process with limits, so a hostile file costs one child and a clear error.
//!
//! PDF parsing runs PDFium, pdf-extract and lopdf on untrusted bytes: pdf-extract panics by design
//! and overflows the stack on a form XObject that draws itself (no recursion bound; no
//! `catch_unwind` survives that), form XObjects that draw each other exponentially run for ever,
//! and compressed streams inflate without a bound (PDFium then aborts silently when an allocation
//! fails: `abort.rs` tells that apart). So the daemon re-executes its own binary in a worker mode
//! ([`worker_main`], protocol in `worker.rs`) for each file:
//! - the parent hands the child its input as an already-open descriptor (stdin) and an empty
//!   environment (no API keys, no `HEARTH__*`): the child needs no path and opens nothing;
//! - the child lowers its resource limits and confines itself with Landlock before it reads a byte
//!   (`confine.rs`: address space, CPU time, no core dumps, no file writes, few descriptors, no
//!   processes, no new opens anywhere);
//! - the parent ([`Sandbox::parse_file`]) enforces the wall-clock limit (SIGKILL), caps stdout at
//!   `max_output_bytes` (dropping the pipe, which ends the child), keeps the last few KiB of
//!   stderr, and kills the child if the caller's future is dropped (`kill_on_drop`);
//! - how the child ended becomes a [`ParseFailure`] whose `Display` is one line for a vector-store
//!   file's `last_error.message`.
//!
//! [`Sandbox::self_check`] runs the same worker with the same confinement and reports what it could
//! reach (`self_check.rs`): the daemon logs it once at start-up.
//!
//! [`Sandbox::render_page`] runs the same worker, under the same limits, to render one page of a
//! PDF as a PNG with a passage highlighted (the console's citation preview): PDFium renders
//! untrusted files only in the child too. The PNG comes back inside the JSON reply, so it is
//! bounded by `max_output_bytes` like a parsed document; the parent checks the PNG signature.
//!
//! The parent needs a Tokio runtime with the `process`, `time` and `io-util` features; it spawns
//! one child per call, so the caller bounds concurrency (a semaphore sized to the cores).

mod abort;
mod confine;
mod self_check;
mod worker;

pub use confine::{Landlock, OPEN_FILES};
pub use self_check::{Access, Attempt, SelfCheck, SelfCheckRequest};
pub use worker::worker_main;

use crate::parse::{Format, PageImage, ParseError, ParsedDocument, RenderError, RenderRequest};
use std::ffi::OsString;
use std::io::{Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use worker::{WorkerReply, WorkerRequest};

/// The subcommand name the daemon is expected to use for the worker (`hearth parse-worker`).
pub const WORKER_SUBCOMMAND: &str = "parse-worker";

/// Bytes of the child's stderr kept for diagnosis.
const STDERR_TAIL_BYTES: usize = 4096;

/// Resource limits for one parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address-space limit of the child (`RLIMIT_AS`), in bytes.
    pub memory_bytes: u64,
    /// CPU time limit of the child (`RLIMIT_CPU`), in seconds.
    pub cpu_seconds: u64,
    /// Wall-clock limit, enforced by the parent with SIGKILL.
    pub wall: Duration,
    /// Largest reply (JSON of the parsed document) the parent accepts.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    /// 1 GiB, 60 s of CPU, 120 s of wall time, 64 MiB of output.
    fn default() -> Self {
        Limits {
            memory_bytes: 1 << 30,
            cpu_seconds: 60,
            wall: Duration::from_secs(120),
            max_output_bytes: 64 << 20,
        }
    }
}

/// The first bytes of every PNG file.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Why [`Sandbox::render_page`] gave no image. `Display` is one line for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderFailure {
    /// The renderer ran and says why not: no such page, PDFium missing, an unreadable file.
    #[error("{0}")]
    Render(RenderError),
    /// The child failed as a parse can: a crash, a limit, a worker that could not start.
    #[error("{0}")]
    Worker(#[from] ParseFailure),
}

/// Which time limit a parse ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLimit {
    /// The parent's wall-clock limit.
    Wall,
    /// The child's CPU-time limit (SIGXCPU).
    Cpu,
}

/// Why a sandboxed parse produced no document. `Display` is one line for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseFailure {
    /// The parser ran and says what is wrong with the file (encrypted, no text, malformed...).
    #[error("{0}")]
    Parse(ParseError),
    /// The child died: a signal or an unexpected exit status.
    #[error("parser crashed ({}) on this file", crash_reason(*.signal, *.exit_code, .stderr_tail))]
    Crashed {
        /// The signal that ended it, if one did.
        signal: Option<i32>,
        /// Its exit status, if it exited.
        exit_code: Option<i32>,
        /// The last few KiB of its stderr.
        stderr_tail: String,
    },
    /// The wall-clock or CPU limit ended it.
    #[error("parsing exceeded the {} s {} limit", .limit.as_secs(), match .kind { TimeLimit::Wall => "time", TimeLimit::Cpu => "CPU time" })]
    TimedOut {
        /// Which limit.
        kind: TimeLimit,
        /// Its value.
        limit: Duration,
    },
    /// An allocation failed against the memory limit (a decompression bomb, a huge image...).
    #[error("parsing exceeded the {} MiB memory limit", .limit_bytes >> 20)]
    OutOfMemory {
        /// The limit it ran into.
        limit_bytes: u64,
    },
    /// The file could not be read (by the child) or the worker could not be started (by us).
    #[error("{0}")]
    Io(String),
    /// The child's reply was missing, too large or not the expected JSON: a bug or a broken worker.
    #[error("the parser's output was unusable: {0}")]
    BadOutput(String),
}

impl ParseFailure {
    /// True where the file is to blame (a client's problem, a 4xx-like outcome); false where the
    /// worker could not be run or answered nonsense (our fault, worth logging).
    pub fn is_file_problem(&self) -> bool {
        match self {
            ParseFailure::Parse(_)
            | ParseFailure::Crashed { .. }
            | ParseFailure::TimedOut { .. }
            | ParseFailure::OutOfMemory { .. } => true,
            ParseFailure::Io(_) | ParseFailure::BadOutput(_) => false,
        }
    }
}

/// Settings of the native engines the worker loads for PDFs and images (`parse/pdfium.rs`,
/// `parse/ocr.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Tesseract languages (`eng`, `deu`...), joined with `+` for Tesseract.
    pub ocr_languages: Vec<String>,
    /// OCR time budget per document: no page is started after it (inside the worker's CPU and
    /// wall-clock limits, which still end the parse).
    pub ocr_seconds: u64,
    /// `libpdfium.so`; `None`: looked for beside the executable.
    pub pdfium_library: Option<PathBuf>,
}

impl Default for EngineOptions {
    /// English, 120 s, PDFium beside the executable.
    fn default() -> Self {
        EngineOptions {
            ocr_languages: vec!["eng".to_owned()],
            ocr_seconds: worker::DEFAULT_OCR_SECONDS,
            pdfium_library: None,
        }
    }
}

/// Runs parses in child processes: `program args... --format F --memory-bytes N --cpu-seconds N`,
/// the input on stdin.
#[derive(Debug, Clone)]
pub struct Sandbox {
    program: PathBuf,
    args: Vec<OsString>,
    limits: Limits,
    engines: EngineOptions,
    pdf_engine: crate::parse::PdfEngine,
}

impl Sandbox {
    /// `program` and its leading `args` start the worker; for the daemon,
    /// `std::env::current_exe()` and `["parse-worker"]`.
    pub fn new(program: PathBuf, args: Vec<OsString>, limits: Limits) -> Self {
        Sandbox {
            program,
            args,
            limits,
            engines: EngineOptions::default(),
            pdf_engine: crate::parse::PdfEngine::Auto,
        }
    }

    /// The same sandbox reading PDFs with one engine alone (benchmarks, and tests of what the
    /// sandbox contains when pdf-extract itself fails); the daemon keeps [`PdfEngine::Auto`].
    ///
    /// [`PdfEngine::Auto`]: crate::parse::PdfEngine::Auto
    pub fn with_pdf_engine(mut self, engine: crate::parse::PdfEngine) -> Self {
        self.pdf_engine = engine;
        self
    }

    /// The same sandbox with these OCR and PDFium settings.
    pub fn with_engines(mut self, engines: EngineOptions) -> Self {
        self.engines = engines;
        self
    }

    /// The limits a parse of `format` runs under (the same for every format: the OCR budget is
    /// spent inside them, so `ocr_seconds` should stay below the CPU and wall-clock limits).
    pub fn limits_for(&self, _format: Format) -> Limits {
        self.limits
    }

    /// The limits each parse runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parses the file at `path` as `format` in a fresh child process (which gets the open file,
    /// not the path).
    pub async fn parse(&self, path: &Path, format: Format) -> Result<ParsedDocument, ParseFailure> {
        let file = std::fs::File::open(path)
            .map_err(|e| ParseFailure::Io(format!("cannot open {}: {e}", path.display())))?;
        self.parse_file(file, format).await
    }

    /// Parses `file`, from its start, as `format` in a fresh child process: the child reads the
    /// descriptor as its stdin.
    pub async fn parse_file(
        &self,
        mut file: std::fs::File,
        format: Format,
    ) -> Result<ParsedDocument, ParseFailure> {
        file.seek(SeekFrom::Start(0))
            .map_err(|e| ParseFailure::Io(format!("cannot rewind the file: {e}")))?;
        let request = self.request(format, None);
        match self.run(&request, Input::File(file)).await? {
            WorkerReply::Ok(doc) => Ok(doc),
            WorkerReply::Error(e) => Err(ParseFailure::Parse(e)),
            WorkerReply::SelfCheck(_) | WorkerReply::Page(_) | WorkerReply::RenderError(_) => Err(
                ParseFailure::BadOutput("another reply where a document was expected".into()),
            ),
        }
    }

    /// Renders page `request.page` of the PDF `file` as a PNG in a fresh child process (which
    /// gets the descriptor as its stdin), with `request.highlight` painted over where found.
    pub async fn render_page(
        &self,
        mut file: std::fs::File,
        request: RenderRequest,
    ) -> Result<PageImage, RenderFailure> {
        request.check().map_err(|e| RenderFailure::Render(RenderError::Invalid(e)))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| ParseFailure::Io(format!("cannot rewind the file: {e}")))?;
        let mut worker = self.request(Format::Pdf, None);
        worker.render = Some(request);
        match self.run(&worker, Input::File(file)).await? {
            WorkerReply::Page(image) if image.png.starts_with(PNG_SIGNATURE) => Ok(image),
            WorkerReply::Page(_) => Err(ParseFailure::BadOutput("the page image is not a PNG".into()).into()),
            WorkerReply::RenderError(e) => Err(RenderFailure::Render(e)),
            WorkerReply::Ok(_) | WorkerReply::Error(_) | WorkerReply::SelfCheck(_) => Err(
                ParseFailure::BadOutput("another reply where a page image was expected".into()).into(),
            ),
        }
    }

    /// Runs the worker as for a parse of `input` (piped to it), then has it try the accesses in
    /// `check` and report what it could reach.
    pub async fn self_check(
        &self,
        check: SelfCheckRequest,
        input: Vec<u8>,
        format: Format,
    ) -> Result<SelfCheck, ParseFailure> {
        let request = self.request(format, Some(check));
        match self.run(&request, Input::Bytes(input)).await? {
            WorkerReply::SelfCheck(report) => Ok(*report),
            WorkerReply::Ok(_)
            | WorkerReply::Error(_)
            | WorkerReply::Page(_)
            | WorkerReply::RenderError(_) => Err(ParseFailure::BadOutput(
                "the worker did not report its self-check".into(),
            )),
        }
    }

    fn request(&self, format: Format, self_check: Option<SelfCheckRequest>) -> WorkerRequest {
        let limits = self.limits_for(format);
        WorkerRequest {
            format,
            memory_bytes: limits.memory_bytes,
            cpu_seconds: limits.cpu_seconds,
            ocr_languages: self.engines.ocr_languages.clone(),
            ocr_seconds: self.engines.ocr_seconds,
            pdfium_library: self.engines.pdfium_library.clone(),
            pdf_engine: self.pdf_engine,
            self_check,
            render: None,
        }
    }

    /// One child: spawn with a cleared environment and `input` on stdin, collect its reply within
    /// the limits.
    async fn run(
        &self,
        request: &WorkerRequest,
        input: Input,
    ) -> Result<WorkerReply, ParseFailure> {
        let (stdin, bytes) = match input {
            Input::File(file) => (Stdio::from(file), None),
            Input::Bytes(bytes) => (Stdio::piped(), Some(bytes)),
        };
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .args(request.to_args())
            .env_clear()
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ParseFailure::Io(format!(
                    "could not start the parser {}: {e}",
                    self.program.display()
                ))
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(ParseFailure::Io("the parser's pipes are missing".into()));
        };
        let feed = child.stdin.take();
        let limits = self.limits_for(request.format);
        let cap = limits.max_output_bytes;
        let run = async {
            let (out, err, ()) = tokio::join!(
                read_capped(stdout, cap),
                read_tail(stderr, STDERR_TAIL_BYTES),
                feed_input(feed, bytes)
            );
            let status = child.wait().await;
            (out, err, status)
        };
        let finished = tokio::time::timeout(limits.wall, run).await;
        let Ok((out, stderr_tail, status)) = finished else {
            // start_kill fails only if it already exited; reap it either way.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(ParseFailure::TimedOut {
                kind: TimeLimit::Wall,
                limit: limits.wall,
            });
        };
        let status =
            status.map_err(|e| ParseFailure::Io(format!("waiting for the parser: {e}")))?;
        let stdout = match out {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(ParseFailure::BadOutput(format!(
                    "the reply exceeded the {} MiB output limit",
                    cap >> 20
                )))
            }
            Err(e) => return Err(ParseFailure::BadOutput(format!("reading the reply: {e}"))),
        };
        classify(status, &stdout, stderr_tail, &limits)
    }
}

/// What the child reads on stdin.
enum Input {
    /// An open file: the child gets the descriptor itself.
    File(std::fs::File),
    /// Bytes written into a pipe.
    Bytes(Vec<u8>),
}

/// Writes `bytes` into the child's stdin and closes it. A child that exits without reading them
/// all (a crash) makes the write fail, which its exit status explains.
async fn feed_input(stdin: Option<tokio::process::ChildStdin>, bytes: Option<Vec<u8>>) {
    if let (Some(mut stdin), Some(bytes)) = (stdin, bytes) {
        let _ = stdin.write_all(&bytes).await;
    }
}

/// Turns how the child ended into the result.
fn classify(
    status: ExitStatus,
    stdout: &[u8],
    stderr_tail: String,
    limits: &Limits,
) -> Result<WorkerReply, ParseFailure> {
    if status.success() {
        return serde_json::from_slice::<WorkerReply>(stdout)
            .map_err(|e| ParseFailure::BadOutput(format!("{e} ({} bytes)", stdout.len())));
    }
    // Rust's allocator reports "memory allocation of N bytes failed" and aborts; a native library
    // (PDFium) aborts silently, and the worker's abort handler says when that was near the limit.
    if stderr_tail.contains("memory allocation of") || stderr_tail.contains(abort::OUT_OF_MEMORY) {
        return Err(ParseFailure::OutOfMemory {
            limit_bytes: limits.memory_bytes,
        });
    }
    if status.signal() == Some(SIGXCPU) {
        return Err(ParseFailure::TimedOut {
            kind: TimeLimit::Cpu,
            limit: Duration::from_secs(limits.cpu_seconds),
        });
    }
    if status.code() == Some(i32::from(worker::EXIT_READ)) {
        let line = last_line(&stderr_tail);
        return Err(ParseFailure::Io(format!(
            "the parser could not read the file: {line}"
        )));
    }
    Err(ParseFailure::Crashed {
        signal: status.signal(),
        exit_code: status.code(),
        stderr_tail,
    })
}

const SIGXCPU: i32 = 24;

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    })
}

/// "signal 11, SIGSEGV", "signal 6, SIGABRT: stack overflow on nested or self-referencing content",
/// "exit status 101: <last stderr line>".
fn crash_reason(signal: Option<i32>, exit_code: Option<i32>, stderr_tail: &str) -> String {
    let mut reason = match (signal, exit_code) {
        (Some(s), _) => match signal_name(s) {
            Some(name) => format!("signal {s}, {name}"),
            None => format!("signal {s}"),
        },
        (None, Some(c)) => format!("exit status {c}"),
        (None, None) => "unknown status".to_owned(),
    };
    if stderr_tail.contains("overflowed its stack") {
        reason.push_str(": stack overflow on nested or self-referencing content");
    } else if signal.is_none() {
        let line = last_line(stderr_tail);
        if !line.is_empty() {
            reason.push_str(": ");
            reason.push_str(line);
        }
    }
    reason
}

fn last_line(text: &str) -> &str {
    let line = text.trim_end().rsplit('\n').next().unwrap_or("").trim();
    // Keep a `last_error.message` one short line.
    match line.char_indices().nth(200) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// All of `r`, or `None` once it passes `cap` bytes (the reader is dropped then, which closes the
/// pipe: the child's next write fails and it exits).
async fn read_capped<R: AsyncRead + Unpin>(
    mut r: R,
    cap: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(buf));
        }
        if buf.len() + n > cap {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The last `keep` bytes of `r` (read to its end), as lossy UTF-8.
async fn read_tail<R: AsyncRead + Unpin>(mut r: R, keep: usize) -> String {
    let mut tail: Vec<u8> = Vec::with_capacity(2 * keep);
    let mut chunk = vec![0u8; 8 * 1024];
    while let Ok(n) = r.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    String::from_utf8_lossy(&tail).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_clear_line() {
        let crash = ParseFailure::Crashed {
            signal: Some(11),
            exit_code: None,
            stderr_tail: String::new(),
        };
        assert_eq!(
            crash.to_string(),
            "parser crashed (signal 11, SIGSEGV) on this file"
        );
        let overflow = ParseFailure::Crashed {
            signal: Some(6),
            exit_code: None,
            stderr_tail:
                "\nthread 'main' has overflowed its stack\nfatal runtime error: stack overflow\n"
                    .into(),
        };
        assert_eq!(
            overflow.to_string(),
            "parser crashed (signal 6, SIGABRT: stack overflow on nested or self-referencing content) on this file"
        );
        let exit = ParseFailure::Crashed {
            signal: None,
            exit_code: Some(101),
            stderr_tail: "thread 'main' panicked at x.rs:1:1:\nboom\n".into(),
        };
        assert_eq!(
            exit.to_string(),
            "parser crashed (exit status 101: boom) on this file"
        );
        let wall = ParseFailure::TimedOut {
            kind: TimeLimit::Wall,
            limit: Duration::from_secs(120),
        };
        assert_eq!(wall.to_string(), "parsing exceeded the 120 s time limit");
        let cpu = ParseFailure::TimedOut {
            kind: TimeLimit::Cpu,
            limit: Duration::from_secs(60),
        };
        assert_eq!(cpu.to_string(), "parsing exceeded the 60 s CPU time limit");
        let oom = ParseFailure::OutOfMemory {
            limit_bytes: 1 << 30,
        };
        assert_eq!(
            oom.to_string(),
            "parsing exceeded the 1024 MiB memory limit"
        );
        assert_eq!(
            ParseFailure::Parse(ParseError::Encrypted).to_string(),
            "encrypted PDF: hearth cannot read password-protected files"
        );
    }

    #[test]
    fn last_line_is_bounded() {
        let long = "x".repeat(1000);
        assert_eq!(last_line(&format!("a\n{long}\n")).len(), 200);
        assert_eq!(last_line(""), "");
    }
}
