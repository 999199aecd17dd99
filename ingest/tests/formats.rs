//! Every format through the real sandboxed worker (Landlock, limits, PDFium and Tesseract loaded
//! before confinement), on documents made by `tests/python/make_documents.py` with python-docx,
//! python-pptx, openpyxl, odfpy, the email package, reportlab, pypdfium2 and img2pdf: each phrase
//! on the page its file put it on, a scanned PDF read by OCR (>= 95 % of its words), a PDF with a
//! broken cross-reference table read by PDFium, and a zip-bomb DOCX refused with the reason.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

use ingest::{Format, Limits, ParseError, ParseFailure, Sandbox};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The documents, made once per test binary.
fn documents() -> &'static (tempfile::TempDir, Value) {
    static DOCS: OnceLock<(tempfile::TempDir, Value)> = OnceLock::new();
    DOCS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let python = repo().join(".venv/bin/python");
        let out = std::process::Command::new(&python)
            .arg(repo().join("tests/python/make_documents.py"))
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (install tests/requirements.txt)", python.display()));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let expected = serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap()).unwrap();
        (dir, expected)
    })
}

fn worker() -> Sandbox {
    Sandbox::new(PathBuf::from(env!("CARGO_BIN_EXE_hearth-parse-worker")), Vec::new(), Limits::default())
}

async fn parse(name: &str) -> Result<ingest::ParsedDocument, ParseFailure> {
    let (dir, _) = documents();
    let path = dir.path().join(name);
    let head = std::fs::read(&path).unwrap();
    let format = Format::detect(Some(name), &head).unwrap_or_else(|| panic!("{name}: format not detected"));
    worker().parse(&path, format).await
}

/// Each expected phrase is on the expected page.
async fn check_pages(name: &str) -> ingest::ParsedDocument {
    let (_, expected) = documents();
    let doc = parse(name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    for (phrase, page) in expected[name].as_object().unwrap() {
        let on = doc.pages.iter().find(|p| p.text.contains(phrase.as_str()));
        let on = on.unwrap_or_else(|| panic!("{name}: {phrase:?} on no page: {:#?}", doc.pages));
        assert_eq!(u64::from(on.number), page.as_u64().unwrap(), "{name}: {phrase:?}");
    }
    doc
}

#[tokio::test]
async fn docx_pages_follow_page_breaks() {
    let doc = check_pages("report.docx").await;
    assert_eq!((doc.format, doc.parser.as_str(), doc.pages.len()), (Format::Docx, "docx", 2));
    assert_eq!(doc.pages[1].sections[0].heading, "Walrus committee");
}

#[tokio::test]
async fn pptx_slide_is_page_with_its_title() {
    let doc = check_pages("deck.pptx").await;
    assert_eq!(doc.pages[1].label.as_deref(), Some("Beta review"));
}

#[tokio::test]
async fn spreadsheets_sheet_is_page() {
    let doc = check_pages("book.xlsx").await;
    assert_eq!(doc.pages[1].label.as_deref(), Some("Staff"));
    let doc = check_pages("garden.ods").await;
    assert_eq!(doc.pages[0].label.as_deref(), Some("Plants"));
}

#[tokio::test]
async fn odt_and_epub() {
    check_pages("notes.odt").await;
    let doc = check_pages("novel.epub").await;
    assert_eq!(doc.pages[1].label.as_deref(), Some("The volcano"));
}

#[tokio::test]
async fn email_carries_its_attachment() {
    let doc = check_pages("mail.eml").await;
    assert_eq!(doc.attachments.len(), 1);
    assert_eq!(doc.attachments[0].filename, "orchard.txt");
    let text = String::from_utf8(doc.attachments[0].bytes.clone()).unwrap();
    assert!(text.contains("tangerine orchard"), "{text}");
}

#[tokio::test]
async fn scanned_pdf_is_read_by_ocr() {
    let (_, expected) = documents();
    let started = std::time::Instant::now();
    let doc = parse("scan.pdf").await.unwrap();
    eprintln!("scanned page OCRed in {:.2} s", started.elapsed().as_secs_f64());
    assert_eq!(doc.parser, "ocr");
    assert!(doc.pages[0].ocr);
    let words: Vec<&str> = expected["scan.pdf"]["words"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let found = words.iter().filter(|w| doc.pages[0].text.contains(**w)).count();
    assert!(found * 100 >= words.len() * 95, "{found} of {} words: {:?}", words.len(), doc.pages[0].text);
    // In-process without engines it is a scan with no text.
    let (dir, _) = documents();
    let bytes = std::fs::read(dir.path().join("scan.pdf")).unwrap();
    assert_eq!(ingest::parse_bytes(&bytes, Format::Pdf), Err(ParseError::NoText));
}

#[tokio::test]
async fn broken_xref_falls_back_to_pdfium() {
    let doc = check_pages("broken.pdf").await;
    assert_eq!(doc.parser, "pdfium");
    let (dir, _) = documents();
    let bytes = std::fs::read(dir.path().join("broken.pdf")).unwrap();
    assert!(matches!(ingest::parse_bytes(&bytes, Format::Pdf), Err(ParseError::Malformed(_))));
}

#[tokio::test]
async fn zip_bomb_docx_is_refused() {
    let err = parse("bomb.docx").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported: DOCX container unpacks to more than 256 MiB, the limit (a zip bomb?)"
    );
}

#[tokio::test]
async fn image_file_is_read_by_ocr() {
    // The scan's page as an image file (PGM), through the image path (leptonica decodes it).
    let (dir, _) = documents();
    let pdf = std::fs::read(dir.path().join("scan.pdf")).unwrap();
    // img2pdf stores the PNG's pixels as a Flate stream; render the PDF with PDFium instead.
    let lib = repo().join("models/libpdfium.so");
    let engine = ingest::parse::PdfiumEngine::load(&lib).unwrap();
    let pgm = ingest::parse::render_pgm(&engine, &pdf, 0, 200.0).unwrap();
    let path = dir.path().join("page.pgm");
    std::fs::write(&path, pgm).unwrap();
    let doc = worker().parse(&path, Format::Image).await.unwrap();
    assert_eq!((doc.format, doc.parser.as_str()), (Format::Image, "ocr"));
    assert!(doc.pages[0].text.contains("office chairs"), "{:?}", doc.pages[0].text);
}
