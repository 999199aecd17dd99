//! Shared helpers: fixture paths and a minimal PDF writer for hand-made (hostile) files.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A PDF from object bodies numbered 1..=n (object 1 is the catalog), with a correct xref table.
pub fn build_pdf(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A stream object body.
pub fn stream(extra_dict: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!("<< /Length {} {extra_dict} >>\nstream\n", data.len()).into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(b"\nendstream");
    body
}

/// A content stream showing `text` in Helvetica at the top of the page.
pub fn text_content(text: &str) -> Vec<u8> {
    stream(
        "",
        format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET").as_bytes(),
    )
}

/// One page per entry: `(page dictionary extras, content stream body)`. Objects: 1 catalog,
/// 2 pages (no MediaBox: each page brings its own or none), 3 Helvetica, then page/content pairs.
pub fn pdf_with_pages(pages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let first = 4;
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", first + 2 * i))
        .collect();
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    ];
    for (i, (extras, content)) in pages.iter().enumerate() {
        let content_id = first + 2 * i + 1;
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R {extras} /Resources << /Font << /F1 3 0 R >> >> /Contents {content_id} 0 R >>"
            )
            .into_bytes(),
        );
        objects.push(content.clone());
    }
    build_pdf(&objects)
}

pub const MEDIA_BOX: &str = "/MediaBox [0 0 612 792]";
