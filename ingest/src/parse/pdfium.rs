//! The second PDF engine: PDFium (Chromium's PDF library, BSD/Apache), bound at run time from
//! `libpdfium.so` through pdfium-render, for files pdf-extract cannot read or reads as garbage,
//! to render scanned pages for OCR, and to render the console's page images (`page_image.rs`).
//!
//! - The library comes from the pinned `pypdfium2` wheel (`packaging/models/fetch_models.sh`),
//!   which links only libc. [`PdfiumEngine::locate`] looks for it beside the executable
//!   (`lib/libpdfium.so`, the RPM's `../lib64/hearth/libpdfium.so`) and in a build tree's
//!   `models/` (`target/release/../../models/libpdfium.so`); the worker's `--pdfium-library`
//!   names it explicitly.
//! - The worker loads it (`dlopen`, `FPDF_InitLibrary`) **before** Landlock confines it: no file
//!   is opened after that. PDFium would look for system fonts for a non-embedded font when it
//!   renders; under Landlock those opens fail and it falls back to its built-in base-14 fonts.
//! - It reads the document from the bytes already in memory (`FPDF_LoadMemDocument64`).

use super::pdf_layout::{Glyph, OutlineEntry, MAX_OUTLINE_ENTRIES};
use super::ParseError;
use pdfium_render::prelude::*;
use std::path::{Path, PathBuf};

/// A bound PDFium library.
pub struct PdfiumEngine {
    pdfium: Pdfium,
    path: PathBuf,
}

impl std::fmt::Debug for PdfiumEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdfiumEngine").field("path", &self.path).finish()
    }
}

/// A rendered page, 8-bit gray, rows `bytes_per_line` apart.
#[derive(Debug)]
pub(super) struct GrayImage {
    pub width: u32,
    pub height: u32,
    pub bytes_per_line: u32,
    pub data: Vec<u8>,
}

impl PdfiumEngine {
    /// Where `libpdfium.so` is looked for when no path is given, in order, for an executable at
    /// `exe`.
    pub fn candidates(exe: &Path) -> Vec<PathBuf> {
        let Some(dir) = exe.parent() else {
            return Vec::new();
        };
        vec![
            dir.join("lib/libpdfium.so"),
            dir.join("../lib64/hearth/libpdfium.so"),
            dir.join("../../models/libpdfium.so"),
        ]
    }

    /// The first candidate that exists, for this process's executable.
    pub fn locate() -> Option<PathBuf> {
        let exe = std::env::current_exe().ok()?;
        Self::candidates(&exe).into_iter().find(|p| p.is_file())
    }

    /// Loads and initializes the library at `path` (once per process).
    pub fn load(path: &Path) -> Result<Self, String> {
        let bindings = Pdfium::bind_to_library(path)
            .map_err(|e| format!("cannot load PDFium from {}: {e}", path.display()))?;
        Ok(PdfiumEngine {
            pdfium: Pdfium::new(bindings),
            path: path.to_owned(),
        })
    }

    /// The library's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `bytes` as a PDF (no password).
    pub(super) fn open<'a>(&'a self, bytes: &'a [u8]) -> Result<PdfDocument<'a>, ParseError> {
        self.pdfium
            .load_pdf_from_byte_slice(bytes, None)
            .map_err(|e| match e {
                PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::PasswordError) => {
                    ParseError::Encrypted
                }
                other => ParseError::Malformed(format!("PDF (PDFium): {other}")),
            })
    }
}

/// Each page's text as PDFium extracts it (reading order of its text objects), or why not.
pub(super) fn page_texts(doc: &PdfDocument<'_>) -> Vec<Result<String, String>> {
    doc.pages()
        .iter()
        .map(|page| page.text().map(|t| t.all()).map_err(|e| e.to_string()))
        .collect()
}

/// Glyphs a page holds more of are not laid out (PDFium's plain text is used): a bound on the
/// layout's time and memory for a hostile page.
pub(super) const MAX_LAYOUT_GLYPHS: usize = 200_000;

/// A page's text two ways: PDFium's own plain text, and its characters with their geometry for
/// the layout (`None` when the page has more than [`MAX_LAYOUT_GLYPHS`]).
pub(super) struct PageChars {
    pub plain: String,
    pub glyphs: Option<Vec<Glyph>>,
}

/// Weight from which a face counts as bold (PDFium derives it from the font's StemV when the file
/// gives none: Computer Modern Bold comes out at 570, Helvetica-Bold at 700, Times-Roman at 420).
const BOLD_WEIGHT: u32 = 550;

fn weight(w: Option<PdfFontWeight>) -> Option<u32> {
    Some(match w? {
        PdfFontWeight::Weight100 => 100,
        PdfFontWeight::Weight200 => 200,
        PdfFontWeight::Weight300 => 300,
        PdfFontWeight::Weight400Normal => 400,
        PdfFontWeight::Weight500 => 500,
        PdfFontWeight::Weight600 => 600,
        PdfFontWeight::Weight700Bold => 700,
        PdfFontWeight::Weight800 => 800,
        PdfFontWeight::Weight900 => 900,
        PdfFontWeight::Custom(v) => v,
    })
}

/// Page `page`'s characters: visible ones as glyphs, in content order, each knowing whether a
/// space (the file's or one PDFium generated) came before it. PDFium marks a line-end hyphen as
/// U+0002: it becomes `-`; other control characters are dropped.
pub(super) fn page_chars(page: &PdfPage<'_>) -> Result<PageChars, String> {
    let text = page.text().map_err(|e| e.to_string())?;
    let plain = text.all();
    let chars = text.chars();
    if chars.len() > MAX_LAYOUT_GLYPHS {
        return Ok(PageChars { plain, glyphs: None });
    }
    let rotation = page.rotation().unwrap_or(PdfPageRenderRotation::None);
    let mut glyphs = Vec::with_capacity(chars.len());
    let mut space = false;
    // The last (size, weight, y) seen and whether it was bold: the font name is read once per change.
    let mut last: Option<(f32, Option<u32>, f32, bool)> = None;
    for ch in chars.iter() {
        let c = match ch.unicode_char() {
            Some('\u{2}') => '-',
            Some(c) if c.is_whitespace() => {
                space = true;
                continue;
            }
            Some(c) if !c.is_control() => c,
            _ => continue,
        };
        let Ok(bounds) = ch.loose_bounds() else { continue };
        let (x0, x1, y0, y1) = upright(
            rotation,
            (bounds.left().value, bounds.right().value, bounds.bottom().value, bounds.top().value),
        );
        if !(x1 >= x0 && y1 > y0 && [x0, x1, y0, y1].iter().all(|v| v.is_finite())) {
            continue;
        }
        let size = ch.scaled_font_size().value.abs();
        let size = if size.is_finite() && size > 0.0 { size } else { y1 - y0 };
        let w = weight(ch.font_weight());
        let bold = match last {
            Some((s, lw, y, b)) if s == size && lw == w && (y - y0).abs() < size => b,
            _ => {
                w.is_some_and(|w| w >= BOLD_WEIGHT) || {
                    let name = ch.font_name().to_ascii_lowercase();
                    ["bold", "black", "heavy", "cmbx", "semibold", "demi"].iter().any(|k| name.contains(k))
                }
            }
        };
        last = Some((size, w, y0, bold));
        glyphs.push(Glyph { c, x0, y0, x1, y1, size, bold, space_before: std::mem::take(&mut space) });
    }
    Ok(PageChars { plain, glyphs: Some(glyphs) })
}

/// A box `(x0, x1, y0, y1)` in the page's own space turned as a viewer shows a page with
/// `/Rotate`, so that left to right and top to bottom are the reader's (only the order of
/// coordinates matters to the layout, not where the origin lands).
fn upright(rotation: PdfPageRenderRotation, (x0, x1, y0, y1): (f32, f32, f32, f32)) -> (f32, f32, f32, f32) {
    match rotation {
        PdfPageRenderRotation::None => (x0, x1, y0, y1),
        // Turned clockwise: the page's bottom edge is now on the left, its left edge on top.
        PdfPageRenderRotation::Degrees90 => (y0, y1, -x1, -x0),
        PdfPageRenderRotation::Degrees180 => (-x1, -x0, -y1, -y0),
        // Turned counter-clockwise: the page's top edge is on the left, its right edge on top.
        PdfPageRenderRotation::Degrees270 => (-y1, -y0, x0, x1),
    }
}

/// The document's bookmarks in order (depth first), with the page each points to; at most
/// [`MAX_OUTLINE_ENTRIES`] visited, 16 levels deep (levels past 6 count as 6).
pub(super) fn outline(doc: &PdfDocument<'_>) -> Vec<OutlineEntry> {
    let mut out = Vec::new();
    let Some(root) = doc.bookmarks().root() else {
        return out;
    };
    let mut stack = vec![(root, 1u8)];
    let mut visited = 0usize;
    while let Some((mark, level)) = stack.pop() {
        visited += 1;
        if visited > MAX_OUTLINE_ENTRIES {
            break;
        }
        if let Some(next) = mark.next_sibling() {
            stack.push((next, level));
        }
        if level < 16 {
            if let Some(child) = mark.first_child() {
                stack.push((child, level + 1));
            }
        }
        let page = mark.destination().and_then(|d| d.page_index().ok()).or_else(|| {
            let action = mark.action()?;
            let local = action.as_local_destination_action()?;
            local.destination().ok()?.page_index().ok()
        });
        if let (Some(title), Some(page)) = (mark.title(), page) {
            let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
            if !title.is_empty() {
                out.push(OutlineEntry { title, level: level.min(6), page: usize::try_from(page).unwrap_or(usize::MAX) });
            }
        }
    }
    out
}

/// Whether `page` draws an image (directly or in a form XObject, looked into 4 levels deep and
/// 10,000 objects at most): what OCR could read. A blank page, or one of vector drawings and
/// symbols only, is not worth OCR's time.
pub(super) fn has_image(page: &PdfPage<'_>) -> bool {
    let mut budget = 10_000usize;
    page.objects().iter().any(|o| draws_image(&o, 0, &mut budget))
}

fn draws_image(object: &PdfPageObject<'_>, depth: u32, budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match object.object_type() {
        PdfPageObjectType::Image => true,
        PdfPageObjectType::XObjectForm if depth < 4 => object
            .as_x_object_form_object()
            .is_some_and(|form| form.iter().any(|o| draws_image(&o, depth + 1, budget))),
        _ => false,
    }
}

/// Renders page `index` (0-based) at `dpi`, gray, with annotations and form fields, at most
/// `max_pixels` pixels (a huge page is scaled down to fit).
pub(super) fn render_gray(
    doc: &PdfDocument<'_>,
    index: usize,
    dpi: f32,
    max_pixels: u64,
) -> Result<GrayImage, String> {
    let page = doc
        .pages()
        .iter()
        .nth(index)
        .ok_or_else(|| format!("no page {}", index + 1))?;
    let (w_pt, h_pt) = (page.width().value.max(1.0), page.height().value.max(1.0));
    let mut scale = dpi / 72.0;
    let pixels = f64::from(w_pt * scale) * f64::from(h_pt * scale);
    if pixels > max_pixels as f64 {
        scale *= (max_pixels as f64 / pixels).sqrt() as f32;
    }
    // PDFium's own 8-bit gray bitmaps came out with most of the page missing (a quarter of the
    // dark pixels pypdfium2 gets), so it renders RGBA and the luma is taken here.
    let config = PdfRenderConfig::new()
        .scale_page_by_factor(scale)
        .render_form_data(true)
        .render_annotations(true);
    let bitmap = page.render_with_config(&config).map_err(|e| e.to_string())?;
    let (width, height) = (bitmap.width() as u32, bitmap.height() as u32);
    if height == 0 || width == 0 {
        return Err("the page rendered empty".into());
    }
    let rgba = bitmap.as_rgba_bytes();
    if rgba.len() < width as usize * height as usize * 4 {
        return Err(format!("unexpected bitmap layout ({} bytes for {width}x{height})", rgba.len()));
    }
    let data: Vec<u8> = rgba
        .chunks_exact(4)
        .take(width as usize * height as usize)
        .map(|p| ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000) as u8)
        .collect();
    let bytes_per_line = width;
    Ok(GrayImage { width, height, bytes_per_line, data })
}


/// Page `index` of `bytes` rendered gray at `dpi` as a binary PGM (`P5`), for inspecting what OCR
/// is given (`examples/render_page`).
pub fn render_pgm(engine: &PdfiumEngine, bytes: &[u8], index: usize, dpi: f32) -> Result<Vec<u8>, String> {
    let doc = engine.open(bytes).map_err(|e| e.to_string())?;
    let img = render_gray(&doc, index, dpi, 64 << 20)?;
    let (w, h, bpl) = (img.width as usize, img.height as usize, img.bytes_per_line as usize);
    let mut pgm = format!("P5\n{w} {h}\n255\n").into_bytes();
    for row in img.data.chunks(bpl).take(h) {
        pgm.extend_from_slice(&row[..w]);
    }
    Ok(pgm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_pages_read_upright() {
        // Two glyphs of one displayed line on a page shown turned clockwise (/Rotate 90): the
        // line runs up the page's own y axis, and the first glyph has the lower y.
        let (first, second) = ((100.0, 110.0, 50.0, 58.0), (100.0, 110.0, 60.0, 68.0));
        let (a, b) = (upright(PdfPageRenderRotation::Degrees90, first), upright(PdfPageRenderRotation::Degrees90, second));
        assert!(a.1 <= b.0, "left to right: {a:?} {b:?}");
        assert_eq!((a.2, a.3), (b.2, b.3), "one baseline");
        // Counter-clockwise (/Rotate 270): the line runs down the y axis.
        let (a, b) = (upright(PdfPageRenderRotation::Degrees270, second), upright(PdfPageRenderRotation::Degrees270, first));
        assert!(a.1 <= b.0, "left to right: {a:?} {b:?}");
        // A box stays a box: left below right, bottom below top.
        for r in [PdfPageRenderRotation::None, PdfPageRenderRotation::Degrees90, PdfPageRenderRotation::Degrees180, PdfPageRenderRotation::Degrees270] {
            let (x0, x1, y0, y1) = upright(r, first);
            assert!(x0 < x1 && y0 < y1, "{x0} {x1} {y0} {y1}");
        }
    }
}
