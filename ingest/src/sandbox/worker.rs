//! The child side: argv protocol, confinement, parse, one JSON reply on stdout.
//!
//! Protocol (after the program's leading arguments, e.g. `hearth parse-worker`):
//! `--format <FORMAT> --memory-bytes <N> --cpu-seconds <N> [--ocr-languages eng+deu]
//! [--ocr-seconds N] [--pdfium-library PATH] [--pdf-engine auto|pdf-extract|pdfium] [--self-check [--try-read PATH]... [--try-create PATH]...]
//! [--render-page N --render-width W [--highlight TEXT]]`; the input is the worker's stdin,
//! an already-open descriptor (the parent's file, or a pipe): the worker takes no path and opens
//! nothing. Before it reads a byte of the input it closes any descriptor it inherited beyond
//! stdin, stdout and stderr, lowers its resource limits and confines itself with Landlock
//! (`confine.rs`); `--self-check` then reports what it can and cannot reach
//! (`self_check.rs`). For PDFs and images it first loads PDFium and starts Tesseract
//! ([`load_engines`]), since neither may open a file once confined.
//!
//! `--render-page` (PDF only) renders that page as a PNG instead of parsing
//! (`parse/page_image.rs`), with `--highlight`'s passage painted over; only PDFium is loaded.
//! The reply carries the PNG base64-encoded ([`WorkerReply::Page`]), or the
//! [`RenderError`] that says why not (no such page, PDFium missing, an encrypted file).
//!
//! Exit status: 0 with a [`WorkerReply`] on stdout (the document, or the [`ParseError`] that is the
//! file's fault, or the self-check's report); 2 bad arguments; 3 limits could not be set; 4 the
//! input could not be read (reason on stderr); 5 stdout could not be written. Anything else — a
//! signal, an abort — is a crash, which the parent classifies from the status and the stderr tail.

use super::confine;
use super::self_check::{self, SelfCheck, SelfCheckRequest};
use crate::parse::{
    panic_message, parse_with, render_page, Engines, Format, OcrEngine, PageImage, ParseError, ParsedDocument, PdfEngine, PdfiumEngine, RenderError,
    RenderRequest,
};
use rlimit::Resource;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;

pub(super) const EXIT_USAGE: u8 = 2;
pub(super) const EXIT_LIMITS: u8 = 3;
pub(super) const EXIT_READ: u8 = 4;
pub(super) const EXIT_WRITE: u8 = 5;

/// What the worker writes to stdout when it exits 0.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum WorkerReply {
    Ok(ParsedDocument),
    Error(ParseError),
    SelfCheck(Box<SelfCheck>),
    /// A rendered page (`--render-page`).
    Page(PageImage),
    /// Why the page could not be rendered.
    RenderError(RenderError),
}

/// One job, as passed on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WorkerRequest {
    pub format: Format,
    pub memory_bytes: u64,
    pub cpu_seconds: u64,
    /// Tesseract languages (`eng`, `deu`...); empty: `eng`.
    pub ocr_languages: Vec<String>,
    /// OCR time budget per document, in seconds.
    pub ocr_seconds: u64,
    /// Where `libpdfium.so` is; `None`: looked for beside the executable.
    pub pdfium_library: Option<PathBuf>,
    /// Which engine reads PDFs (`--pdf-engine`; the benchmark runs each alone).
    pub pdf_engine: PdfEngine,
    /// A self-check instead of a plain parse.
    pub self_check: Option<SelfCheckRequest>,
    /// A page image instead of a parse (PDF only).
    pub render: Option<RenderRequest>,
}

/// Default OCR budget per document when the request names none.
pub(super) const DEFAULT_OCR_SECONDS: u64 = 120;

impl WorkerRequest {
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--format".into(),
            self.format.as_str().into(),
            "--memory-bytes".into(),
            self.memory_bytes.to_string().into(),
            "--cpu-seconds".into(),
            self.cpu_seconds.to_string().into(),
            "--ocr-seconds".into(),
            self.ocr_seconds.to_string().into(),
        ];
        if !self.ocr_languages.is_empty() {
            args.push("--ocr-languages".into());
            args.push(self.ocr_languages.join("+").into());
        }
        if let Some(path) = &self.pdfium_library {
            args.push("--pdfium-library".into());
            args.push(path.clone().into_os_string());
        }
        if self.pdf_engine != PdfEngine::Auto {
            args.push("--pdf-engine".into());
            args.push(self.pdf_engine.as_str().into());
        }
        if let Some(render) = &self.render {
            args.push("--render-page".into());
            args.push(render.page.to_string().into());
            args.push("--render-width".into());
            args.push(render.width.to_string().into());
            if let Some(text) = &render.highlight {
                args.push("--highlight".into());
                args.push(text.into());
            }
        }
        if let Some(check) = &self.self_check {
            args.push("--self-check".into());
            for path in &check.read {
                args.push("--try-read".into());
                args.push(path.clone().into_os_string());
            }
            for path in &check.create {
                args.push("--try-create".into());
                args.push(path.clone().into_os_string());
            }
        }
        args
    }

    pub fn from_args(args: &[OsString]) -> Result<Self, String> {
        let (mut format, mut memory, mut cpu) = (None, None, None);
        let (mut ocr_languages, mut ocr_seconds, mut pdfium_library) = (Vec::new(), DEFAULT_OCR_SECONDS, None);
        let mut pdf_engine = PdfEngine::Auto;
        let mut check: Option<SelfCheckRequest> = None;
        let (mut render_page, mut render_width, mut highlight) = (None, None, None);
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.to_str() else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let mut value = || it.next().ok_or_else(|| format!("{name} needs a value"));
            match name {
                "--format" => {
                    let v = value()?.to_string_lossy().into_owned();
                    format = Some(Format::from_name(&v).ok_or(format!("unknown format {v:?}"))?);
                }
                "--memory-bytes" => memory = Some(number(value()?)?),
                "--cpu-seconds" => cpu = Some(number(value()?)?),
                "--ocr-seconds" => ocr_seconds = number(value()?)?,
                "--ocr-languages" => {
                    let v = value()?.to_string_lossy().into_owned();
                    ocr_languages = v.split('+').filter(|l| !l.is_empty()).map(str::to_owned).collect();
                }
                "--pdfium-library" => pdfium_library = Some(PathBuf::from(value()?)),
                "--pdf-engine" => {
                    let v = value()?.to_string_lossy().into_owned();
                    pdf_engine = PdfEngine::from_name(&v).ok_or(format!(
                        "unknown --pdf-engine {v:?} (auto, pdf-extract or pdfium)"
                    ))?;
                }
                "--render-page" => render_page = Some(small(value()?)?),
                "--render-width" => render_width = Some(small(value()?)?),
                "--highlight" => {
                    let v = value()?;
                    highlight = Some(v.to_str().ok_or("--highlight is not valid UTF-8")?.to_owned());
                }
                "--self-check" => {
                    check.get_or_insert_with(SelfCheckRequest::default);
                }
                "--try-read" | "--try-create" => {
                    let path = PathBuf::from(value()?);
                    let Some(check) = check.as_mut() else {
                        return Err(format!("{name} comes after --self-check"));
                    };
                    match name {
                        "--try-read" => check.read.push(path),
                        _ => check.create.push(path),
                    }
                }
                other if !other.starts_with("--") => {
                    return Err(format!(
                        "unexpected argument {other:?}: the worker reads its input from stdin and takes no path"
                    ))
                }
                other => return Err(format!("unexpected argument {other:?}")),
            }
        }
        let format = format.ok_or("--format is required")?;
        let render = match (render_page, render_width) {
            (None, None) if highlight.is_none() => None,
            (Some(page), Some(width)) => {
                if format != Format::Pdf {
                    return Err(format!("--render-page renders PDFs only, not {}", format.as_str()));
                }
                if check.is_some() {
                    return Err("--render-page and --self-check do not go together".into());
                }
                let request = RenderRequest { page, width, highlight };
                request.check()?;
                Some(request)
            }
            _ => return Err("--render-page, --render-width and --highlight go together (the first two are required)".into()),
        };
        Ok(WorkerRequest {
            format,
            memory_bytes: memory.ok_or("--memory-bytes is required")?,
            cpu_seconds: cpu.ok_or("--cpu-seconds is required")?,
            ocr_languages,
            ocr_seconds,
            pdfium_library,
            pdf_engine,
            self_check: check,
            render,
        })
    }
}

/// PDFium (for PDFs) and Tesseract (for PDFs and images), loaded before confinement: each reads
/// its library or data files now, and nothing after. One that fails is noted, and the parse goes
/// on without it.
pub(super) fn load_engines(req: &WorkerRequest) -> Engines {
    let mut engines = Engines { pdf_engine: req.pdf_engine, ..Engines::default() };
    if !matches!(req.format, Format::Pdf | Format::Image) {
        return engines;
    }
    if req.format == Format::Pdf {
        // Loaded before confinement like for a parse; a render needs nothing else.
        match req.pdfium_library.clone().or_else(PdfiumEngine::locate) {
            Some(path) => match PdfiumEngine::load(&path) {
                Ok(p) => engines.pdfium = Some(p),
                Err(e) => engines.unavailable.push(e),
            },
            None => engines.unavailable.push("PDFium (libpdfium.so) is not installed beside hearth".into()),
        }
    }
    if req.render.is_some() {
        return engines;
    }
    let budget = std::time::Duration::from_secs(req.ocr_seconds);
    match OcrEngine::init(&req.ocr_languages, budget) {
        Ok(ocr) => engines.ocr = Some(ocr),
        Err(e) => engines.unavailable.push(e),
    }
    engines
}

fn small(v: &std::ffi::OsStr) -> Result<u32, String> {
    u32::try_from(number(v)?).map_err(|_| format!("{v:?} is too large"))
}

fn number(v: &std::ffi::OsStr) -> Result<u64, String> {
    v.to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{v:?} is not a number"))
}

/// The parse worker's whole program: `args` are the arguments after the program's own leading
/// ones (for the daemon, after `hearth parse-worker`); the input is stdin. Call it before any
/// logging or runtime is set up: stdout carries the reply and nothing else.
pub fn worker_main(args: &[OsString]) -> ExitCode {
    let req = match WorkerRequest::from_args(args) {
        Ok(req) => req,
        Err(msg) => {
            eprintln!("parse-worker: {msg}");
            eprintln!(
                "usage: parse-worker --format <{}> --memory-bytes N --cpu-seconds N \
                 [--pdf-engine auto|pdf-extract|pdfium] [--self-check [--try-read PATH]... [--try-create PATH]...] \
                 [--render-page N --render-width W [--highlight TEXT]] < INPUT",
                Format::ALL.map(Format::as_str).join("|")
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let closed = confine::close_inherited();
    let engines = load_engines(&req);
    if let Err(e) = confine::apply_limits(req.memory_bytes, req.cpu_seconds) {
        eprintln!("parse-worker: could not set resource limits: {e}");
        return ExitCode::from(EXIT_LIMITS);
    }
    super::abort::install(req.memory_bytes);
    // For the self-check, listed before Landlock closes /proc to it.
    let still_open = match req.self_check {
        Some(_) => confine::descriptors(),
        None => Vec::new(),
    };
    let landlock = confine::restrict();
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("reading the input: {e}");
        return ExitCode::from(EXIT_READ);
    }
    if let Some(render) = &req.render {
        return write_reply(&render_reply(&bytes, render, &engines));
    }
    let parsed = match catch_unwind(AssertUnwindSafe(|| parse_with(&bytes, req.format, &engines))) {
        Ok(result) => result,
        Err(panic) => Err(ParseError::ParserFailed(panic_message(panic.as_ref()))),
    };
    drop(bytes);
    let reply = match (req.self_check, parsed) {
        (Some(check), document) => WorkerReply::SelfCheck(Box::new(SelfCheck {
            landlock,
            open_files_limit: confine::current_limit(Resource::NOFILE),
            processes_limit: confine::current_limit(Resource::NPROC),
            environment: self_check::environment_names(),
            closed,
            open: still_open
                .into_iter()
                .map(|(fd, target)| format!("{fd} -> {target}"))
                .collect(),
            attempts: self_check::attempt_all(&check),
            document,
        })),
        (None, Ok(doc)) => WorkerReply::Ok(doc),
        (None, Err(e)) => WorkerReply::Error(e),
    };
    write_reply(&reply)
}

/// The page image of `bytes`, or why not; a panic in the renderer is a failure, not a crash.
fn render_reply(bytes: &[u8], request: &RenderRequest, engines: &Engines) -> WorkerReply {
    let Some(pdfium) = &engines.pdfium else {
        let why = engines.unavailable.first().cloned().unwrap_or_else(|| "PDFium was not loaded".into());
        return WorkerReply::RenderError(RenderError::PdfiumUnavailable(why));
    };
    match catch_unwind(AssertUnwindSafe(|| render_page(pdfium, bytes, request))) {
        Ok(Ok(image)) => WorkerReply::Page(image),
        Ok(Err(e)) => WorkerReply::RenderError(e),
        Err(panic) => WorkerReply::RenderError(RenderError::Failed(panic_message(panic.as_ref()))),
    }
}

/// The reply as JSON on stdout: exit 0, or [`EXIT_WRITE`].
fn write_reply(reply: &WorkerReply) -> ExitCode {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer(&mut out, reply)
        .map_err(std::io::Error::from)
        .and_then(|()| out.flush());
    if let Err(e) = written {
        eprintln!("parse-worker: could not write the result: {e}");
        return ExitCode::from(EXIT_WRITE);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn args_round_trip() {
        let req = WorkerRequest {
            format: Format::Markdown,
            memory_bytes: 1 << 30,
            cpu_seconds: 60,
            ocr_languages: vec!["eng".into(), "deu".into()],
            ocr_seconds: 30,
            pdfium_library: Some(PathBuf::from("/opt/lib/libpdfium.so")),
            pdf_engine: PdfEngine::Pdfium,
            self_check: None,
            render: None,
        };
        assert_eq!(WorkerRequest::from_args(&req.to_args()).unwrap(), req);
        let render = WorkerRequest {
            format: Format::Pdf,
            render: Some(RenderRequest { page: 2, width: 900, highlight: Some("--self-check a passage\nover lines".into()) }),
            ..req.clone()
        };
        assert_eq!(WorkerRequest::from_args(&render.to_args()).unwrap(), render);
        let check = WorkerRequest {
            self_check: Some(SelfCheckRequest {
                read: vec![PathBuf::from("/etc/hostname"), PathBuf::from("/a dir --x")],
                create: vec![PathBuf::from("/tmp/new")],
            }),
            ..req
        };
        assert_eq!(WorkerRequest::from_args(&check.to_args()).unwrap(), check);
    }

    #[test]
    fn a_path_is_refused_the_input_is_stdin() {
        let err = WorkerRequest::from_args(&args(&[
            "--format",
            "pdf",
            "--memory-bytes",
            "1",
            "--cpu-seconds",
            "2",
            "/x.pdf",
        ]))
        .unwrap_err();
        assert!(err.contains("/x.pdf") && err.contains("stdin"), "{err}");
    }

    #[test]
    fn bad_args_are_reported() {
        let err = WorkerRequest::from_args(&args(&["--format", "doc"])).unwrap_err();
        assert!(err.contains("doc"), "{err}");
        let err = WorkerRequest::from_args(&args(&["--format", "pdf"])).unwrap_err();
        assert!(err.contains("--memory-bytes"), "{err}");
        let err = WorkerRequest::from_args(&args(&["--try-read", "/etc/hostname"])).unwrap_err();
        assert!(err.contains("--self-check"), "{err}");
        let err = WorkerRequest::from_args(&args(&["--cpu-seconds", "lots"])).unwrap_err();
        assert!(err.contains("not a number"), "{err}");
        let base = ["--memory-bytes", "1", "--cpu-seconds", "2"];
        let with = |extra: &[&str]| WorkerRequest::from_args(&args(&[&base[..], extra].concat())).unwrap_err();
        let err = with(&["--format", "markdown", "--render-page", "1", "--render-width", "800"]);
        assert!(err.contains("PDFs only"), "{err}");
        let err = with(&["--format", "pdf", "--render-page", "1"]);
        assert!(err.contains("--render-width"), "{err}");
        let err = with(&["--format", "pdf", "--render-page", "0", "--render-width", "800"]);
        assert!(err.contains("start at 1"), "{err}");
        let err = with(&["--format", "pdf", "--render-page", "1", "--render-width", "5000"]);
        assert!(err.contains("1600"), "{err}");
    }
}
