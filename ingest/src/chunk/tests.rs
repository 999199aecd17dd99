//! Unit and property tests of the chunker.
#![allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]

use super::*;
use crate::parse::{Format, Section};
use proptest::prelude::*;
use std::cell::Cell;

fn page(text: &str, sections: Vec<Section>) -> ParsedDocument {
    ParsedDocument {
        format: Format::Markdown,
        pages: vec![Page {
            number: 1,
            text: text.to_owned(),
            sections,
            ..Page::default()
        }],
        warnings: Vec::new(),
        parser: String::new(),
        attachments: Vec::new(),
    }
}

fn opts(max: usize, overlap: usize) -> ChunkingOptions {
    ChunkingOptions {
        max_chunk_size_tokens: max,
        chunk_overlap_tokens: overlap,
    }
}

fn char_slice(text: &str, start: usize, end: usize) -> String {
    text.chars().skip(start).take(end - start).collect()
}

/// Checks every invariant of the module header; returns the chunks.
fn check(doc: &ParsedDocument, o: &ChunkingOptions, counter: &dyn TokenCounter) -> Vec<Chunk> {
    check_with(doc, o, counter, true)
}

/// `additive`: the counter's count of a text is at most the sum over its pieces, so overlaps
/// measured by the counter are bounded too.
fn check_with(
    doc: &ParsedDocument,
    o: &ChunkingOptions,
    counter: &dyn TokenCounter,
    additive: bool,
) -> Vec<Chunk> {
    let chunks = chunk_document(doc, o, counter);
    for p in &doc.pages {
        let mine: Vec<&Chunk> = chunks.iter().filter(|c| c.page == p.number).collect();
        let n_chars = p.text.chars().count();
        let mut covered = vec![false; n_chars];
        for c in &mine {
            assert!(c.char_start < c.char_end && c.char_end <= n_chars, "{c:?}");
            assert_eq!(c.text, char_slice(&p.text, c.char_start, c.char_end));
            assert_eq!(c.text.trim(), c.text, "chunks are trimmed");
            assert_eq!(c.token_count, counter.count(&c.text));
            assert!(
                c.token_count <= o.max_chunk_size_tokens,
                "{} tokens > {}: {:?}",
                c.token_count,
                o.max_chunk_size_tokens,
                c.text
            );
            covered[c.char_start..c.char_end]
                .iter_mut()
                .for_each(|x| *x = true);
        }
        for (i, ch) in p.text.chars().enumerate() {
            assert!(
                covered[i] || ch.is_whitespace(),
                "char {i} {ch:?} not covered"
            );
        }
        for w in mine.windows(2) {
            assert!(
                w[0].char_start < w[1].char_start && w[0].char_end < w[1].char_end,
                "chunks move forward"
            );
            if additive && w[1].char_start < w[0].char_end {
                let shared = char_slice(&p.text, w[1].char_start, w[0].char_end);
                let overlap = counter.count(&shared);
                assert!(
                    overlap <= o.chunk_overlap_tokens.min(o.max_chunk_size_tokens / 2),
                    "overlap {overlap} > {}",
                    o.chunk_overlap_tokens
                );
            }
        }
    }
    chunks
}

#[test]
fn options_validation_names_the_field() {
    assert!(ChunkingOptions::default().validate().is_ok());
    let e = ChunkingOptions::new(50, 10).unwrap_err();
    assert!(e.to_string().starts_with("max_chunk_size_tokens"), "{e}");
    let e = ChunkingOptions::new(5000, 10).unwrap_err();
    assert!(e.to_string().starts_with("max_chunk_size_tokens"), "{e}");
    let e = ChunkingOptions::new(800, 401).unwrap_err();
    assert!(e.to_string().starts_with("chunk_overlap_tokens"), "{e}");
    assert!(ChunkingOptions::new(800, 400).is_ok());
    assert!(ChunkingOptions::new(100, 0).is_ok());
    assert_eq!(ChunkingOptions::default().capped(512), opts(512, 256));
    assert_eq!(
        ChunkingOptions::default().capped(4096),
        ChunkingOptions::default()
    );
}

#[test]
fn options_json_rejects_unknown_fields() {
    let o: ChunkingOptions =
        serde_json::from_str(r#"{"max_chunk_size_tokens":300,"chunk_overlap_tokens":20}"#).unwrap();
    assert_eq!(o, opts(300, 20));
    assert!(serde_json::from_str::<ChunkingOptions>(
        r#"{"max_chunk_size_tokens":300,"chunk_overlap_tokens":20,"x":1}"#
    )
    .is_err());
}

#[test]
fn empty_and_blank_pages_have_no_chunks() {
    assert!(chunk_document(&page("", vec![]), &opts(100, 0), &WhitespaceCounter).is_empty());
    assert!(
        chunk_document(&page(" \n\t\n ", vec![]), &opts(100, 0), &WhitespaceCounter).is_empty()
    );
}

#[test]
fn small_page_is_one_trimmed_chunk() {
    let doc = page("\n  Hello there. General Kenobi!\n\n", vec![]);
    let chunks = check(&doc, &opts(100, 50), &WhitespaceCounter);
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].text, "Hello there. General Kenobi!");
    assert_eq!((chunks[0].char_start, chunks[0].token_count), (3, 4));
}

#[test]
fn chunks_prefer_paragraph_boundaries() {
    // Paragraphs of 30 words; max 100 with no overlap: each chunk should end at a paragraph.
    let para = |k: usize| format!("{} end{k}.", vec![format!("p{k}word"); 29].join(" "));
    let text = (0..10).map(para).collect::<Vec<_>>().join("\n\n");
    let chunks = check(&page(&text, vec![]), &opts(100, 0), &WhitespaceCounter);
    for c in &chunks {
        assert!(
            c.text.ends_with('.'),
            "chunk ends mid-paragraph: ...{:?}",
            &c.text[c.text.len() - 20..]
        );
    }
    for c in &chunks[..chunks.len() - 1] {
        assert!(
            c.token_count >= 50,
            "chunks stay at least half full: {}",
            c.token_count
        );
    }
    assert_eq!(chunks.len(), 4); // 90 + 90 + 90 + 30 words
}

#[test]
fn chunks_prefer_sentence_ends_over_spaces() {
    let sentence = |k: usize| format!("{} stop{k}.", ["w"; 11].join(" "));
    let text = (0..40).map(sentence).collect::<Vec<_>>().join(" ");
    let chunks = check(&page(&text, vec![]), &opts(100, 30), &WhitespaceCounter);
    assert!(chunks.len() > 4);
    for c in &chunks {
        assert!(c.text.ends_with('.'), "{:?}", c.text);
        assert!(
            c.text.starts_with('w'),
            "overlap starts at a sentence: {:?}",
            &c.text[..10]
        );
    }
}

#[test]
fn overlap_is_close_to_the_setting() {
    let text = (0..3000)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let chunks = check(&page(&text, vec![]), &opts(800, 400), &WhitespaceCounter);
    for w in chunks.windows(2) {
        let shared = char_slice(&text, w[1].char_start, w[0].char_end);
        let n = WhitespaceCounter.count(&shared);
        assert!((300..=400).contains(&n), "overlap {n}");
    }
    assert!(chunks.iter().rev().skip(1).all(|c| c.token_count >= 700));
}

#[test]
fn headings_start_chunks_and_name_them() {
    let body = |w: &str| vec![w; 60].join(" ") + ".";
    let text = format!("# Alpha\n\n{}\n\n# Beta\n\n{}\n", body("a"), body("b"));
    let beta_at = text.find("# Beta").unwrap();
    let sections = vec![
        Section {
            heading: "Alpha".into(),
            level: 1,
            char_start: 0,
        },
        Section {
            heading: "Beta".into(),
            level: 1,
            char_start: text[..beta_at].chars().count(),
        },
    ];
    let chunks = check(&page(&text, sections), &opts(100, 0), &WhitespaceCounter);
    assert_eq!(chunks.len(), 2, "{chunks:#?}");
    assert!(chunks[1].text.starts_with("# Beta"));
    assert_eq!(chunks[0].heading.as_deref(), Some("Alpha"));
    assert_eq!(chunks[1].heading.as_deref(), Some("Beta"));
}

#[test]
fn chunks_never_span_pages() {
    let doc = ParsedDocument {
        format: Format::Pdf,
        pages: (1..=3)
            .map(|n| Page {
                number: n,
                text: format!("page {n} says hello."),
                sections: vec![],
                ..Page::default()
            })
            .collect(),
        warnings: vec![],
        parser: String::new(),
        attachments: Vec::new(),
    };
    let chunks = check(&doc, &opts(100, 50), &WhitespaceCounter);
    let got: Vec<_> = chunks.iter().map(|c| (c.page, c.text.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "page 1 says hello."),
            (2, "page 2 says hello."),
            (3, "page 3 says hello.")
        ]
    );
}

#[test]
fn unbroken_text_is_hard_cut_on_char_boundaries() {
    let text = "日本語".repeat(2000);
    let counter = CharCounter { chars_per_token: 1 };
    let chunks = check(&page(&text, vec![]), &opts(100, 20), &counter);
    assert!(chunks.len() > 60);
}

#[test]
fn tokenizer_calls_are_linear() {
    let calls = Cell::new(0usize);
    let chars = Cell::new(0usize);
    let counter = |t: &str| {
        calls.set(calls.get() + 1);
        chars.set(chars.get() + t.len());
        t.split_whitespace().count()
    };
    let text = "Some words here. ".repeat(50_000); // 850 KB
    let chunks = chunk_document(&page(&text, vec![]), &opts(800, 400), &counter);
    assert!(chunks.len() > 300);
    // Each byte is counted about once in segments and twice in chunks (overlap 1/2).
    assert!(
        chars.get() < 4 * text.len(),
        "tokenized {} bytes for {}",
        chars.get(),
        text.len()
    );
    assert!(calls.get() < 60_000, "{} calls", calls.get());
}

#[test]
fn non_additive_tokenizer_is_rechecked() {
    // A whole that counts more than the sum of its pieces (10% more per 10 words): the segment
    // sums undercount, and the final check must give segments back until the chunk fits.
    let counter = |t: &str| -> usize {
        let words = t.split_whitespace().count();
        words + words / 10 // the whole costs more than the sum of its short pieces
    };
    let text = (0..2000)
        .map(|i| format!("w{i}."))
        .collect::<Vec<_>>()
        .join(" ");
    let chunks = check_with(&page(&text, vec![]), &opts(100, 10), &counter, false);
    assert!(chunks.iter().all(|c| c.token_count <= 100));
    assert!(
        chunks.iter().any(|c| c.token_count >= 95),
        "chunks still fill up"
    );
}

fn text_strategy() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        4 => "[a-z]{1,8}",
        1 => "[A-Z][a-z]{0,6}[.!?]",
        1 => "[éü日本ß]{1,4}",
        1 => Just("\n".to_owned()),
        1 => Just("\n\n".to_owned()),
        1 => Just("  ".to_owned()),
        1 => "[a-z]{30,120}",
        1 => Just("# Title".to_owned()),
    ];
    prop::collection::vec(word, 0..400).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn invariants_hold_words(text in text_strategy(), max in 1usize..120, overlap_frac in 0usize..=50) {
        let o = opts(max, max * overlap_frac / 100);
        check(&page(&text, vec![]), &o, &WhitespaceCounter);
    }

    #[test]
    fn invariants_hold_chars(text in text_strategy(), max in 4usize..200, overlap_frac in 0usize..=50, cpt in 1usize..5) {
        let o = opts(max, max * overlap_frac / 100);
        check(&page(&text, vec![]), &o, &CharCounter { chars_per_token: cpt });
    }

    #[test]
    fn invariants_hold_with_sections(text in text_strategy(), max in 2usize..80) {
        // A section at every "# Title".
        let sections: Vec<Section> = text
            .match_indices("# Title")
            .map(|(b, _)| Section { heading: "Title".into(), level: 1, char_start: text[..b].chars().count() })
            .collect();
        let chunks = check(&page(&text, sections), &opts(max, max / 4), &WhitespaceCounter);
        for c in chunks {
            if c.text.starts_with("# Title") {
                prop_assert_eq!(c.heading.as_deref(), Some("Title"));
            }
        }
    }

    #[test]
    fn arbitrary_unicode_never_panics(text in "\\PC{0,300}", max in 1usize..50) {
        check(&page(&text, vec![]), &opts(max, max / 2), &CharCounter { chars_per_token: 2 });
    }
}

#[test]
fn section_paths_follow_levels_across_pages() {
    let sec = |heading: &str, level: u8, char_start: usize| Section {
        heading: heading.into(),
        level,
        char_start,
    };
    let doc = ParsedDocument {
        format: Format::Pdf,
        pages: vec![
            Page {
                number: 1,
                text: "Guide\n\nIntro text.\n\nInstall\n\nRun it.".into(),
                sections: vec![sec("Guide", 1, 0), sec("Install", 2, 20)],
                ..Page::default()
            },
            Page {
                number: 2,
                text: "More install words.\n\nUsage\n\nCall it.".into(),
                sections: vec![sec("Usage", 2, 21)],
                label: Some("p2".into()),
                ocr: true,
            },
        ],
        warnings: Vec::new(),
        parser: String::new(),
        attachments: Vec::new(),
    };
    // One word per token and a tiny maximum: one chunk per paragraph or so.
    let opts = ChunkingOptions { max_chunk_size_tokens: 3, chunk_overlap_tokens: 0 };
    let chunks = chunk_document(&doc, &opts, &WhitespaceCounter);
    let find = |needle: &str| chunks.iter().find(|c| c.text.contains(needle)).unwrap();
    assert_eq!(find("Intro").section_path, ["Guide"]);
    assert_eq!(find("Run").section_path, ["Guide", "Install"]);
    let more = find("More");
    assert_eq!(more.section_path, ["Guide", "Install"]);
    assert_eq!((more.label.as_deref(), more.ocr), (Some("p2"), true));
    assert_eq!(find("Call").section_path, ["Guide", "Usage"]);
}
