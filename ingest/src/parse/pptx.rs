//! PPTX (Office Open XML presentations): one page per slide, numbered as the slide show numbers
//! them, so a citation's page is the slide number.
//!
//! - Slide order is the presentation's (`ppt/presentation.xml`'s `p:sldIdLst`, resolved through
//!   `ppt/_rels/presentation.xml.rels`), not the part names; hidden slides keep their number.
//! - Each shape's paragraphs (`a:p`, runs `a:t`, `a:br`) in the slide's order; the title
//!   placeholder (`p:ph type="title"` or `"ctrTitle"`) becomes the page's section and label.
//! - Tables (`a:tbl`) become Markdown tables. Speaker notes are not read.

use super::archive::Archive;
use super::builder::{clean_line, PageBuilder};
use super::xml::{events, Node};
use super::{Format, Page, ParseError, ParsedDocument};

pub(super) fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let mut zip = Archive::open(bytes, "PPTX")?;
    let order = slide_parts(&mut zip)?;
    let mut pages = Vec::with_capacity(order.len());
    for (i, part) in order.iter().enumerate() {
        let number = i as u32 + 1;
        let xml = zip.require(part)?;
        let nodes = events(&xml, &format!("PPTX {part}"))?;
        pages.push(slide(&nodes, number));
    }
    super::finish(Format::Pptx, "pptx", pages, Vec::new())
}

/// The slides' part names in show order.
fn slide_parts(zip: &mut Archive<'_>) -> Result<Vec<String>, ParseError> {
    let pres = events(&zip.require("ppt/presentation.xml")?, "PPTX ppt/presentation.xml")?;
    let rels = match zip.read("ppt/_rels/presentation.xml.rels")? {
        Some(x) => events(&x, "PPTX ppt/_rels/presentation.xml.rels")?,
        None => Vec::new(),
    };
    let target = |id: &str| {
        rels.iter()
            .find(|n| n.is_start("Relationship") && n.attr("Id") == Some(id))
            .and_then(|n| n.attr("Target"))
            .map(|t| resolve("ppt/", t))
    };
    let mut parts = Vec::new();
    for n in &pres {
        if n.is_start("sldId") {
            if let Some(part) = n.attr("r:id").and_then(target) {
                parts.push(part);
            }
        }
    }
    if parts.is_empty() {
        // No list (a damaged file): the part names' numeric order.
        let mut named: Vec<(u32, String)> = zip
            .names()
            .into_iter()
            .filter_map(|n| {
                let num = n.strip_prefix("ppt/slides/slide")?.strip_suffix(".xml")?.parse().ok()?;
                Some((num, n))
            })
            .collect();
        named.sort();
        parts = named.into_iter().map(|(_, n)| n).collect();
    }
    Ok(parts)
}

/// `base` joined with a relative `target` (`slides/slide1.xml`, `../x`, or `/ppt/...`).
pub(super) fn resolve(base: &str, target: &str) -> String {
    if let Some(abs) = target.strip_prefix('/') {
        return abs.to_owned();
    }
    let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    for seg in target.split('/') {
        match seg {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            s => parts.push(s),
        }
    }
    parts.join("/")
}

fn slide(nodes: &[Node], number: u32) -> Page {
    let mut page = PageBuilder::new();
    let mut title: Option<String> = None;
    let mut is_title = false;
    let mut para = String::new();
    let mut in_text = false;
    let mut table: Option<Vec<Vec<String>>> = None;
    let mut body: Vec<String> = Vec::new();
    let mut shape_paras: Vec<String> = Vec::new();
    for node in nodes {
        match node {
            Node::Start { name, .. } => match name.as_str() {
                "sp" => {
                    is_title = false;
                    shape_paras.clear();
                }
                "ph" => {
                    is_title = matches!(node.attr("type"), Some("title" | "ctrTitle"));
                }
                "p" => para.clear(),
                "t" => in_text = true,
                "br" => para.push('\n'),
                "tbl" => table = Some(Vec::new()),
                "tr" => {
                    if let Some(t) = table.as_mut() {
                        t.push(Vec::new());
                    }
                }
                "tc" => {
                    if let Some(row) = table.as_mut().and_then(|t| t.last_mut()) {
                        row.push(String::new());
                    }
                }
                _ => {}
            },
            Node::End { name } => match name.as_str() {
                "t" => in_text = false,
                "p" => {
                    let text = std::mem::take(&mut para);
                    match table.as_mut().and_then(|t| t.last_mut()).and_then(|r| r.last_mut()) {
                        Some(cell) => {
                            if !cell.is_empty() {
                                cell.push(' ');
                            }
                            cell.push_str(text.trim());
                        }
                        None => shape_paras.push(text),
                    }
                }
                "sp" => {
                    if is_title && title.is_none() {
                        title = Some(clean_line(&shape_paras.join(" ")));
                    } else {
                        body.push(shape_paras.join("\n"));
                    }
                    shape_paras.clear();
                }
                "tbl" => {
                    if let Some(rows) = table.take() {
                        body.push(String::new());
                        // Tables are placed where they occur among the shapes.
                        flush_body(&mut page, &title, &mut body);
                        page.table(&rows);
                    }
                }
                _ => {}
            },
            Node::Text(t) if in_text => para.push_str(t),
            Node::Text(_) => {}
        }
    }
    flush_body(&mut page, &title, &mut body);
    let label = title.filter(|t| !t.is_empty());
    page.finish(number, label)
}

/// Writes the title once (first), then the shapes' text gathered so far.
fn flush_body(page: &mut PageBuilder, title: &Option<String>, body: &mut Vec<String>) {
    if page.is_blank() {
        if let Some(t) = title {
            page.heading(t, 1);
        }
    }
    for text in body.drain(..) {
        page.paragraph(&text);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::super::archive::testing::zip_of;
    use super::*;

    fn sld(title: &str, body: &str) -> String {
        format!(
            r#"<p:sld xmlns:p="p" xmlns:a="a"><p:cSld><p:spTree>
            <p:sp><p:nvSpPr><p:nvPr><p:ph type="title"/></p:nvPr></p:nvSpPr><p:txBody><a:p><a:r><a:t>{title}</a:t></a:r></a:p></p:txBody></p:sp>
            <p:sp><p:txBody><a:p><a:r><a:t>{body}</a:t></a:r></a:p><a:p><a:r><a:t>second line</a:t></a:r></a:p></p:txBody></p:sp>
            </p:spTree></p:cSld></p:sld>"#
        )
    }

    #[test]
    fn slides_in_show_order_with_titles() {
        // Part names in the opposite order from the show.
        let pres = r#"<p:presentation xmlns:p="p" xmlns:r="r"><p:sldIdLst><p:sldId id="256" r:id="rId7"/><p:sldId id="257" r:id="rId2"/></p:sldIdLst></p:presentation>"#;
        let rels = r#"<Relationships><Relationship Id="rId2" Target="slides/slide1.xml"/><Relationship Id="rId7" Target="slides/slide2.xml"/></Relationships>"#;
        let (s1, s2) = (sld("Second", "beta"), sld("First", "alpha"));
        let bytes = zip_of(&[
            ("ppt/presentation.xml", pres.as_bytes()),
            ("ppt/_rels/presentation.xml.rels", rels.as_bytes()),
            ("ppt/slides/slide1.xml", s1.as_bytes()),
            ("ppt/slides/slide2.xml", s2.as_bytes()),
        ]);
        let doc = parse(&bytes).unwrap();
        assert_eq!(doc.pages.len(), 2);
        assert_eq!(doc.pages[0].number, 1);
        assert_eq!(doc.pages[0].text, "First\n\nalpha\nsecond line\n");
        assert_eq!(doc.pages[0].label.as_deref(), Some("First"));
        assert_eq!(doc.pages[0].sections[0].heading, "First");
        assert_eq!(doc.pages[1].text, "Second\n\nbeta\nsecond line\n");
    }

    #[test]
    fn paths_resolve() {
        assert_eq!(resolve("ppt/", "slides/slide1.xml"), "ppt/slides/slide1.xml");
        assert_eq!(resolve("ppt/slides/", "../media/x.png"), "ppt/media/x.png");
        assert_eq!(resolve("ppt/", "/ppt/slides/s.xml"), "ppt/slides/s.xml");
    }
}
