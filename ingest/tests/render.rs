//! Page images through the real sandboxed worker (`hearth-parse-worker --render-page`) with the
//! real PDFium (`models/libpdfium.so`) on the repository's example PDF: the PNG decodes at the
//! requested width, pages differ, a passage on the page is painted yellow where it is (and the
//! rest of the page is not), a passage that is not there is reported as not found, and a page out
//! of range, a file that is not a PDF, an encrypted PDF and a missing PDFium are clear errors.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

use ingest::sandbox::EngineOptions;
use ingest::{Limits, PageImage, RenderError, RenderFailure, RenderRequest, Sandbox};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn worker() -> Sandbox {
    let engines = EngineOptions { pdfium_library: Some(repo().join("models/libpdfium.so")), ..EngineOptions::default() };
    Sandbox::new(PathBuf::from(env!("CARGO_BIN_EXE_hearth-parse-worker")), Vec::new(), Limits::default()).with_engines(engines)
}

/// The bread guide: page 1 the starter, page 2 mixing and shaping, page 3 baking.
fn guide() -> std::fs::File {
    std::fs::File::open(repo().join("examples/bread-guide.pdf")).unwrap()
}

async fn render(sandbox: &Sandbox, page: u32, width: u32, highlight: Option<&str>) -> Result<PageImage, RenderFailure> {
    let request = RenderRequest { page, width, highlight: highlight.map(str::to_owned) };
    sandbox.render_page(guide(), request).await
}

/// The decoded RGB pixels, with the size the PNG header states.
fn decode(image: &PageImage) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(&image.png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// Rows that hold highlight-yellow pixels (paper multiplied by the tint: red high, blue low).
fn yellow_rows(width: u32, rgb: &[u8]) -> Vec<usize> {
    rgb.chunks(width as usize * 3)
        .enumerate()
        .filter(|(_, row)| row.chunks_exact(3).filter(|p| p[0] > 200 && p[1] > 180 && p[2] < 140).count() > 20)
        .map(|(y, _)| y)
        .collect()
}

#[tokio::test]
async fn pages_render_at_the_requested_width_and_differ() {
    let sandbox = worker();
    let one = render(&sandbox, 1, 800, None).await.unwrap();
    let two = render(&sandbox, 2, 800, None).await.unwrap();
    assert_eq!(one.page_count, 3);
    assert_eq!(one.highlight, None);
    let (w1, h1, px1) = decode(&one);
    let (w2, h2, px2) = decode(&two);
    assert_eq!((w1, h1), (one.width, one.height));
    assert_eq!(w1, 800, "the requested width");
    // A4 portrait: 595 x 842 pt.
    assert!((1125..=1140).contains(&h1), "height {h1}");
    assert_eq!((w1, h1), (w2, h2));
    let differing = px1.iter().zip(&px2).filter(|(a, b)| a != b).count();
    assert!(differing > 10_000, "page 2 differs from page 1 in {differing} bytes only");
    let dark = px1.chunks_exact(3).filter(|p| p[0] < 100).count();
    assert!(dark > 2_000, "page 1 has text on it ({dark} dark pixels)");
    assert!(yellow_rows(w1, &px1).is_empty(), "no highlight was asked for");

    // A narrow rendering is that narrow.
    let small = render(&sandbox, 3, 300, None).await.unwrap();
    assert_eq!(decode(&small).0, 300);
}

#[tokio::test]
async fn the_cited_passage_is_painted_where_it_is() {
    let sandbox = worker();
    // The page's heading (at its top) and its last paragraph, with the line breaks and spacing
    // of the parsed text rather than the PDF's.
    let top = render(&sandbox, 2, 800, Some("Mixing  and\nShaping the Dough")).await.unwrap();
    assert_eq!(top.highlight.map(|h| (h.found, h.whole)), Some((true, true)));
    let (w, h, px) = decode(&top);
    let rows = yellow_rows(w, &px);
    assert!(!rows.is_empty(), "no yellow on the page");
    assert!(rows.iter().all(|&y| y < h as usize / 5), "the heading is at the top: rows {:?}..{:?}", rows.first(), rows.last());

    let passage = "Bulk fermentation ends when the dough has grown by about half and shows bubbles at the edges, \
                   usually after four to six hours at 24 degrees Celsius. Shape the dough into a tight round, place it in \
                   a floured basket and let it proof overnight in the refrigerator.";
    let low = render(&sandbox, 2, 800, Some(passage)).await.unwrap();
    assert_eq!(low.highlight.map(|h| h.found), Some(true));
    let (w, _, px) = decode(&low);
    let rows = yellow_rows(w, &px);
    assert!(rows.len() >= 3 * 10, "three lines are painted: {} rows", rows.len());
    assert!(rows.iter().all(|&y| y > 200), "the last paragraph is below the heading: first row {:?}", rows.first());

    // A passage from another page is not on this one: reported, nothing painted.
    let elsewhere = render(&sandbox, 2, 800, Some("Bake the loaf in a cast iron pot with a lid")).await.unwrap();
    assert_eq!(elsewhere.highlight.map(|h| h.found), Some(false));
    let (w, _, px) = decode(&elsewhere);
    assert!(yellow_rows(w, &px).is_empty(), "nothing is painted for a passage that is not there");
    // ...and it is found on its own page.
    let baking = render(&sandbox, 3, 800, Some("Bake the loaf in a cast iron pot with a lid")).await.unwrap();
    assert_eq!(baking.highlight.map(|h| h.found), Some(true));
}

#[tokio::test]
async fn bad_requests_are_clear_errors() {
    let sandbox = worker();
    match render(&sandbox, 4, 800, None).await {
        Err(RenderFailure::Render(RenderError::PageOutOfRange { page: 4, page_count: 3 })) => {}
        other => panic!("page 4 of 3: {other:?}"),
    }
    let err = render(&sandbox, 0, 800, None).await.unwrap_err();
    assert!(err.to_string().contains("start at 1"), "{err}");
    let err = render(&sandbox, 1, 5000, None).await.unwrap_err();
    assert!(err.to_string().contains("1600"), "{err}");

    // Not a PDF: PDFium says what it cannot open.
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.md");
    std::fs::write(&notes, "# Notes\n\nNot a PDF at all.\n").unwrap();
    let request = RenderRequest { page: 1, width: 800, highlight: None };
    match sandbox.render_page(std::fs::File::open(&notes).unwrap(), request.clone()).await {
        Err(RenderFailure::Render(RenderError::Document(e))) => assert!(e.to_string().contains("PDF"), "{e}"),
        other => panic!("a Markdown file: {other:?}"),
    }

    // A password-protected PDF: the reason, as for a parse.
    let encrypted = std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encrypted.pdf")).unwrap();
    match sandbox.render_page(encrypted, request.clone()).await {
        Err(RenderFailure::Render(RenderError::Document(ingest::ParseError::Encrypted))) => {}
        other => panic!("an encrypted PDF: {other:?}"),
    }

    // No PDFium: a clear reason, not a crash.
    let engines = EngineOptions { pdfium_library: Some(dir.path().join("libpdfium.so")), ..EngineOptions::default() };
    let without = Sandbox::new(PathBuf::from(env!("CARGO_BIN_EXE_hearth-parse-worker")), Vec::new(), Limits::default()).with_engines(engines);
    match without.render_page(guide(), request).await {
        Err(RenderFailure::Render(RenderError::PdfiumUnavailable(why))) => assert!(why.contains("libpdfium.so"), "{why}"),
        other => panic!("without PDFium: {other:?}"),
    }
}
