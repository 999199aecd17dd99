//! PDF text extraction with pdf-extract 0.12 (on lopdf 0.42), page by page.
//!
//! - lopdf loads the whole file; a file with a user password loads without its objects (lopdf
//!   tries the empty password itself, so owner-password-only files are decrypted and read): that
//!   is [`ParseError::Encrypted`].
//! - Each page is extracted on its own (`output_doc_page`) under `catch_unwind`, because
//!   pdf-extract panics by design on things it does not support. A failing page keeps an empty
//!   text and a line in `warnings`, and the document goes on: one odd page must not cost the rest.
//!   `extract_text_from_mem_by_pages` would instead stop silently at the first failing page.
//! - Pages with no text at all → [`ParseError::NoText`] (a scan); every page failing →
//!   [`ParseError::ParserFailed`] with the first reason.
//! - What `catch_unwind` cannot stop (stack overflow, allocation failure, endless loops) is why
//!   this runs in the sandboxed worker.
//! - Typographic ligatures (U+FB00–FB06, common in LaTeX output) are expanded so `ﬁnd` is found
//!   by "find"; nothing else is normalized.

use super::{panic_message, Format, Page, ParseError, ParsedDocument};
use pdf_extract::{Document, PlainTextOutput};
use std::panic::{catch_unwind, AssertUnwindSafe};

pub(super) fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let doc = load(bytes)?;
    let page_numbers: Vec<u32> = doc.get_pages().keys().copied().collect();
    if page_numbers.is_empty() {
        return Err(ParseError::Malformed(
            "PDF: the document has no pages".into(),
        ));
    }
    let mut pages = Vec::with_capacity(page_numbers.len());
    let mut warnings = Vec::new();
    let mut failed = 0usize;
    for number in page_numbers {
        let text = match extract_page(&doc, number) {
            Ok(text) => expand_ligatures(&text),
            Err(reason) => {
                failed += 1;
                warnings.push(format!("page {number}: {reason}"));
                String::new()
            }
        };
        pages.push(Page {
            number,
            text,
            ..Page::default()
        });
    }
    if failed == pages.len() {
        let first = warnings.first().cloned().unwrap_or_default();
        return Err(ParseError::ParserFailed(format!(
            "no page could be read ({first})"
        )));
    }
    if pages.iter().all(|p| p.text.trim().is_empty()) {
        return Err(ParseError::NoText);
    }
    Ok(ParsedDocument {
        format: Format::Pdf,
        pages,
        warnings,
        parser: "pdf-extract".to_owned(),
        attachments: Vec::new(),
    })
}

fn load(bytes: &[u8]) -> Result<Document, ParseError> {
    let loaded = catch_unwind(|| Document::load_mem(bytes))
        .map_err(|p| ParseError::ParserFailed(panic_message(p.as_ref())))?;
    let doc = match loaded {
        Ok(doc) => doc,
        Err(pdf_extract::Error::Decryption(_)) | Err(pdf_extract::Error::InvalidPassword) => {
            return Err(ParseError::Encrypted)
        }
        Err(e) => return Err(ParseError::Malformed(format!("PDF: {e}"))),
    };
    // Loaded with an /Encrypt dictionary but without a key: the empty password did not open it.
    if doc.trailer.get(b"Encrypt").is_ok() && doc.encryption_state.is_none() {
        return Err(ParseError::Encrypted);
    }
    Ok(doc)
}

fn extract_page(doc: &Document, number: u32) -> Result<String, String> {
    let mut text = String::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut output = PlainTextOutput::new(&mut text);
        pdf_extract::output_doc_page(doc, &mut output, number)
    }));
    match result {
        Ok(Ok(())) => Ok(text),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!("parser failed: {}", panic_message(panic.as_ref()))),
    }
}

fn expand_ligatures(text: &str) -> String {
    if !text.chars().any(|c| ('\u{FB00}'..='\u{FB06}').contains(&c)) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ligatures() {
        assert_eq!(
            expand_ligatures("\u{FB01}nd e\u{FB03}cient"),
            "find efficient"
        );
        assert_eq!(expand_ligatures("plain"), "plain");
    }

    #[test]
    fn not_a_pdf_is_malformed() {
        let err = parse(b"hello, not a pdf");
        assert!(matches!(err, Err(ParseError::Malformed(_))), "{err:?}");
    }
}
