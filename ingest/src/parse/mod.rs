//! Document parsing: bytes in, [`ParsedDocument`] (pages of plain text plus heading structure) out.
//!
//! Design:
//! - [`Format::detect`] decides what a file is from its first bytes and its name: magic bytes first
//!   (`%PDF-`), then the extension, then an HTML sniff, then "is this UTF-8 text".
//! - [`parse_bytes`] runs in-process. For PDFs it runs third-party code that panics and can overflow
//!   its stack on hostile input, and HTML tree building is quadratic in nesting depth, so the daemon
//!   calls it only inside the sandboxed worker (`crate::sandbox`), for every format.
//! - Every page's `text` is what chunks are cut from and what citations point into: offsets
//!   ([`Section::char_start`], a chunk's `char_start`/`char_end`) count Unicode scalar values (`char`s)
//!   of that text, never bytes, so they survive the JSON trip and any client language.
//! - Non-paged formats are one page numbered 1. PDF page numbers are the 1-based page index a
//!   viewer's "go to page" takes (the order of the page tree), not printed page labels. The other
//!   formats number what a person would look for: slides (PPTX), sheets (spreadsheets), spine
//!   items (EPUB chapters), and the page breaks a DOCX/ODT file records; [`Page::label`] names the
//!   slide title, sheet name or chapter heading.
//! - Zip containers (DOCX, PPTX, XLSX, ODT, ODS, EPUB) are checked against a zip bomb before any
//!   parser reads them (`archive.rs`); XML is read with quick-xml into owned nodes (`xml.rs`) and
//!   structure is written as text by `builder.rs` (tables as Markdown).
//! - An e-mail's attachments come back as [`Attachment`]s, unparsed: the daemon ingests each one
//!   as a document of its own, through its own sandboxed parse.

mod archive;
mod builder;
mod docx;
mod email;
mod epub;
mod html;
mod image;
mod markdown;
mod ocr;
mod odt;
mod page_image;
mod passage;
mod pdf;
mod pdf_layout;
mod pdfium;
mod pptx;
mod sheet;
mod text;
mod xml;

pub use archive::{MAX_ENTRIES, MAX_UNPACKED_BYTES};
pub use ocr::OcrEngine;
pub use page_image::{render_page, HighlightOutcome, PageImage, RenderError, RenderRequest, MAX_HIGHLIGHT_CHARS, MAX_PIXELS, MAX_WIDTH, MIN_WIDTH};
pub use pdf::PdfEngine;
pub use pdfium::{render_pgm, PdfiumEngine};

/// The engines a parse may call that are native libraries loaded before the worker confines
/// itself: PDFium (the first PDF engine, with layout, and the page renderer) and Tesseract (OCR).
/// [`parse_bytes`] runs without them (pdf-extract only, no structure, no OCR).
#[derive(Debug, Default)]
pub struct Engines {
    /// PDFium, if it loaded.
    pub pdfium: Option<PdfiumEngine>,
    /// Tesseract, if it started.
    pub ocr: Option<OcrEngine>,
    /// Why an engine is missing, one line each (reported where it would have helped).
    pub unavailable: Vec<String>,
    /// Which engine reads a PDF's text layer: the shipped choice, or one alone for the corpus
    /// benchmark (`--pdf-engine`).
    pub pdf_engine: PdfEngine,
}

use serde::{Deserialize, Serialize};

/// A document format hearth can parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Portable Document Format, text extracted page by page.
    Pdf,
    /// Plain text (UTF-8, UTF-16 with a byte-order mark, or Windows-1252 as a fallback).
    Text,
    /// CommonMark / GitHub Markdown; the source text is kept, headings become sections.
    Markdown,
    /// HTML; scripts and styles dropped, block elements become lines, headings become sections.
    Html,
    /// Word processing (Office Open XML `.docx`).
    Docx,
    /// Presentation (Office Open XML `.pptx`); a slide is a page.
    Pptx,
    /// Workbook (`.xlsx`, `.xlsm`, `.xlsb`, `.xls`, `.ods`); a sheet is a page.
    Spreadsheet,
    /// OpenDocument text (`.odt`).
    Odt,
    /// EPUB e-book; a chapter (spine item) is a page.
    Epub,
    /// E-mail message (`.eml`); attachments become documents of their own.
    Email,
    /// Image (PNG, JPEG, TIFF), read by OCR.
    Image,
}

impl Format {
    /// Every format, for listing what is supported.
    pub const ALL: [Format; 11] = [
        Format::Pdf,
        Format::Text,
        Format::Markdown,
        Format::Html,
        Format::Docx,
        Format::Pptx,
        Format::Spreadsheet,
        Format::Odt,
        Format::Epub,
        Format::Email,
        Format::Image,
    ];

    /// The format's short name: `pdf`, `text`, `markdown`, `html`, `docx`, `pptx`,
    /// `spreadsheet`, `odt`, `epub`, `email`, `image` (also the worker's argv word).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Docx => "docx",
            Format::Pptx => "pptx",
            Format::Spreadsheet => "spreadsheet",
            Format::Odt => "odt",
            Format::Epub => "epub",
            Format::Email => "email",
            Format::Image => "image",
        }
    }

    /// Parses [`Format::as_str`]'s names.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// Detects the format of a file from its name (if known) and its first bytes (a few KiB are
    /// enough; the whole file works too). `None` means unsupported.
    ///
    /// Order: the `%PDF-` signature within the first 1024 bytes (where readers accept it), then
    /// the `mimetype` entry an ODF or EPUB zip stores first, then the extension (`.pdf`,
    /// `.txt`/`.text`, `.md`/`.markdown`, `.html`/`.htm`/`.xhtml`, `.docx`, `.pptx`,
    /// `.xlsx`/`.xlsm`/`.xlsb`/`.xls`/`.ods`, `.odt`, `.epub`, `.eml`, `.png`/`.jpg`/`.jpeg`/
    /// `.tif`/`.tiff`, case-insensitive), then PNG/JPEG/TIFF signatures, then an HTML sniff (`<!doctype html` or `<html` at the start), then "UTF-8 without NUL bytes" →
    /// [`Format::Text`].
    pub fn detect(file_name: Option<&str>, head: &[u8]) -> Option<Format> {
        let window = &head[..head.len().min(1024)];
        if window.windows(5).any(|w| w == b"%PDF-") {
            return Some(Format::Pdf);
        }
        match archive::leading_mimetype(head) {
            Some("application/epub+zip") => return Some(Format::Epub),
            Some("application/vnd.oasis.opendocument.text") => return Some(Format::Odt),
            Some("application/vnd.oasis.opendocument.spreadsheet") => {
                return Some(Format::Spreadsheet)
            }
            _ => {}
        }
        if let Some(format) = file_name.and_then(Format::from_extension) {
            return Some(format);
        }
        if image::sniff(head) {
            return Some(Format::Image);
        }
        if looks_like_html(head) {
            return Some(Format::Html);
        }
        if text::looks_like_utf8_text(head) {
            return Some(Format::Text);
        }
        None
    }

    /// The format a file name's extension stands for.
    pub fn from_extension(file_name: &str) -> Option<Format> {
        let (_, ext) = file_name.rsplit_once('.')?;
        match ext.to_ascii_lowercase().as_str() {
            "pdf" => Some(Format::Pdf),
            "txt" | "text" => Some(Format::Text),
            "md" | "markdown" => Some(Format::Markdown),
            "html" | "htm" | "xhtml" => Some(Format::Html),
            "docx" => Some(Format::Docx),
            "pptx" => Some(Format::Pptx),
            "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => Some(Format::Spreadsheet),
            "odt" => Some(Format::Odt),
            "epub" => Some(Format::Epub),
            "eml" => Some(Format::Email),
            "png" | "jpg" | "jpeg" | "tif" | "tiff" => Some(Format::Image),
            _ => None,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn looks_like_html(head: &[u8]) -> bool {
    let start = head
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(head)
        .trim_ascii_start();
    let start = &start[..start.len().min(64)];
    let lower = start.to_ascii_lowercase();
    lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html")
}

/// A parsed document: its format and its pages, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedDocument {
    /// The format it was parsed as.
    pub format: Format,
    /// Pages in document order; one page for non-paged formats.
    pub pages: Vec<Page>,
    /// Things that went wrong without failing the document, one line each (for example a PDF page
    /// whose content could not be read: its text is empty and the reason is here).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// What produced the text: `pdf-extract`, `pdfium` or `ocr` for PDFs (the engine that read
    /// most pages), the format's reader otherwise (`docx`, `calamine`, `mail-parser`...).
    #[serde(default)]
    pub parser: String,
    /// Files attached to the document (an e-mail's), unparsed, for the daemon to ingest as
    /// documents of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A file carried inside a document (an e-mail attachment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its file name (no folders), as the message gives it, or `attachment-N`.
    pub filename: String,
    /// Its bytes (base64 in the worker's JSON reply).
    #[serde(with = "base64_bytes")]
    pub bytes: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

impl ParsedDocument {
    /// Total characters of text over all pages.
    pub fn char_count(&self) -> usize {
        self.pages.iter().map(|p| p.text.chars().count()).sum()
    }
}

/// One page of text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// 1-based page number: the PDF page index a viewer's "go to page" takes; 1 for non-paged formats.
    pub number: u32,
    /// The page's text. Chunk and section offsets are `char` offsets into it.
    pub text: String,
    /// Headings on this page, in order (empty for plain text).
    pub sections: Vec<Section>,
    /// What the page is called where it has a name: a slide's title, a sheet's name, a chapter's
    /// first heading, an e-mail's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The text came from optical character recognition (a scanned page or an image).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ocr: bool,
}

/// A heading kept as structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// The heading's text, without markup.
    pub heading: String,
    /// 1 for `#`/`<h1>` … 6 for `######`/`<h6>`.
    pub level: u8,
    /// Where the heading starts in the page text, in `char`s.
    pub char_start: usize,
}

/// Why a document could not be parsed. `Display` is a clear reason for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum ParseError {
    /// Password-protected PDF (a user password; owner-password-only files are read).
    #[error("encrypted PDF: hearth cannot read password-protected files")]
    Encrypted,
    /// The document has pages but no text on any of them.
    #[error("no extractable text (scanned/image-only PDF?)")]
    NoText,
    /// The file is damaged or not what its format says.
    #[error("malformed {0}")]
    Malformed(String),
    /// Valid, but uses something the parser does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The parser itself failed (a panic inside the PDF library) on this file.
    #[error("the parser failed on this file: {0}")]
    ParserFailed(String),
}

/// Parses a whole document in this process, without PDFium or OCR. PDF parsing can panic or
/// overflow the stack on hostile files: the daemon calls this through
/// [`crate::sandbox::Sandbox`], whose worker calls [`parse_with`].
pub fn parse_bytes(bytes: &[u8], format: Format) -> Result<ParsedDocument, ParseError> {
    parse_with(bytes, format, &Engines::default())
}

/// Parses a whole document in this process with the native engines the caller loaded.
pub fn parse_with(
    bytes: &[u8],
    format: Format,
    engines: &Engines,
) -> Result<ParsedDocument, ParseError> {
    match format {
        Format::Pdf => pdf::parse(bytes, engines),
        Format::Image => image::parse(bytes, engines),
        Format::Docx => docx::parse(bytes),
        Format::Pptx => pptx::parse(bytes),
        Format::Spreadsheet => sheet::parse(bytes),
        Format::Odt => odt::parse(bytes),
        Format::Epub => epub::parse(bytes),
        Format::Email => email::parse(bytes),
        Format::Text => Ok(single_page(format, text::decode(bytes)?, Vec::new())),
        Format::Markdown => {
            let source = text::decode(bytes)?;
            let sections = markdown::sections(&source);
            Ok(single_page(format, source, sections))
        }
        Format::Html => {
            let source = text::decode_html(bytes)?;
            let (text, sections) = html::extract(&source);
            Ok(single_page(format, text, sections))
        }
    }
}

/// The message of a caught panic, cut to 200 characters (it ends up in a one-line error).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "panic"
    };
    match msg.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &msg[..i]),
        None => msg.to_owned(),
    }
}

fn single_page(format: Format, text: String, sections: Vec<Section>) -> ParsedDocument {
    ParsedDocument {
        format,
        pages: vec![Page {
            number: 1,
            text,
            sections,
            ..Page::default()
        }],
        warnings: Vec::new(),
        parser: format.as_str().to_owned(),
        attachments: Vec::new(),
    }
}

/// The document, or [`ParseError::NoText`] when no page has any text.
fn finish(
    format: Format,
    parser: &str,
    pages: Vec<Page>,
    warnings: Vec<String>,
) -> Result<ParsedDocument, ParseError> {
    if pages.iter().all(|p| p.text.trim().is_empty()) {
        return Err(ParseError::NoText);
    }
    Ok(ParsedDocument {
        format,
        pages,
        warnings,
        parser: parser.to_owned(),
        attachments: Vec::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn detect_pdf_by_magic_wins_over_extension() {
        assert_eq!(
            Format::detect(Some("notes.txt"), b"%PDF-1.7\n%\xe2\xe3"),
            Some(Format::Pdf)
        );
        // Junk before the header is accepted by readers within the first 1024 bytes.
        let mut late = vec![b' '; 500];
        late.extend_from_slice(b"%PDF-1.4");
        assert_eq!(Format::detect(None, &late), Some(Format::Pdf));
    }

    #[test]
    fn detect_by_extension_case_insensitive() {
        assert_eq!(Format::detect(Some("A.MD"), b"# x"), Some(Format::Markdown));
        assert_eq!(
            Format::detect(Some("a.markdown"), b"x"),
            Some(Format::Markdown)
        );
        assert_eq!(Format::detect(Some("a.HTM"), b"x"), Some(Format::Html));
        assert_eq!(Format::detect(Some("a.html"), b"x"), Some(Format::Html));
        assert_eq!(Format::detect(Some("a.txt"), b"x"), Some(Format::Text));
        // A .pdf without the signature is still a PDF, so the parser can say it is damaged.
        assert_eq!(Format::detect(Some("a.pdf"), b"hello"), Some(Format::Pdf));
    }

    #[test]
    fn detect_office_ebook_and_mail() {
        let zip = b"PK\x03\x04\x14\0";
        assert_eq!(Format::detect(Some("r.DOCX"), zip), Some(Format::Docx));
        assert_eq!(Format::detect(Some("s.pptx"), zip), Some(Format::Pptx));
        assert_eq!(Format::detect(Some("t.xlsx"), zip), Some(Format::Spreadsheet));
        assert_eq!(Format::detect(Some("t.xls"), b"\xd0\xcf\x11\xe0"), Some(Format::Spreadsheet));
        assert_eq!(Format::detect(Some("m.eml"), b"From: a"), Some(Format::Email));
        // ODF and EPUB say what they are in their first entry, whatever the name.
        let epub = archive::testing::zip_of(&[("mimetype", b"application/epub+zip")]);
        assert_eq!(Format::detect(Some("book.zip"), &epub), Some(Format::Epub));
        let ods = archive::testing::zip_of(&[("mimetype", b"application/vnd.oasis.opendocument.spreadsheet")]);
        assert_eq!(Format::detect(None, &ods), Some(Format::Spreadsheet));
    }

    #[test]
    fn detect_content_sniffing() {
        assert_eq!(
            Format::detect(None, b"\n  <!DOCTYPE html><html>"),
            Some(Format::Html)
        );
        assert_eq!(
            Format::detect(Some("README"), b"plain words"),
            Some(Format::Text)
        );
        assert_eq!(
            Format::detect(Some("x.log"), "naïve café".as_bytes()),
            Some(Format::Text)
        );
        // A head cut inside a multi-byte character is still text.
        let cut = &"é".as_bytes()[..1];
        let mut head = b"abc".to_vec();
        head.extend_from_slice(cut);
        assert_eq!(Format::detect(None, &head), Some(Format::Text));
    }

    #[test]
    fn detect_images() {
        assert_eq!(Format::detect(Some("a.png"), b"\x89PNG\r\n\x1a\n\0\0"), Some(Format::Image));
        assert_eq!(Format::detect(None, b"\xFF\xD8\xFF\xE0"), Some(Format::Image));
        assert_eq!(Format::detect(Some("scan"), b"II*\0\x08"), Some(Format::Image));
    }

    #[test]
    fn detect_rejects_binary() {
        assert_eq!(Format::detect(Some("a.bin"), b"\xfd\xfe\xff\x00"), None);
        assert_eq!(Format::detect(None, b"PK\x03\x04\0\0"), None);
        assert_eq!(Format::detect(Some("a.zip"), b"PK\x03\x04\x14\0"), None);
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.as_str()), Some(f));
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.as_str()));
        }
        assert_eq!(Format::from_name("doc"), None);
    }

    #[test]
    fn parse_error_json_round_trip() {
        for e in [
            ParseError::Encrypted,
            ParseError::NoText,
            ParseError::Malformed("PDF: bad xref".into()),
            ParseError::Unsupported("x".into()),
            ParseError::ParserFailed("boom".into()),
        ] {
            let json = serde_json::to_string(&e).unwrap();
            let back: Result<ParseError, _> = serde_json::from_str(&json);
            assert_eq!(back.ok(), Some(e));
        }
    }

    #[test]
    fn text_and_markdown_parse() {
        let doc = parse_bytes(b"hello\r\nworld\n", Format::Text).unwrap();
        assert_eq!(doc.pages.len(), 1);
        assert_eq!(doc.pages[0].number, 1);
        assert_eq!(doc.pages[0].text, "hello\nworld\n");

        let md = "# Intro\n\nSome *text*.\n\n## Détails\n\nMore.\n";
        let doc = parse_bytes(md.as_bytes(), Format::Markdown).unwrap();
        let page = &doc.pages[0];
        assert_eq!(page.text, md);
        let heads: Vec<_> = page
            .sections
            .iter()
            .map(|s| (s.heading.as_str(), s.level))
            .collect();
        assert_eq!(heads, [("Intro", 1), ("Détails", 2)]);
        let at: String = page
            .text
            .chars()
            .skip(page.sections[1].char_start)
            .take(10)
            .collect();
        assert_eq!(at, "## Détails");
    }

    #[test]
    fn binary_text_is_refused() {
        let err = parse_bytes(b"abc\0\0\0def", Format::Text);
        assert!(matches!(err, Err(ParseError::Unsupported(_))), "{err:?}");
    }
}
