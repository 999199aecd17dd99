//! EPUB (2 and 3): one page per spine item (chapter file), in reading order, so a citation's
//! page is the chapter's position in the book and its label the chapter's first heading.
//!
//! - `META-INF/container.xml` names the package document (OPF); its `manifest` maps ids to files
//!   and its `spine` gives the reading order. Each spine item's XHTML goes through the same HTML
//!   extraction as `.html` files (headings become sections).
//! - Hrefs are resolved against the OPF's folder and percent-decoded; a spine item whose file is
//!   missing is an empty page with a warning. Encrypted (DRM) books have
//!   `META-INF/encryption.xml` listing their chapters: refused as unsupported.
//! - The `epub` crate is GPL-3.0; this reads the container with `zip` + quick-xml.

use super::archive::Archive;
use super::pptx::resolve;
use super::xml::events;
use super::{html, text, Format, Page, ParseError, ParsedDocument};

pub(super) fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let mut zip = Archive::open(bytes, "EPUB")?;
    let container = events(&zip.require("META-INF/container.xml")?, "EPUB META-INF/container.xml")?;
    let opf_path = container
        .iter()
        .find(|n| n.is_start("rootfile"))
        .and_then(|n| n.attr("full-path"))
        .ok_or_else(|| ParseError::Malformed("EPUB: container.xml names no package document".into()))?
        .to_owned();
    if let Some(enc) = zip.read("META-INF/encryption.xml")? {
        let nodes = events(&enc, "EPUB META-INF/encryption.xml")?;
        if nodes.iter().any(|n| n.is_start("EncryptedData")) {
            return Err(ParseError::Unsupported("EPUB with encrypted (DRM) content".into()));
        }
    }
    let opf = events(&zip.require(&opf_path)?, &format!("EPUB {opf_path}"))?;
    let base = opf_path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let href = |id: &str| {
        opf.iter()
            .find(|n| n.is_start("item") && n.attr("id") == Some(id))
            .and_then(|n| n.attr("href"))
            .map(|h| resolve(base, &percent_decode(h.split('#').next().unwrap_or(h))))
    };
    let spine: Vec<String> = opf
        .iter()
        .filter(|n| n.is_start("itemref"))
        .filter_map(|n| n.attr("idref").and_then(href))
        .collect();
    if spine.is_empty() {
        return Err(ParseError::Malformed("EPUB: the package has an empty spine".into()));
    }
    let mut pages = Vec::with_capacity(spine.len());
    let mut warnings = Vec::new();
    for (i, part) in spine.iter().enumerate() {
        let number = i as u32 + 1;
        let page = match zip.read(part)? {
            Some(bytes) => {
                let source = text::decode_html(&bytes)?;
                let (text, sections) = html::extract(&source);
                let label = sections.first().map(|s| s.heading.clone());
                Page { number, text, sections, label, ..Page::default() }
            }
            None => {
                warnings.push(format!("chapter {number}: {part} is missing from the book"));
                Page { number, ..Page::default() }
            }
        };
        pages.push(page);
    }
    super::finish(Format::Epub, "epub", pages, warnings)
}

/// `%20` and friends decoded (hrefs are URLs); invalid sequences kept as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::super::archive::testing::zip_of;
    use super::*;

    #[test]
    fn chapters_in_spine_order() {
        let container = r#"<container><rootfiles><rootfile full-path="OEBPS/content.opf"/></rootfiles></container>"#;
        let opf = r#"<package><manifest><item id="c1" href="Text/one%20a.xhtml"/><item id="c2" href="Text/two.xhtml"/></manifest>
            <spine><itemref idref="c2"/><itemref idref="c1"/></spine></package>"#;
        let one = "<html><body><h1>Chapter One</h1><p>Call me Ishmael.</p></body></html>";
        let two = "<html><body><h2>Preface</h2><p>Before all.</p></body></html>";
        let bytes = zip_of(&[
            ("mimetype", b"application/epub+zip"),
            ("META-INF/container.xml", container.as_bytes()),
            ("OEBPS/content.opf", opf.as_bytes()),
            ("OEBPS/Text/one a.xhtml", one.as_bytes()),
            ("OEBPS/Text/two.xhtml", two.as_bytes()),
        ]);
        let doc = parse(&bytes).unwrap();
        assert_eq!(doc.format, Format::Epub);
        assert_eq!(doc.pages.len(), 2);
        assert_eq!(doc.pages[0].label.as_deref(), Some("Preface"));
        assert!(doc.pages[0].text.contains("Before all."), "{:?}", doc.pages[0].text);
        assert_eq!(doc.pages[1].number, 2);
        assert!(doc.pages[1].text.contains("Call me Ishmael."), "{:?}", doc.pages[1].text);
        assert_eq!(doc.pages[1].sections[0].heading, "Chapter One");
    }

    #[test]
    fn no_container_is_malformed() {
        let err = parse(&zip_of(&[("mimetype", b"application/epub+zip")])).unwrap_err();
        assert_eq!(err.to_string(), "malformed EPUB: the container has no META-INF/container.xml");
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%20b%zz%2"), "a b%zz%2");
    }
}
