//! PDF structure end to end through the real sandboxed worker (PDFium loaded, Landlock on):
//! headings from type and from the outline become chunks' section paths, a ruled table comes out
//! as a Markdown table whose rows no chunk splits, and a two-column page reads its left column
//! before its right. The fixtures are made by `tests/fixtures/make_structure_fixtures.py`.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

mod common;

use common::fixture;
use ingest::chunk::WhitespaceCounter;
use ingest::{chunk_document, ChunkingOptions, Format, Limits, ParsedDocument, Sandbox};
use std::path::PathBuf;

async fn parse(name: &str) -> ParsedDocument {
    let sandbox = Sandbox::new(PathBuf::from(env!("CARGO_BIN_EXE_hearth-parse-worker")), Vec::new(), Limits::default());
    let doc = sandbox.parse(&fixture(name), Format::Pdf).await.unwrap();
    assert_eq!(doc.parser, "pdfium", "{name}: {:?}", doc.warnings);
    doc
}

fn headings(doc: &ParsedDocument) -> Vec<(u32, String, u8)> {
    doc.pages
        .iter()
        .flat_map(|p| p.sections.iter().map(move |s| (p.number, s.heading.clone(), s.level)))
        .collect()
}

/// Every heading's `char_start` points at its text in the page.
fn check_offsets(doc: &ParsedDocument) {
    for page in &doc.pages {
        for s in &page.sections {
            let at: String = page.text.chars().skip(s.char_start).take(s.heading.chars().count()).collect();
            assert_eq!(at, s.heading, "page {}", page.number);
        }
    }
}

const EXPECTED: [(u32, &str, u8); 5] =
    [(1, "1 Install", 1), (1, "1.1 Packages", 2), (1, "1.2 Models", 2), (2, "2 Use", 1), (2, "2.1 Questions", 2)];

/// Section paths of the chunks of `doc`, cut small, by the first words of each chunk.
fn paths(doc: &ParsedDocument) -> Vec<(String, Vec<String>)> {
    let opts = ChunkingOptions { max_chunk_size_tokens: 30, chunk_overlap_tokens: 0 };
    chunk_document(doc, &opts, &WhitespaceCounter)
        .into_iter()
        .map(|c| (c.text.split_whitespace().take(3).collect::<Vec<_>>().join(" "), c.section_path))
        .collect()
}

fn check_paths(doc: &ParsedDocument) {
    let paths = paths(doc);
    let path_of = |start: &str| {
        paths.iter().find(|(s, _)| s == start).map(|(_, p)| p.clone()).unwrap_or_else(|| panic!("{start}: {paths:#?}"))
    };
    assert_eq!(path_of("Install them with"), ["1 Install", "1.1 Packages"]);
    // Page 2 opens inside 1.2 Models: the path carries over the page break.
    assert_eq!(path_of("Models that fail"), ["1 Install", "1.2 Models"]);
    // A level-1 heading closes 1.2 Models.
    let last = &paths.last().unwrap().1;
    assert_eq!(last.first().map(String::as_str), Some("2 Use"), "{paths:#?}");
}

/// The fixtures' headings are [`EXPECTED`], with their offsets and section paths.
fn check_headings(doc: &ParsedDocument) {
    let want: Vec<(u32, String, u8)> = EXPECTED.iter().map(|(p, h, l)| (*p, h.to_string(), *l)).collect();
    assert_eq!(headings(doc), want);
    check_offsets(doc);
    check_paths(doc);
}

#[tokio::test]
async fn headings_from_type_become_section_paths() {
    let doc = parse("structure.pdf").await;
    check_headings(&doc);
}

#[tokio::test]
async fn the_outline_names_headings_the_type_does_not_show() {
    // Every heading of outline.pdf is printed in the body's size and face.
    let doc = parse("outline.pdf").await;
    check_headings(&doc);
}

#[tokio::test]
async fn a_ruled_table_is_a_markdown_table_and_chunks_keep_its_rows() {
    let doc = parse("table.pdf").await;
    let text = &doc.pages[0].text;
    let table = "| Loaf | Flour | Weight | Price |\n\
                 | --- | --- | --- | --- |\n\
                 | Country loaf | Wheat | 900 g | 4.20 |\n\
                 | Rye sourdough | Rye | 1000 g | 5.10 |\n\
                 | Baguette | Wheat | 250 g | 1.30 |\n\
                 | Spelt tin | Spelt | 750 g | 4.80 |\n\
                 | Seeded roll | Wheat, seeds | 80 g | 0.90 |\n";
    assert!(text.contains(table), "{text}");
    assert!(text.starts_with("Prices of the bakery's loaves") && text.trim_end().ends_with("changes on Mondays."), "{text}");
    // Chunks of at most 12 words: a row is 8 to 11, so most chunks hold one or two rows.
    for max in [12, 20, 30] {
        let opts = ChunkingOptions { max_chunk_size_tokens: max, chunk_overlap_tokens: max / 3 };
        let chunks = chunk_document(&doc, &opts, &WhitespaceCounter);
        assert!(chunks.len() > 2, "{chunks:#?}");
        for c in &chunks {
            for line in c.text.lines().filter(|l| l.contains('|')) {
                assert!(line.starts_with('|') && line.ends_with('|'), "max {max}: a row split: {line:?} in {:?}", c.text);
                assert!(table.contains(&format!("{line}\n")), "max {max}: not a whole row: {line:?}");
            }
        }
    }
}

#[tokio::test]
async fn two_columns_read_left_then_right() {
    // The file draws left line 1, right line 1, left line 2...: content order interleaves them.
    let doc = parse("two_columns.pdf").await;
    let text = &doc.pages[0].text;
    let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle:?} missing: {text}"));
    let title = at("Field notes on sourdough");
    let lefts: Vec<usize> = (1..=12).map(|i| at(&format!("Left column sentence {i} tells"))).collect();
    let rights: Vec<usize> = (1..=12).map(|i| at(&format!("Right column sentence {i} tells"))).collect();
    let closing = at("A closing line under both columns");
    assert!(title < lefts[0], "{text}");
    assert!(lefts.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(lefts[11] < rights[0], "the right column starts after the left ends: {text}");
    assert!(rights.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(rights[11] < closing, "{text}");
    // No line holds text of both columns.
    assert!(text.lines().all(|l| !(l.contains("Left column") && l.contains("Right column"))), "{text}");
    assert_eq!(headings(&doc), [(1, "Field notes on sourdough, in two columns".to_owned(), 1)]);
}
