//! PDF text extraction: pdf-extract 0.12 (on lopdf 0.42) page by page first; PDFium for the
//! pages it cannot read or reads as garbage; OCR for pages that have no text layer.
//!
//! Engine choice, per page (`choose`):
//! - pdf-extract's text is kept unless it is empty or looks garbled ([`quality`]: replacement
//!   characters, private-use or control characters (a font without a Unicode map), or fewer than
//!   half of the visible characters letters or digits).
//! - Otherwise PDFium's text for the page, if it is better. PDFium also reads files lopdf cannot
//!   load at all (a broken xref table, a damaged object stream), then for every page.
//! - A page with no usable text from either is rendered by PDFium at 300 dpi and read by
//!   Tesseract (`ocr.rs`) while the OCR budget lasts; such a page has `ocr: true`.
//! - The document's `parser` is the engine that gave the most pages (`pdf-extract`, `pdfium`,
//!   `ocr`); each page that took another engine is named in `warnings`.
//!
//! pdf-extract's own rules:
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

use super::{panic_message, Engines, Format, Page, ParseError, ParsedDocument};
use pdf_extract::{Document, PlainTextOutput};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Which engine reads a PDF's text layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PdfEngine {
    /// The shipped choice: one engine first, the other and OCR where it falls short.
    #[default]
    Auto,
    /// pdf-extract alone (no fallback, no OCR): for the corpus benchmark.
    PdfExtract,
    /// PDFium alone (no fallback, no OCR): for the corpus benchmark.
    Pdfium,
}

impl PdfEngine {
    /// `auto`, `pdf-extract`, `pdfium` (the worker's `--pdf-engine` values).
    pub fn as_str(self) -> &'static str {
        match self {
            PdfEngine::Auto => "auto",
            PdfEngine::PdfExtract => "pdf-extract",
            PdfEngine::Pdfium => "pdfium",
        }
    }

    /// Parses [`PdfEngine::as_str`]'s names.
    pub fn from_name(name: &str) -> Option<PdfEngine> {
        [PdfEngine::Auto, PdfEngine::PdfExtract, PdfEngine::Pdfium]
            .into_iter()
            .find(|e| e.as_str() == name)
    }
}

/// Resolution pages are rendered at for OCR.
const OCR_DPI: u32 = 300;
/// Largest rendering for OCR (a poster-sized page is scaled down): 64 Mpx of 8-bit gray.
const OCR_MAX_PIXELS: u64 = 64 << 20;

/// Which engine gave a page its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    PdfExtract,
    Pdfium,
    Ocr,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::PdfExtract => "pdf-extract",
            Source::Pdfium => "pdfium",
            Source::Ocr => "ocr",
        }
    }
}

/// How usable a page's text looks: `None` for no visible character, else the share (0..=1) of
/// visible characters that are letters or digits, with replacement, private-use and control
/// characters counting three times against it.
pub(super) fn quality(text: &str) -> Option<f64> {
    let (mut visible, mut good, mut bad) = (0usize, 0usize, 0usize);
    for c in text.chars() {
        if c.is_whitespace() {
            continue;
        }
        visible += 1;
        if c == '\u{FFFD}' || ('\u{E000}'..='\u{F8FF}').contains(&c) || c.is_control() {
            bad += 1;
        } else if c.is_alphanumeric() {
            good += 1;
        }
    }
    if visible == 0 {
        return None;
    }
    Some((good as f64 - 3.0 * bad as f64).max(0.0) / visible as f64)
}

/// Text below this [`quality`] is treated as garbage.
const GOOD_ENOUGH: f64 = 0.5;

fn usable(text: &str) -> bool {
    quality(text).is_some_and(|q| q >= GOOD_ENOUGH)
}

/// The whole PDF path: pdf-extract, then PDFium and OCR where it falls short.
pub(super) fn parse(bytes: &[u8], engines: &Engines) -> Result<ParsedDocument, ParseError> {
    match engines.pdf_engine {
        PdfEngine::Auto => {}
        PdfEngine::PdfExtract => return parse_pdf_extract(bytes),
        PdfEngine::Pdfium => return parse_pdfium_alone(bytes, engines),
    }
    let first = parse_pdf_extract(bytes);
    let fine = match &first {
        Ok(doc) => doc.pages.iter().all(|p| usable(&p.text)),
        Err(ParseError::Encrypted) => return first,
        Err(_) => false,
    };
    if fine {
        return first;
    }
    let Some(pdfium) = &engines.pdfium else {
        return with_note(first, engines);
    };
    let pdoc = match pdfium.open(bytes) {
        Ok(d) => d,
        // PDFium cannot open it either: pdf-extract's answer (or its error) stands.
        Err(_) => return first,
    };
    let theirs = super::pdfium::page_texts(&pdoc);
    let ours = first.as_ref().ok();
    let mut pages = Vec::with_capacity(theirs.len());
    let mut warnings: Vec<String> = ours.map(|d| d.warnings.clone()).unwrap_or_default();
    if let Err(e) = first.as_ref().map(drop).or_else(|e| if *e == ParseError::NoText { Ok(()) } else { Err(e) }) {
        warnings.push(format!("pdf-extract could not read the file ({e}); PDFium read it"));
    }
    let mut sources = Vec::new();
    let mut ocr_skipped = Vec::new();
    for (i, their) in theirs.into_iter().enumerate() {
        let number = i as u32 + 1;
        let mine = ours
            .and_then(|d| d.pages.iter().find(|p| p.number == number))
            .map(|p| p.text.as_str())
            .unwrap_or("");
        let their = their.map(|t| expand_ligatures(&normalize_newlines(&t)));
        let (mut text, mut source) = choose(mine, their.as_deref().unwrap_or(""));
        let mut ocr = false;
        if !usable(&text) {
            match &engines.ocr {
                Some(engine) if engine.out_of_time() => ocr_skipped.push(number),
                Some(engine) => {
                    let read = super::pdfium::render_gray(&pdoc, i, OCR_DPI as f32, OCR_MAX_PIXELS)
                        .and_then(|img| engine.recognize_gray(&img, OCR_DPI));
                    match read {
                        Ok(t) if quality(&t) > quality(&text) => {
                            text = t;
                            source = Source::Ocr;
                            ocr = true;
                        }
                        Ok(_) => {}
                        Err(e) => warnings.push(format!("page {number}: OCR failed: {e}")),
                    }
                }
                None => {}
            }
        }
        if source != Source::PdfExtract && !text.trim().is_empty() {
            warnings.push(format!("page {number}: text from {}", source.name()));
        }
        if !text.trim().is_empty() {
            sources.push(source);
        }
        pages.push(Page { number, text, ocr, ..Page::default() });
    }
    if !ocr_skipped.is_empty() {
        let budget = engines.ocr.as_ref().map_or(0, |e| e.budget().as_secs());
        warnings.push(format!(
            "OCR time budget ({budget} s) spent: pages {} not recognized",
            list(&ocr_skipped)
        ));
    }
    if pages.iter().all(|p| p.text.trim().is_empty()) {
        if let Some(failed) = warnings.iter().find(|w| w.contains("OCR failed")) {
            return Err(ParseError::ParserFailed(failed.clone()));
        }
        if engines.ocr.is_none() {
            return with_note(Err(ParseError::NoText), engines);
        }
        return Err(ParseError::NoText);
    }
    let parser = [Source::PdfExtract, Source::Pdfium, Source::Ocr]
        .into_iter()
        .max_by_key(|s| (sources.iter().filter(|x| *x == s).count(), *s == Source::PdfExtract))
        .map_or("pdf-extract", Source::name);
    Ok(ParsedDocument {
        format: Format::Pdf,
        pages,
        warnings,
        parser: parser.to_owned(),
        attachments: Vec::new(),
    })
}

/// pdf-extract's page unless it is unusable and PDFium's is better.
fn choose(mine: &str, theirs: &str) -> (String, Source) {
    if usable(mine) || quality(theirs) <= quality(mine) {
        (mine.to_owned(), Source::PdfExtract)
    } else {
        (theirs.to_owned(), Source::Pdfium)
    }
}

/// A result without the help an engine that did not load could have given: the reason it did
/// not load is added to the warnings (or to the error's text for "no text").
fn with_note(result: Result<ParsedDocument, ParseError>, engines: &Engines) -> Result<ParsedDocument, ParseError> {
    match result {
        Ok(mut doc) => {
            doc.warnings.extend(engines.unavailable.iter().cloned());
            Ok(doc)
        }
        Err(ParseError::NoText) if !engines.unavailable.is_empty() => Err(ParseError::Unsupported(format!(
            "no extractable text, and OCR is not available ({})",
            engines.unavailable.join("; ")
        ))),
        Err(e) => Err(e),
    }
}

/// PDFium ends lines with CR LF.
fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// "3, 5-7".
fn list(pages: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < pages.len() {
        let mut j = i;
        while j + 1 < pages.len() && pages[j + 1] == pages[j] + 1 {
            j += 1;
        }
        out.push(if i == j { pages[i].to_string() } else { format!("{}-{}", pages[i], pages[j]) });
        i = j + 1;
    }
    out.join(", ")
}

/// PDFium alone: its text for every page, nothing else.
fn parse_pdfium_alone(bytes: &[u8], engines: &Engines) -> Result<ParsedDocument, ParseError> {
    let Some(pdfium) = &engines.pdfium else {
        let why = engines.unavailable.first().cloned().unwrap_or_else(|| "PDFium was not loaded".into());
        return Err(ParseError::Unsupported(why));
    };
    let doc = pdfium.open(bytes)?;
    let mut warnings = Vec::new();
    let pages: Vec<Page> = super::pdfium::page_texts(&doc)
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let number = i as u32 + 1;
            let text = text.unwrap_or_else(|e| {
                warnings.push(format!("page {number}: {e}"));
                String::new()
            });
            Page { number, text: expand_ligatures(&normalize_newlines(&text)), ..Page::default() }
        })
        .collect();
    super::finish(Format::Pdf, Source::Pdfium.name(), pages, warnings)
}

/// pdf-extract alone.
pub(super) fn parse_pdf_extract(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
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
    fn quality_flags_garbage() {
        assert_eq!(quality("  \n"), None);
        assert!(usable("The quick brown fox, 12 times."));
        assert!(!usable("\u{FFFD}\u{FFFD}\u{FFFD} ab"));
        assert!(!usable("\u{E001}\u{E002}\u{E003}\u{E004}"));
        assert!(!usable("!#$%&/()=?*+~'<>|;:_-"));
    }

    #[test]
    fn page_lists() {
        assert_eq!(list(&[1, 3, 4, 5, 9]), "1, 3-5, 9");
    }

    #[test]
    fn not_a_pdf_is_malformed() {
        let err = parse(b"hello, not a pdf", &Engines::default());
        assert!(matches!(err, Err(ParseError::Malformed(_))), "{err:?}");
    }
}
