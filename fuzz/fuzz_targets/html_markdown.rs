//! The HTML, Markdown and text parsers over any bytes: a result or a clear error, never a panic.
#![no_main]

use ingest::{parse_bytes, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [Format::Html, Format::Markdown, Format::Text] {
        if let Ok(doc) = parse_bytes(data, format) {
            for page in &doc.pages {
                let chars = page.text.chars().count();
                for section in &page.sections {
                    assert!(section.char_start <= chars, "a section starts past its page's text");
                }
            }
        }
    }
});
