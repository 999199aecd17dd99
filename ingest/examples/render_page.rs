//! Renders one PDF page the way OCR sees it: `render_page LIBPDFIUM IN.pdf PAGE DPI OUT.pgm`.
fn main() -> Result<(), String> {
    let a: Vec<String> = std::env::args().collect();
    let [_, lib, input, page, dpi, out] = a.as_slice() else {
        return Err("usage: render_page LIBPDFIUM IN.pdf PAGE DPI OUT.pgm".into());
    };
    let engine = ingest::parse::PdfiumEngine::load(std::path::Path::new(lib))?;
    let bytes = std::fs::read(input).map_err(|e| e.to_string())?;
    let page: usize = page.parse().map_err(|_| "PAGE is a number from 1")?;
    let dpi: f32 = dpi.parse().map_err(|_| "DPI is a number")?;
    let pgm = ingest::parse::render_pgm(&engine, &bytes, page.saturating_sub(1), dpi)?;
    std::fs::write(out, pgm).map_err(|e| e.to_string())
}
