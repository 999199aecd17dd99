//! Page images for the console's citation preview: one PDF page rendered by PDFium at a requested
//! width, the cited passage painted over in translucent yellow, encoded as PNG.
//!
//! - Runs only inside the sandboxed worker (`crate::sandbox`, `--render-page`): the PDF is
//!   untrusted, and PDFium is C++ on hostile input. The daemon gets the PNG bytes back.
//! - Size: the width is what the caller asks for, [`MIN_WIDTH`]..=[`MAX_WIDTH`] pixels; a page
//!   whose height would take the image past [`MAX_PIXELS`] is scaled down to fit (a receipt roll,
//!   a poster), so the width may come out smaller than asked.
//! - Highlight: the passage is looked for among PDFium's characters of the page (`passage.rs`:
//!   letters and digits compared, so whitespace, hyphenation and ligatures do not matter; a
//!   distinctive prefix and the passage's end where the whole does not match). The matched
//!   characters' text rectangles (PDFium merges them per line) are converted to pixels with the
//!   render's own transform (rotation included) and multiplied by a light yellow: white paper turns
//!   yellow, black text stays black. A passage that is not on the page is reported, not an error.
//! - The PNG is 8-bit RGB (a page has no transparency), written with the pure-Rust `png` crate.

use super::passage::{find_passage, PassageMatch};
use super::pdfium::PdfiumEngine;
use super::ParseError;
use pdfium_render::prelude::*;
use serde::{Deserialize, Serialize};

/// Narrowest image asked for, in pixels.
pub const MIN_WIDTH: u32 = 100;
/// Widest image asked for, in pixels.
pub const MAX_WIDTH: u32 = 1600;
/// Most pixels in one image (a tall page is scaled down to fit).
pub const MAX_PIXELS: u64 = 4_000_000;
/// Longest passage to highlight, in characters (a chunk is a few hundred words).
pub const MAX_HIGHLIGHT_CHARS: usize = 2000;

/// The highlight's colour, multiplied into the page (white becomes this; black stays black).
const HIGHLIGHT_RGB: [u16; 3] = [255, 232, 96];
/// Pixels added around each highlighted line's box.
const HIGHLIGHT_PAD: i32 = 2;

/// What to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderRequest {
    /// 1-based page number (the page tree's order, as citations count).
    pub page: u32,
    /// Image width in pixels, [`MIN_WIDTH`]..=[`MAX_WIDTH`].
    pub width: u32,
    /// The passage to highlight, at most [`MAX_HIGHLIGHT_CHARS`] characters; `None` or empty: none.
    pub highlight: Option<String>,
}

impl RenderRequest {
    /// Why the request cannot be rendered as it stands, in words for the caller.
    pub fn check(&self) -> Result<(), String> {
        if self.page == 0 {
            return Err("page numbers start at 1".into());
        }
        if !(MIN_WIDTH..=MAX_WIDTH).contains(&self.width) {
            return Err(format!("width must be {MIN_WIDTH} to {MAX_WIDTH} pixels, not {}", self.width));
        }
        if let Some(text) = &self.highlight {
            let n = text.chars().count();
            if n > MAX_HIGHLIGHT_CHARS {
                return Err(format!("the passage to highlight is {n} characters; at most {MAX_HIGHLIGHT_CHARS} are accepted"));
            }
            if text.contains('\0') {
                return Err("the passage to highlight contains a NUL character".into());
            }
        }
        Ok(())
    }
}

/// Whether and how the passage was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HighlightOutcome {
    /// Something of the passage was found and painted.
    pub found: bool,
    /// The whole passage matched (else a prefix, and its end where that was found too).
    pub whole: bool,
}

/// A rendered page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageImage {
    /// The PNG file.
    #[serde(with = "base64_bytes")]
    pub png: Vec<u8>,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
    /// Pages in the document.
    pub page_count: u32,
    /// `None` when no passage was asked for.
    pub highlight: Option<HighlightOutcome>,
}

/// Why a page could not be rendered. `Display` is a clear reason for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum RenderError {
    /// The request itself is wrong (page 0, a width out of range, a passage too long).
    #[error("{0}")]
    Invalid(String),
    /// No such page.
    #[error("page {page} is out of range: the document has {page_count} page(s)")]
    PageOutOfRange {
        /// The page asked for.
        page: u32,
        /// Pages in the document.
        page_count: u32,
    },
    /// PDFium could not be loaded.
    #[error("page images need PDFium, which is not available: {0}")]
    PdfiumUnavailable(String),
    /// The document cannot be opened (encrypted, malformed).
    #[error("{0}")]
    Document(ParseError),
    /// PDFium or the encoder failed on this page.
    #[error("rendering the page failed: {0}")]
    Failed(String),
}

/// Renders `request.page` of the PDF `bytes` (see the module header).
pub fn render_page(engine: &PdfiumEngine, bytes: &[u8], request: &RenderRequest) -> Result<PageImage, RenderError> {
    request.check().map_err(RenderError::Invalid)?;
    let doc = engine.open(bytes).map_err(RenderError::Document)?;
    let pages = doc.pages();
    let page_count = u32::try_from(pages.len()).unwrap_or(0);
    if request.page > page_count {
        return Err(RenderError::PageOutOfRange { page: request.page, page_count });
    }
    let index = PdfPageIndex::try_from(request.page - 1).map_err(|e| RenderError::Failed(e.to_string()))?;
    let page = pages.get(index).map_err(|e| RenderError::Failed(format!("PDFium cannot load page {}: {e}", request.page)))?;
    let config = render_config(&page, request.width);
    let bitmap = page.render_with_config(&config).map_err(|e| RenderError::Failed(e.to_string()))?;
    let (width, height) = (bitmap.width() as u32, bitmap.height() as u32);
    let mut rgba = bitmap.as_rgba_bytes();
    if width == 0 || height == 0 || rgba.len() < width as usize * height as usize * 4 {
        return Err(RenderError::Failed(format!("unexpected bitmap ({} bytes for {width}x{height})", rgba.len())));
    }
    let highlight = match request.highlight.as_deref().filter(|t| !t.trim().is_empty()) {
        None => None,
        Some(passage) => Some(highlight(&page, &config, passage, &mut rgba, width, height)?),
    };
    let png = encode_png(&rgba, width, height).map_err(|e| RenderError::Failed(format!("PNG encoding: {e}")))?;
    Ok(PageImage { png, width, height, page_count, highlight })
}

/// A scale that makes the page `width` pixels wide, or less where that passes [`MAX_PIXELS`].
fn render_config(page: &PdfPage<'_>, width: u32) -> PdfRenderConfig {
    let (w_pt, h_pt) = (page.width().value.max(1.0), page.height().value.max(1.0));
    let mut scale = width as f32 / w_pt;
    let pixels = f64::from(w_pt * scale) * f64::from(h_pt * scale);
    if pixels > MAX_PIXELS as f64 {
        scale *= (MAX_PIXELS as f64 / pixels).sqrt() as f32 * 0.999;
    }
    PdfRenderConfig::new().scale_page_by_factor(scale).render_form_data(true).render_annotations(true)
}

/// Finds `passage` on `page` and paints its lines' boxes into `rgba`.
fn highlight(page: &PdfPage<'_>, config: &PdfRenderConfig, passage: &str, rgba: &mut [u8], width: u32, height: u32) -> Result<HighlightOutcome, RenderError> {
    let text = page.text().map_err(|e| RenderError::Failed(format!("PDFium cannot read the page's text: {e}")))?;
    let chars: Vec<char> = text.chars().iter().map(|c| c.unicode_char().unwrap_or('\u{FFFD}')).collect();
    let Some(PassageMatch { chars: range, whole }) = find_passage(&chars, passage) else {
        return Ok(HighlightOutcome { found: false, whole: false });
    };
    let segments = text.segments_subset(range.start, range.len());
    for segment in segments.iter() {
        let bounds = segment.bounds();
        let corners = [(bounds.left(), bounds.top()), (bounds.right(), bounds.bottom())];
        let mut xs = [0i32; 2];
        let mut ys = [0i32; 2];
        for (i, (x, y)) in corners.into_iter().enumerate() {
            let (px, py) = page.points_to_pixels(x, y, config).map_err(|e| RenderError::Failed(e.to_string()))?;
            (xs[i], ys[i]) = (px, py);
        }
        let rect = PixelRect {
            left: xs[0].min(xs[1]) - HIGHLIGHT_PAD,
            top: ys[0].min(ys[1]) - HIGHLIGHT_PAD,
            right: xs[0].max(xs[1]) + HIGHLIGHT_PAD,
            bottom: ys[0].max(ys[1]) + HIGHLIGHT_PAD,
        };
        paint(rgba, width, height, rect);
    }
    Ok(HighlightOutcome { found: true, whole })
}

/// A rectangle in bitmap pixels, end exclusive; may reach past the bitmap (it is clipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PixelRect {
    left: i32,
    top: i32,
    right: i32,
    bottom: i32,
}

/// Multiplies the pixels of `rect` (clipped to the bitmap) by [`HIGHLIGHT_RGB`].
fn paint(rgba: &mut [u8], width: u32, height: u32, rect: PixelRect) {
    let clip = |v: i32, max: u32| v.clamp(0, max as i32) as usize;
    let (x0, x1) = (clip(rect.left, width), clip(rect.right, width));
    let (y0, y1) = (clip(rect.top, height), clip(rect.bottom, height));
    for y in y0..y1 {
        let row = y * width as usize * 4;
        for x in x0..x1 {
            let p = row + x * 4;
            for (c, tint) in HIGHLIGHT_RGB.iter().enumerate() {
                rgba[p + c] = (u16::from(rgba[p + c]) * tint / 255) as u8;
            }
        }
    }
}

/// `rgba` (width × height × 4) as an 8-bit RGB PNG.
fn encode_png(rgba: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let rgb: Vec<u8> = rgba.chunks_exact(4).take(width as usize * height as usize).flat_map(|p| [p[0], p[1], p[2]]).collect();
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(out)
}

/// Bytes as standard base64 in JSON (the worker's reply is JSON).
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_with_reasons() {
        let ok = RenderRequest { page: 1, width: 800, highlight: Some("bread".into()) };
        assert_eq!(ok.check(), Ok(()));
        let zero = RenderRequest { page: 0, ..ok.clone() };
        assert!(zero.check().unwrap_err().contains("start at 1"));
        let wide = RenderRequest { width: MAX_WIDTH + 1, ..ok.clone() };
        assert!(wide.check().unwrap_err().contains("1600"));
        let long = RenderRequest { highlight: Some("x".repeat(MAX_HIGHLIGHT_CHARS + 1)), ..ok.clone() };
        assert!(long.check().unwrap_err().contains("2000"));
        let nul = RenderRequest { highlight: Some("a\0b".into()), ..ok };
        assert!(nul.check().unwrap_err().contains("NUL"));
    }

    #[test]
    fn paint_tints_white_keeps_black_and_clips() {
        let (w, h) = (4u32, 3u32);
        let mut rgba = vec![255u8; (w * h * 4) as usize];
        rgba[0..4].copy_from_slice(&[0, 0, 0, 255]); // a black pixel at (0, 0)
        paint(&mut rgba, w, h, PixelRect { left: -5, top: -5, right: 2, bottom: 1 });
        assert_eq!(&rgba[0..3], &[0, 0, 0], "black stays black");
        assert_eq!(&rgba[4..7], &[255, 232, 96], "white turns yellow");
        assert_eq!(&rgba[8..11], &[255, 255, 255], "outside the box stays white");
        assert_eq!(&rgba[(w * 4) as usize..(w * 4 + 3) as usize], &[255, 255, 255], "the next row is outside");
    }

    #[test]
    fn png_round_trips_and_images_travel_as_base64() {
        let (w, h) = (3u32, 2u32);
        let rgba: Vec<u8> = (0..w * h).flat_map(|i| [i as u8 * 40, 10, 200, 255]).collect();
        let png = encode_png(&rgba, w, h).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height, info.color_type), (w, h, png::ColorType::Rgb));
        assert_eq!(&buf[..6], &[0, 10, 200, 40, 10, 200]);
        let image = PageImage { png, width: w, height: h, page_count: 1, highlight: None };
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(serde_json::from_str::<PageImage>(&json).unwrap(), image);
        let error = RenderError::PageOutOfRange { page: 9, page_count: 3 };
        assert_eq!(error.to_string(), "page 9 is out of range: the document has 3 page(s)");
        assert_eq!(serde_json::from_str::<RenderError>(&serde_json::to_string(&error).unwrap()).unwrap(), error);
    }
}
