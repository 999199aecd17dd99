//! Image files (PNG, JPEG, TIFF): one page, read by OCR (`ocr.rs`); leptonica decodes the bytes
//! from memory. A multi-page TIFF gives its first page only. Without an OCR engine (Tesseract
//! did not start in the worker) an image is refused with the reason.

use super::{Engines, Format, Page, ParseError, ParsedDocument};

pub(super) fn parse(bytes: &[u8], engines: &Engines) -> Result<ParsedDocument, ParseError> {
    let Some(ocr) = &engines.ocr else {
        return Err(ParseError::Unsupported(format!(
            "image files need OCR, which is not available ({})",
            if engines.unavailable.is_empty() { "no OCR engine".to_owned() } else { engines.unavailable.join("; ") }
        )));
    };
    let text = ocr
        .recognize_encoded(bytes)
        .map_err(|e| ParseError::Malformed(format!("image: {e}")))?;
    let page = Page { number: 1, text, ocr: true, ..Page::default() };
    super::finish(Format::Image, "ocr", vec![page], Vec::new())
}

/// PNG, JPEG or TIFF by their signatures.
pub(super) fn sniff(head: &[u8]) -> bool {
    head.starts_with(b"\x89PNG\r\n\x1a\n")
        || head.starts_with(b"\xFF\xD8\xFF")
        || head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
}
