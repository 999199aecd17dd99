//! In-process parsing of real (generated) files: PDF fixtures with known text on known pages,
//! Markdown, HTML and text, and chunking of a parsed PDF end to end.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

mod common;

use common::{pdf_with_pages, read_fixture, text_content, MEDIA_BOX};
use ingest::chunk::WhitespaceCounter;
use ingest::{chunk_document, parse_bytes, ChunkingOptions, Format, ParseError};

#[test]
fn three_page_pdf_has_the_fact_on_page_two() {
    let bytes = read_fixture("three_pages.pdf");
    assert_eq!(
        Format::detect(Some("three_pages.pdf"), &bytes[..64]),
        Some(Format::Pdf)
    );
    let doc = parse_bytes(&bytes, Format::Pdf).unwrap();
    assert_eq!(doc.format, Format::Pdf);
    let numbers: Vec<u32> = doc.pages.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    let with_code: Vec<u32> = doc
        .pages
        .iter()
        .filter(|p| p.text.contains("ZEBRA-4817"))
        .map(|p| p.number)
        .collect();
    assert_eq!(with_code, [2]);
    assert!(doc.pages[0]
        .text
        .contains("Page one introduces the hearth appliance."));
    assert!(doc.pages[2].text.contains("Page three is the conclusion."));
    assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
}

#[test]
fn unicode_pdf_with_embedded_font() {
    let doc = parse_bytes(&read_fixture("unicode.pdf"), Format::Pdf).unwrap();
    let text = &doc.pages[0].text;
    for needle in ["Grüße aus Köln", "naïve café", "Ελληνικά", "русский"] {
        assert!(text.contains(needle), "{needle:?} missing from {text:?}");
    }
}

#[test]
fn owner_password_only_pdf_is_read() {
    let doc = parse_bytes(&read_fixture("owner_password_only.pdf"), Format::Pdf).unwrap();
    assert!(
        doc.pages[0].text.contains("Readable although encrypted"),
        "{:?}",
        doc.pages[0].text
    );
}

#[test]
fn user_password_pdf_is_encrypted_error() {
    let err = parse_bytes(&read_fixture("encrypted.pdf"), Format::Pdf).unwrap_err();
    assert_eq!(err, ParseError::Encrypted);
    assert_eq!(
        err.to_string(),
        "encrypted PDF: hearth cannot read password-protected files"
    );
}

#[test]
fn image_only_pdf_is_no_text() {
    let err = parse_bytes(&read_fixture("image_only.pdf"), Format::Pdf).unwrap_err();
    assert_eq!(err, ParseError::NoText);
    assert_eq!(
        err.to_string(),
        "no extractable text (scanned/image-only PDF?)"
    );
}

#[test]
fn truncated_pdf_is_a_clear_error() {
    let bytes = read_fixture("three_pages.pdf");
    for cut in [bytes.len() / 2, bytes.len() - 40, 20] {
        match parse_bytes(&bytes[..cut], Format::Pdf) {
            Err(ParseError::Malformed(m)) => assert!(m.starts_with("PDF"), "{m}"),
            // lopdf may rebuild enough of a file cut near its end to read some pages.
            Ok(doc) => assert!(cut > bytes.len() / 2, "cut at {cut} parsed: {doc:?}"),
            Err(e) => panic!("cut at {cut}: unexpected {e:?}"),
        }
    }
}

#[test]
fn a_page_that_panics_the_parser_costs_only_that_page() {
    // Page 2 has no MediaBox anywhere (pdf-extract `expect`s one): it panics, the others are read.
    let pdf = pdf_with_pages(&[
        (MEDIA_BOX, text_content("First page text")),
        ("", text_content("Second page text")),
        (MEDIA_BOX, text_content("Third page text")),
    ]);
    let doc = parse_bytes(&pdf, Format::Pdf).unwrap();
    let texts: Vec<&str> = doc.pages.iter().map(|p| p.text.trim()).collect();
    assert_eq!(texts, ["First page text", "", "Third page text"]);
    assert_eq!(doc.warnings.len(), 1);
    assert!(
        doc.warnings[0].starts_with("page 2: parser failed: MediaBox"),
        "{:?}",
        doc.warnings
    );
}

#[test]
fn every_page_failing_is_parser_failed() {
    let pdf = pdf_with_pages(&[("", text_content("a")), ("", text_content("b"))]);
    let err = parse_bytes(&pdf, Format::Pdf).unwrap_err();
    assert!(
        matches!(err, ParseError::ParserFailed(ref m) if m.contains("no page could be read")),
        "{err:?}"
    );
}

#[test]
fn markdown_headings_and_detection() {
    let md = "# Guide\n\nIntro paragraph.\n\n## Install\n\nRun `make`.\n\n```sh\n# a comment, not a heading\n```\n";
    assert_eq!(
        Format::detect(Some("guide.md"), md.as_bytes()),
        Some(Format::Markdown)
    );
    let doc = parse_bytes(md.as_bytes(), Format::Markdown).unwrap();
    let s: Vec<_> = doc.pages[0]
        .sections
        .iter()
        .map(|s| (s.heading.as_str(), s.level))
        .collect();
    assert_eq!(s, [("Guide", 1), ("Install", 2)]);
    let chunks = chunk_document(
        &doc,
        &ChunkingOptions::new(100, 0).unwrap(),
        &WhitespaceCounter,
    );
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].heading.as_deref(), Some("Guide"));
}

#[test]
fn html_drops_scripts_and_keeps_headings() {
    let html = b"<!DOCTYPE html><html><head><title>x</title><script>alert(1)</script></head><body><h1>Report</h1><p>Revenue grew.</p><style>.a{}</style><h2>Risks</h2><p>None &amp; more.</p></body></html>";
    assert_eq!(Format::detect(None, html), Some(Format::Html));
    let doc = parse_bytes(html, Format::Html).unwrap();
    assert_eq!(
        doc.pages[0].text,
        "Report\n\nRevenue grew.\n\nRisks\n\nNone & more."
    );
    let s: Vec<_> = doc.pages[0]
        .sections
        .iter()
        .map(|s| (s.heading.as_str(), s.level, s.char_start))
        .collect();
    assert_eq!(s, [("Report", 1, 0), ("Risks", 2, 23)]);
}

#[test]
fn text_file_round_trip() {
    let doc = parse_bytes("Zeile eins\r\nZeile zwei\n".as_bytes(), Format::Text).unwrap();
    assert_eq!(doc.pages[0].text, "Zeile eins\nZeile zwei\n");
    assert!(doc.pages[0].sections.is_empty());
}

#[test]
fn pdf_chunks_cite_the_right_pages() {
    let doc = parse_bytes(&read_fixture("twelve_pages.pdf"), Format::Pdf).unwrap();
    assert_eq!(doc.pages.len(), 12);
    let opts = ChunkingOptions::new(100, 20).unwrap();
    let chunks = chunk_document(&doc, &opts, &WhitespaceCounter);
    assert!(chunks.len() >= 36, "{}", chunks.len());
    for c in &chunks {
        assert!(c.token_count <= 100);
        // Every sentence names its page: a chunk's text only mentions its own page.
        for other in 1..=12u32 {
            let mentions = c.text.contains(&format!("of page {other} "));
            assert!(
                !mentions || other == c.page,
                "chunk of page {} mentions page {other}",
                c.page
            );
        }
        let page = &doc.pages[(c.page - 1) as usize];
        let slice: String = page
            .text
            .chars()
            .skip(c.char_start)
            .take(c.char_end - c.char_start)
            .collect();
        assert_eq!(slice, c.text);
    }
    assert!(chunks
        .iter()
        .any(|c| c.page == 7 && c.text.contains("item 715")));
}
