//! The sandbox end to end: the real worker binary on good and hostile files. Every hostile file
//! must end as a clean `ParseFailure` with a clear message: not a hang, not a crash of this process.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

mod common;

use common::{build_pdf, fixture, pdf_with_pages, stream, text_content, MEDIA_BOX};
use flate2::write::ZlibEncoder;
use flate2::Compression;
use ingest::sandbox::TimeLimit;
use ingest::parse::{Engines, OcrEngine, PdfEngine, PdfiumEngine};
use ingest::{Format, Limits, ParseError, ParseFailure, Sandbox};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn worker(limits: Limits) -> Sandbox {
    Sandbox::new(
        PathBuf::from(env!("CARGO_BIN_EXE_hearth-parse-worker")),
        Vec::new(),
        limits,
    )
}

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn parse(sandbox: &Sandbox, path: &Path) -> Result<ingest::ParsedDocument, ParseFailure> {
    sandbox.parse(path, Format::Pdf).await
}

#[tokio::test]
async fn good_pdf_through_the_worker() {
    let path = fixture("three_pages.pdf");
    let doc = parse(&worker(Limits::default()), &path).await.unwrap();
    assert_eq!(doc.parser, "pdfium");
    assert!(doc.pages[1].text.contains("ZEBRA-4817"));
}

/// Every fixture PDF parses in the confined worker (Landlock: no file can be opened) exactly as in
/// this process with the same engines (PDFium and Tesseract loaded here): the parser needs no
/// font, encoding or other file at run time.
#[tokio::test]
async fn every_fixture_parses_the_same_in_the_confined_worker() {
    let sandbox = worker(Limits::default());
    let pdfium = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/libpdfium.so");
    let engines = Engines {
        pdfium: Some(PdfiumEngine::load(&pdfium).unwrap()),
        ocr: Some(OcrEngine::init(&["eng".to_owned()], Duration::from_secs(120)).unwrap()),
        ..Engines::default()
    };
    for name in [
        "three_pages.pdf",
        "twelve_pages.pdf",
        "unicode.pdf",
        "owner_password_only.pdf",
        "encrypted.pdf",
        "image_only.pdf",
        "structure.pdf",
        "outline.pdf",
        "table.pdf",
        "two_columns.pdf",
    ] {
        let path = fixture(name);
        let local = ingest::parse::parse_with(&std::fs::read(&path).unwrap(), Format::Pdf, &engines);
        let confined = parse(&sandbox, &path).await;
        match (confined, local) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}"),
            (Err(ParseFailure::Parse(a)), Err(b)) => assert_eq!(a, b, "{name}"),
            (a, b) => panic!("{name}: worker {a:?}, in process {b:?}"),
        }
    }
}

/// The worker gets a descriptor, not a path: a file whose name is gone still parses.
#[tokio::test]
async fn the_input_is_a_descriptor_not_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "gone.md", b"# Gone\n\nNo name on disk any more.\n");
    let file = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let doc = worker(Limits::default())
        .parse_file(file, Format::Markdown)
        .await
        .unwrap();
    assert_eq!(doc.pages[0].sections[0].heading, "Gone");
    assert!(doc.pages[0].text.contains("No name on disk"));
}

#[tokio::test]
async fn markdown_through_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "a.md", "# Título\n\ncuerpo\n".as_bytes());
    let doc = worker(Limits::default())
        .parse(&path, Format::Markdown)
        .await
        .unwrap();
    assert_eq!(doc.pages[0].sections[0].heading, "Título");
}

#[tokio::test]
async fn encrypted_pdf() {
    let err = parse(&worker(Limits::default()), &fixture("encrypted.pdf"))
        .await
        .unwrap_err();
    assert_eq!(err, ParseFailure::Parse(ParseError::Encrypted));
    assert_eq!(
        err.to_string(),
        "encrypted PDF: hearth cannot read password-protected files"
    );
}

#[tokio::test]
async fn image_only_pdf() {
    let err = parse(&worker(Limits::default()), &fixture("image_only.pdf"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no extractable text (scanned/image-only PDF?)"
    );
}

#[tokio::test]
async fn truncated_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("three_pages.pdf")).unwrap();
    let path = write_temp(&dir, "cut.pdf", &bytes[..bytes.len() / 2]);
    let err = parse(&worker(Limits::default()), &path).await.unwrap_err();
    assert!(
        matches!(err, ParseFailure::Parse(ParseError::Malformed(_))),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("malformed PDF: "), "{err}");
}

#[tokio::test]
async fn missing_file_is_io() {
    let err = parse(&worker(Limits::default()), Path::new("/nonexistent/x.pdf"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ParseFailure::Io(ref m) if m.contains("No such file")),
        "{err:?}"
    );
    assert!(!err.is_file_problem());
}

/// Arrays nested 100k deep, both as an object and inside the page's content stream.
#[tokio::test]
async fn deeply_nested_arrays() {
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let dir = tempfile::tempdir().unwrap();
    let in_content = pdf_with_pages(&[(
        MEDIA_BOX,
        stream("", format!("BT /F1 12 Tf {nested} TJ ET").as_bytes()),
    )]);
    let in_object =
        pdf_with_pages(&[(&format!("{MEDIA_BOX} /Annots {nested}"), text_content("x"))]);
    for (name, bytes) in [("content.pdf", in_content), ("object.pdf", in_object)] {
        let path = write_temp(&dir, name, &bytes);
        let started = Instant::now();
        let err = match parse(&worker(Limits::default()), &path).await {
            // PDFium reads the page whose annotation list pdf-extract gives up on.
            Ok(doc) => {
                assert_eq!((name, doc.parser.as_str()), ("object.pdf", "pdfium"), "{doc:?}");
                continue;
            }
            Err(err) => err,
        };
        eprintln!("{name}: {err} ({:?})", started.elapsed());
        assert!(err.is_file_problem(), "{name}: {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

/// A form XObject that draws itself: pdf-extract recurses without a bound and overflows the stack,
/// which no `catch_unwind` survives — in-process this would take the daemon down. PDFium reads it.
#[tokio::test]
async fn self_drawing_form_xobject_overflows_the_worker_stack_only() {
    let form_resources = "/Resources << /XObject << /X 5 0 R >> /Font << /F1 3 0 R >> >>";
    let pdf = build_pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!("<< /Type /Pages /Kids [4 0 R] /Count 1 {MEDIA_BOX} >>").into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 3 0 R >> /XObject << /X 5 0 R >> >> /Contents 6 0 R >>".to_vec(),
        stream(
            &format!("/Type /XObject /Subtype /Form /BBox [0 0 612 792] {form_resources}"),
            b"BT /F1 12 Tf (again) Tj ET /X Do",
        ),
        stream("", b"/X Do"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "recursive.pdf", &pdf);
    // PDFium, first as shipped, bounds the recursion and reads the page.
    let doc = parse(&worker(Limits::default()), &path).await.unwrap();
    assert_eq!(doc.parser, "pdfium");
    assert!(doc.pages[0].text.contains("again"), "{doc:?}");
    // pdf-extract alone (as for a page PDFium cannot read) overflows, inside the worker only.
    let err = worker(Limits::default())
        .with_pdf_engine(PdfEngine::PdfExtract)
        .parse(&path, Format::Pdf)
        .await
        .unwrap_err();
    eprintln!("recursive form: {err}");
    match &err {
        ParseFailure::Crashed {
            signal: Some(6),
            stderr_tail,
            ..
        } => {
            assert!(
                stderr_tail.contains("overflowed its stack"),
                "{stderr_tail}"
            )
        }
        // Each level also inflates and copies the stream: memory may run out first.
        ParseFailure::OutOfMemory { .. } => {}
        other => panic!("{other:?}"),
    }
}

/// 40 form XObjects, each drawing the next one twice: 2^40 text draws from a 5 KB file. The CPU
/// limit ends it.
#[tokio::test]
async fn exponential_form_xobjects_hit_the_cpu_limit() {
    let levels = 40;
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!("<< /Type /Pages /Kids [4 0 R] /Count 1 {MEDIA_BOX} >>").into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 3 0 R >> /XObject << /N 6 0 R >> >> /Contents 5 0 R >>".to_vec(),
        stream("", b"/N Do"),
    ];
    for level in 0..levels {
        let id = 6 + level;
        let (resources, content) = if level + 1 < levels {
            (
                format!("/XObject << /N {} 0 R >>", id + 1),
                b"/N Do /N Do".to_vec(),
            )
        } else {
            (String::new(), b"BT /F1 12 Tf (x) Tj ET".to_vec())
        };
        objects.push(stream(
            &format!("/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> {resources} >>"),
            &content,
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "laughs.pdf", &build_pdf(&objects));
    let limits = Limits {
        cpu_seconds: 2,
        wall: Duration::from_secs(30),
        ..Limits::default()
    };
    let err = parse(&worker(limits), &path).await.unwrap_err();
    eprintln!("exponential forms: {err}");
    assert!(
        matches!(
            err,
            ParseFailure::TimedOut {
                kind: TimeLimit::Cpu,
                ..
            } | ParseFailure::OutOfMemory { .. }
        ),
        "{err:?}"
    );
}

/// HTML nested 100k deep costs html5ever about a minute of CPU (quadratic): the CPU limit ends it.
#[tokio::test]
async fn deeply_nested_html_hits_the_cpu_limit() {
    let depth = 100_000;
    let html = format!("{}deep{}", "<div>".repeat(depth), "</div>".repeat(depth));
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "deep.html", html.as_bytes());
    let limits = Limits {
        cpu_seconds: 1,
        wall: Duration::from_secs(30),
        ..Limits::default()
    };
    let err = worker(limits).parse(&path, Format::Html).await.unwrap_err();
    assert_eq!(
        err,
        ParseFailure::TimedOut {
            kind: TimeLimit::Cpu,
            limit: Duration::from_secs(1)
        }
    );
}

/// A content stream that inflates to 2 GiB from 2 MB: the 1 GiB memory limit (or failing that
/// the CPU limit) must stop it, within seconds.
#[tokio::test]
async fn decompression_bomb_single_stream() {
    let bomb = deflate_spaces(2048);
    let pdf = pdf_with_pages(&[(MEDIA_BOX, stream("/Filter /FlateDecode", &bomb))]);
    check_bomb("single.pdf", &pdf).await;
}

/// One 256 MiB stream referenced 16 times from the page's /Contents: a 4 GiB page from 256 KB.
#[tokio::test]
async fn decompression_bomb_repeated_stream() {
    let bomb = deflate_spaces(256);
    let refs = vec!["4 0 R"; 16].join(" ");
    let pdf = build_pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!("<< /Type /Pages /Kids [5 0 R] /Count 1 {MEDIA_BOX} >>").into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        stream("/Filter /FlateDecode", &bomb),
        format!("<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 3 0 R >> >> /Contents [{refs}] >>").into_bytes(),
    ]);
    check_bomb("repeated.pdf", &pdf).await;
}

/// `mib` MiB of spaces, zlib-compressed (about 1000:1).
fn deflate_spaces(mib: usize) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::best());
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..mib {
        enc.write_all(&spaces).unwrap();
    }
    enc.finish().unwrap()
}

async fn check_bomb(name: &str, pdf: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, name, pdf);
    let limits = Limits {
        cpu_seconds: 20,
        wall: Duration::from_secs(40),
        ..Limits::default()
    };
    let started = Instant::now();
    let err = parse(&worker(limits), &path).await.unwrap_err();
    eprintln!(
        "{name} ({} bytes): {err} after {:?}",
        pdf.len(),
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            ParseFailure::OutOfMemory { .. } | ParseFailure::TimedOut { .. }
        ),
        "{name}: {err:?}"
    );
}

#[tokio::test]
async fn wall_clock_limit_kills_a_hung_worker() {
    // `sleep` ignores the worker arguments' meaning but takes them as operands and fails... so use
    // a shell that sleeps whatever it is given.
    let sandbox = Sandbox::new(
        PathBuf::from("/bin/sh"),
        vec!["-c".into(), "sleep 30".into(), "sh".into()],
        Limits {
            wall: Duration::from_millis(300),
            ..Limits::default()
        },
    );
    let started = Instant::now();
    let err = sandbox
        .parse(&fixture("three_pages.pdf"), Format::Pdf)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ParseFailure::TimedOut {
            kind: TimeLimit::Wall,
            limit: Duration::from_millis(300)
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn cpu_limit_is_reported_as_timeout() {
    // A busy loop under the kind of limit the worker sets: a soft RLIMIT_CPU below the hard one (SIGXCPU first).
    let sandbox = Sandbox::new(
        PathBuf::from("/bin/sh"),
        vec![
            "-c".into(),
            "ulimit -S -t 1; while :; do :; done".into(),
            "sh".into(),
        ],
        Limits {
            cpu_seconds: 1,
            wall: Duration::from_secs(30),
            ..Limits::default()
        },
    );
    let err = sandbox
        .parse(&fixture("three_pages.pdf"), Format::Pdf)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ParseFailure::TimedOut {
            kind: TimeLimit::Cpu,
            limit: Duration::from_secs(1)
        }
    );
    assert_eq!(err.to_string(), "parsing exceeded the 1 s CPU time limit");
}

#[tokio::test]
async fn a_child_killed_by_a_signal_is_a_crash() {
    let sandbox = Sandbox::new(
        PathBuf::from("/bin/sh"),
        vec![
            "-c".into(),
            "echo 'about to fault' >&2; kill -SEGV $$".into(),
            "sh".into(),
        ],
        Limits::default(),
    );
    let err = sandbox
        .parse(&fixture("three_pages.pdf"), Format::Pdf)
        .await
        .unwrap_err();
    match &err {
        ParseFailure::Crashed {
            signal,
            stderr_tail,
            ..
        } => {
            assert_eq!(*signal, Some(11));
            assert!(stderr_tail.contains("about to fault"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "parser crashed (signal 11, SIGSEGV) on this file"
    );
}

#[tokio::test]
async fn oversized_output_is_refused() {
    let sandbox = Sandbox::new(
        PathBuf::from("/bin/sh"),
        vec!["-c".into(), "yes '{\"ok\": 1}'".into(), "sh".into()],
        Limits {
            max_output_bytes: 1 << 20,
            wall: Duration::from_secs(30),
            ..Limits::default()
        },
    );
    let started = Instant::now();
    let err = sandbox
        .parse(&fixture("three_pages.pdf"), Format::Pdf)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ParseFailure::BadOutput(ref m) if m.contains("output limit")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the writer was stopped, not waited for"
    );
}

#[tokio::test]
async fn garbage_output_is_bad_output() {
    let sandbox = Sandbox::new(
        PathBuf::from("/bin/sh"),
        vec!["-c".into(), "echo not json".into(), "sh".into()],
        Limits::default(),
    );
    let err = sandbox
        .parse(&fixture("three_pages.pdf"), Format::Pdf)
        .await
        .unwrap_err();
    assert!(matches!(err, ParseFailure::BadOutput(_)), "{err:?}");
}

#[tokio::test]
async fn missing_program_is_io() {
    let sandbox = Sandbox::new(
        PathBuf::from("/nonexistent/hearth"),
        vec![],
        Limits::default(),
    );
    let err = sandbox
        .parse(&fixture("three_pages.pdf"), Format::Pdf)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ParseFailure::Io(ref m) if m.contains("could not start")),
        "{err:?}"
    );
}

#[tokio::test]
async fn worker_rejects_bad_arguments() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth-parse-worker"))
        .args(["--format", "doc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format \"doc\""));
    assert!(out.stdout.is_empty());
}
