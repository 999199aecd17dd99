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
