//! PDF text extraction: PDFium first, page by page, with layout (`pdf_layout/`: reading order
//! across columns, tables as Markdown, headings from the outline or from type); pdf-extract 0.12
//! (on lopdf 0.42) for the pages PDFium cannot read or reads as garbage; OCR for pages that have
//! no text layer.
//!
//! PDFium is first because it measured better on all three counts on a corpus of 330 real PDFs
//! (`tests/bench/pdf_corpus.py`, BENCHMARKS.md): more files with text, a higher similarity to
//! `pdftotext -layout`, and about 1.4× pdf-extract's pages per second.
//!
//! Engine choice, per page:
//! - PDFium's text is kept unless it is empty or looks garbled ([`quality`]: replacement
//!   characters, private-use or control characters (a font without a Unicode map), or fewer than
//!   half of the visible characters letters or digits, unless there are 200 of them and under
//!   5 % bad characters: words beside a plot drawn in dots). Kept, its characters are laid out; where
//!   the layout is unsound (it lost characters, or its "lines" are single glyphs: vertical
//!   writing, a rotated page) or the page is mostly Hebrew or Arabic (the layout would give visual
//!   order) PDFium's own plain text stands, without structure.
//! - Otherwise pdf-extract's text for the page, if it is better (lopdf loads the file the first
//!   time a page needs it).
//! - A page with no usable text from either that draws an image is rendered by PDFium at 300 dpi
//!   and read by Tesseract (`ocr.rs`) while the OCR budget lasts; such a page has `ocr: true`. A
//!   blank page, or one of vector drawings only, is not sent to OCR.
//! - The document's `parser` is the engine that gave the most pages (`pdfium`, `pdf-extract`,
//!   `ocr`); each page that took another engine is named in `warnings`.
//! - Without PDFium (not installed), or for a file PDFium cannot open, pdf-extract reads it all.
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

use super::pdf_layout::{self, PageLayout};
use super::{panic_message, Engines, Format, Page, ParseError, ParsedDocument};
use pdf_extract::{Document, PlainTextOutput};
use pdfium_render::prelude::PdfDocument;
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

/// What a page's text is made of, in visible (non-whitespace) characters.
#[derive(Debug, Clone, Copy, Default)]
struct Census {
    visible: usize,
    /// Letters and digits.
    good: usize,
    /// Replacement, private-use and control characters: a font without a Unicode map.
    bad: usize,
}

fn census(text: &str) -> Census {
    let mut n = Census::default();
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        n.visible += 1;
        if c == '\u{FFFD}' || ('\u{E000}'..='\u{F8FF}').contains(&c) || c.is_control() {
            n.bad += 1;
        } else if c.is_alphanumeric() {
            n.good += 1;
        }
    }
    n
}

/// How usable a page's text looks: `None` for no visible character, else the share (0..=1) of
/// visible characters that are letters or digits, with replacement, private-use and control
/// characters counting three times against it.
pub(super) fn quality(text: &str) -> Option<f64> {
    let n = census(text);
    if n.visible == 0 {
        return None;
    }
    Some((n.good as f64 - 3.0 * n.bad as f64).max(0.0) / n.visible as f64)
}

/// Text below this [`quality`] is treated as garbage...
const GOOD_ENOUGH: f64 = 0.5;
/// ...unless it has at least this many letters and digits and under 5 % bad characters: a page of
/// real words beside a plot drawn in dots or a table of symbols is text, not garbage.
const ENOUGH_WORDS: usize = 200;

fn usable(text: &str) -> bool {
    let n = census(text);
    quality(text).is_some_and(|q| q >= GOOD_ENOUGH) || (n.good >= ENOUGH_WORDS && n.bad * 20 < n.visible)
}

/// The whole PDF path: PDFium with layout first; pdf-extract, then OCR, for the pages it cannot
/// read; pdf-extract alone where PDFium is missing or cannot open the file.
pub(super) fn parse(bytes: &[u8], engines: &Engines) -> Result<ParsedDocument, ParseError> {
    match engines.pdf_engine {
        PdfEngine::Auto => {}
        PdfEngine::PdfExtract => return parse_pdf_extract(bytes),
        PdfEngine::Pdfium => return parse_pdfium_alone(bytes, engines),
    }
    let Some(pdfium) = &engines.pdfium else {
        return with_note(parse_pdf_extract(bytes), engines);
    };
    match pdfium.open(bytes) {
        Ok(doc) => parse_pdfium_first(bytes, &doc, engines),
        Err(ParseError::Encrypted) => Err(ParseError::Encrypted),
        // PDFium cannot open it: lopdf may (it repairs other things).
        Err(e) => parse_pdf_extract(bytes).map(|mut d| {
            d.warnings.push(format!("PDFium could not open the file ({e}); pdf-extract read it"));
            d
        }),
    }
}

/// What one page got before headings are decided.
enum PageText {
    /// PDFium's characters, laid out.
    Layout(PageLayout),
    /// Plain text from an engine, without structure.
    Plain { text: String, source: Source, ocr: bool },
}

fn parse_pdfium_first(bytes: &[u8], doc: &PdfDocument<'_>, engines: &Engines) -> Result<ParsedDocument, ParseError> {
    // pdf-extract's reading of the whole file, made the first time a page needs it.
    let mut extracted: Option<Result<ParsedDocument, ParseError>> = None;
    let mut warnings = Vec::new();
    let mut ocr_skipped = Vec::new();
    let mut pages = Vec::new();
    for (i, page) in doc.pages().iter().enumerate() {
        let number = i as u32 + 1;
        let chars = super::pdfium::page_chars(&page);
        let plain = match &chars {
            Ok(c) => expand_ligatures(&normalize_newlines(&c.plain)),
            Err(e) => {
                warnings.push(format!("page {number}: PDFium: {e}"));
                String::new()
            }
        };
        if usable(&plain) {
            let glyphs = chars.ok().and_then(|c| c.glyphs);
            pages.push(match glyphs.map(|g| pdf_layout::lay_out(&g)) {
                Some(layout) if sound(&layout, &plain) => PageText::Layout(layout),
                _ => PageText::Plain { text: plain, source: Source::Pdfium, ocr: false },
            });
            continue;
        }
        let theirs = extracted.get_or_insert_with(|| parse_pdf_extract(bytes));
        let mine = theirs
            .as_ref()
            .ok()
            .and_then(|d| d.pages.iter().find(|p| p.number == number))
            .map_or("", |p| p.text.as_str());
        let (mut text, mut source) = if quality(mine) > quality(&plain) {
            (mine.to_owned(), Source::PdfExtract)
        } else {
            (plain, Source::Pdfium)
        };
        let mut ocr = false;
        if !usable(&text) && super::pdfium::has_image(&page) {
            match &engines.ocr {
                Some(engine) if engine.out_of_time() => ocr_skipped.push(number),
                Some(engine) => {
                    let read = super::pdfium::render_gray(doc, i, OCR_DPI as f32, OCR_MAX_PIXELS)
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
        if source != Source::Pdfium && !text.trim().is_empty() {
            warnings.push(format!("page {number}: text from {}", source.name()));
        }
        pages.push(PageText::Plain { text, source, ocr });
    }
    if !ocr_skipped.is_empty() {
        let budget = engines.ocr.as_ref().map_or(0, |e| e.budget().as_secs());
        warnings.push(format!(
            "OCR time budget ({budget} s) spent: pages {} not recognized",
            list(&ocr_skipped)
        ));
    }
    let layouts: Vec<Option<&PageLayout>> = pages
        .iter()
        .map(|p| match p {
            PageText::Layout(l) => Some(l),
            PageText::Plain { .. } => None,
        })
        .collect();
    let headings = pdf_layout::decide(&layouts, &super::pdfium::outline(doc));
    let mut sources = Vec::with_capacity(pages.len());
    let pages: Vec<Page> = pages
        .iter()
        .zip(&headings)
        .enumerate()
        .map(|(i, (p, h))| {
            let number = i as u32 + 1;
            match p {
                PageText::Layout(layout) => {
                    sources.push(Source::Pdfium);
                    pdf_layout::render(layout, number, h)
                }
                PageText::Plain { text, source, ocr } => {
                    if !text.trim().is_empty() {
                        sources.push(*source);
                    }
                    Page { number, text: text.clone(), ocr: *ocr, ..Page::default() }
                }
            }
        })
        .collect();
    if pages.iter().all(|p| p.text.trim().is_empty()) {
        if let Some(failed) = warnings.iter().find(|w| w.contains("OCR failed")) {
            return Err(ParseError::ParserFailed(failed.clone()));
        }
        if engines.ocr.is_none() {
            return with_note(Err(ParseError::NoText), engines);
        }
        return Err(ParseError::NoText);
    }
    let parser = [Source::Pdfium, Source::PdfExtract, Source::Ocr]
        .into_iter()
        .max_by_key(|s| (sources.iter().filter(|x| *x == s).count(), *s == Source::Pdfium))
        .map_or("pdfium", Source::name);
    Ok(ParsedDocument {
        format: Format::Pdf,
        pages,
        warnings,
        parser: parser.to_owned(),
        attachments: Vec::new(),
    })
}

/// A layout worth keeping: it placed (nearly) every visible character PDFium read, its lines
/// are lines (vertical writing or a rotated page gives one glyph per "line"), and the page is not
/// mostly right-to-left script, which the layout would put in visual (left-to-right) order where
/// PDFium's plain text keeps the logical order.
fn sound(layout: &PageLayout, plain: &str) -> bool {
    if mostly_right_to_left(plain) {
        return false;
    }
    let visible = plain.chars().filter(|c| !c.is_whitespace()).count();
    let lines = layout
        .blocks
        .iter()
        .map(|b| match b {
            pdf_layout::Block::Line(_) => 1,
            pdf_layout::Block::Table(rows) => rows.len(),
        })
        .sum::<usize>();
    layout.glyphs * 10 >= visible * 9 && (layout.glyphs < 200 || lines * 3 <= layout.glyphs)
}

/// More than a fifth of the letters are Hebrew or Arabic (their blocks and presentation forms).
fn mostly_right_to_left(text: &str) -> bool {
    let (mut letters, mut rtl) = (0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        rtl += usize::from(matches!(c, '\u{0590}'..='\u{08FF}' | '\u{FB1D}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}'));
    }
    rtl * 5 > letters
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

/// A typographic ligature (U+FB00–FB06) spelled out.
pub(super) fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{FB00}' => "ff",
        '\u{FB01}' => "fi",
        '\u{FB02}' => "fl",
        '\u{FB03}' => "ffi",
        '\u{FB04}' => "ffl",
        '\u{FB05}' | '\u{FB06}' => "st",
        _ => return None,
    })
}

fn expand_ligatures(text: &str) -> String {
    if !text.chars().any(|c| ligature(c).is_some()) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match ligature(c) {
            Some(s) => out.push_str(s),
            None => out.push(c),
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
        // Words beside a plot drawn in dots: text, though most characters are dots.
        let plot = format!("{} {}", "Figure eight shows the pulse. ".repeat(10), ". . . .".repeat(300));
        assert!(quality(&plot).is_some_and(|q| q < GOOD_ENOUGH) && usable(&plot));
        // The same dots with as many private-use characters are not.
        let broken = format!("{plot}{}", "\u{E001}".repeat(200));
        assert!(!usable(&broken));
    }

    #[test]
    fn right_to_left_pages_are_told_apart() {
        assert!(mostly_right_to_left("\u{0645}\u{0631}\u{062D}\u{0628}\u{0627} \u{0628}\u{0627}\u{0644}\u{0639}\u{0627}\u{0644}\u{0645} page 1"));
        assert!(mostly_right_to_left("\u{05E9}\u{05DC}\u{05D5}\u{05DD} \u{05E2}\u{05D5}\u{05DC}\u{05DD}"));
        assert!(!mostly_right_to_left("An English page that quotes one word, \u{0645}\u{0631}\u{062D}\u{0628}\u{0627}, in Arabic."));
        assert!(!mostly_right_to_left("12 34 . ,"));
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
