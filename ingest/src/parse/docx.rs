//! DOCX (Office Open XML word processing): `word/document.xml`, read with quick-xml.
//!
//! - Paragraphs (`w:p`) are runs' text (`w:t`), `w:tab` → tab, `w:br` → line break. Deleted text
//!   (`w:delText`) and field codes (`w:instrText`) are not text.
//! - Headings: a paragraph style `Title` (level 1) or `HeadingN` / `heading N` (level N), or an
//!   explicit `w:outlineLvl` (0-based), becomes a [`super::Section`].
//! - Tables (`w:tbl`) become Markdown tables; a table nested in a cell adds its text to the cell.
//! - Pages: a DOCX has no fixed layout, so page numbers are what the file itself says: a page
//!   break (`w:br w:type="page"`) or Word's `w:lastRenderedPageBreak` (where Word last laid out a
//!   new page) starts the next page. A document without either is page 1. Citations then name
//!   the page Word showed when the file was saved.

use super::archive::Archive;
use super::builder::PageBuilder;
use super::xml::{events, Node};
use super::{Format, Page, ParseError, ParsedDocument};

pub(super) fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let mut zip = Archive::open(bytes, "DOCX")?;
    let xml = zip.require("word/document.xml")?;
    let nodes = events(&xml, "DOCX word/document.xml")?;
    let pages = pages(&nodes);
    super::finish(Format::Docx, "docx", pages, Vec::new())
}

#[derive(Default)]
struct Para {
    text: String,
    level: Option<u8>,
}

struct Walker {
    pages: Vec<Page>,
    page: PageBuilder,
    para: Para,
    /// Open tables, innermost last: rows of cells.
    tables: Vec<Vec<Vec<String>>>,
    in_text: bool,
}

impl Walker {
    fn flush_para(&mut self) {
        let para = std::mem::take(&mut self.para);
        if let Some(table) = self.tables.last_mut() {
            if let Some(cell) = table.last_mut().and_then(|row| row.last_mut()) {
                if !cell.is_empty() && !para.text.trim().is_empty() {
                    cell.push(' ');
                }
                cell.push_str(para.text.trim());
            }
            return;
        }
        match para.level {
            Some(level) => self.page.heading(&para.text, level),
            None => self.page.paragraph(&para.text),
        }
    }

    fn page_break(&mut self) {
        if !self.tables.is_empty() {
            return; // a break inside a table row: the row stays whole on its page
        }
        let level = self.para.level;
        self.flush_para();
        self.para.level = level;
        let number = self.pages.len() as u32 + 1;
        let page = std::mem::replace(&mut self.page, PageBuilder::new());
        self.pages.push(page.finish(number, None));
    }
}

fn pages(nodes: &[Node]) -> Vec<Page> {
    let mut w = Walker {
        pages: Vec::new(),
        page: PageBuilder::new(),
        para: Para::default(),
        tables: Vec::new(),
        in_text: false,
    };
    for node in nodes {
        match node {
            Node::Start { name, .. } => match name.as_str() {
                "p" => w.para = Para::default(),
                "t" => w.in_text = true,
                "tab" if !w.in_text => w.para.text.push('\t'),
                "br" => match node.attr("w:type") {
                    Some("page") => w.page_break(),
                    Some("column") => w.para.text.push('\n'),
                    _ => w.para.text.push('\n'),
                },
                "lastRenderedPageBreak" => w.page_break(),
                "pStyle" => {
                    if let Some(level) = node.attr("w:val").and_then(heading_level) {
                        w.para.level = Some(level);
                    }
                }
                "outlineLvl" => {
                    if let Some(v) = node.attr("w:val").and_then(|v| v.parse::<u8>().ok()) {
                        if v < 9 {
                            w.para.level = Some(v + 1);
                        }
                    }
                }
                "tbl" => {
                    if !w.tables.is_empty() {
                        w.flush_para();
                    }
                    w.tables.push(Vec::new());
                }
                "tr" => {
                    if let Some(t) = w.tables.last_mut() {
                        t.push(Vec::new());
                    }
                }
                "tc" => {
                    if let Some(row) = w.tables.last_mut().and_then(|t| t.last_mut()) {
                        row.push(String::new());
                    }
                }
                _ => {}
            },
            Node::End { name } => match name.as_str() {
                "t" => w.in_text = false,
                "p" => w.flush_para(),
                "tbl" => {
                    if let Some(rows) = w.tables.pop() {
                        match w.tables.last_mut() {
                            // A nested table's text joins the enclosing cell.
                            Some(outer) => {
                                let text = rows
                                    .iter()
                                    .map(|r| r.join(" "))
                                    .collect::<Vec<_>>()
                                    .join(" ");
                                if let Some(cell) = outer.last_mut().and_then(|r| r.last_mut()) {
                                    cell.push(' ');
                                    cell.push_str(text.trim());
                                }
                            }
                            None => w.page.table(&rows),
                        }
                    }
                }
                _ => {}
            },
            Node::Text(t) if w.in_text => w.para.text.push_str(t),
            Node::Text(_) => {}
        }
    }
    w.flush_para();
    let number = w.pages.len() as u32 + 1;
    w.pages.push(w.page.finish(number, None));
    w.pages
}

/// `Title` → 1, `Heading3` / `heading 3` → 3.
fn heading_level(style: &str) -> Option<u8> {
    let lower = style.to_ascii_lowercase().replace(' ', "");
    if lower == "title" {
        return Some(1);
    }
    let n: u8 = lower.strip_prefix("heading")?.parse().ok()?;
    (1..=9).contains(&n).then_some(n.min(6))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
pub(super) mod tests {
    use super::super::archive::testing::zip_of;
    use super::*;

    pub fn docx(body: &str) -> Vec<u8> {
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
        );
        zip_of(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", xml.as_bytes())])
    }

    #[test]
    fn headings_tables_and_page_breaks() {
        let body = r#"
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Budget &amp; plan</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">First </w:t></w:r><w:r><w:t>paragraph.</w:t></w:r></w:p>
            <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Item</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Cost</w:t></w:r></w:p></w:tc></w:tr>
                   <w:tr><w:tc><w:p><w:r><w:t>Desk</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>120</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
            <w:p><w:r><w:br w:type="page"/><w:t>Second page.</w:t></w:r></w:p>
            <w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Later</w:t></w:r></w:p>
            <w:p><w:r><w:delText>gone</w:delText><w:instrText>PAGE</w:instrText><w:t>kept</w:t></w:r></w:p>"#;
        let doc = parse(&docx(body)).unwrap();
        assert_eq!(doc.format, Format::Docx);
        assert_eq!(doc.pages.len(), 2);
        assert_eq!(
            doc.pages[0].text,
            "Budget & plan\n\nFirst paragraph.\n\n| Item | Cost |\n| --- | --- |\n| Desk | 120 |\n"
        );
        assert_eq!(doc.pages[0].sections[0].heading, "Budget & plan");
        assert_eq!(doc.pages[1].number, 2);
        assert_eq!(doc.pages[1].text, "Second page.\n\nLater\n\nkept\n");
        assert_eq!(doc.pages[1].sections[0].level, 2);
    }

    #[test]
    fn missing_document_part_is_malformed() {
        let bytes = zip_of(&[("word/other.xml", b"<x/>")]);
        let err = parse(&bytes).unwrap_err();
        assert_eq!(err.to_string(), "malformed DOCX: the container has no word/document.xml");
    }

    #[test]
    fn empty_document_has_no_text() {
        assert_eq!(parse(&docx("<w:p/>")).unwrap_err(), ParseError::NoText);
    }

    #[test]
    fn style_names() {
        assert_eq!(heading_level("Heading1"), Some(1));
        assert_eq!(heading_level("heading 3"), Some(3));
        assert_eq!(heading_level("Title"), Some(1));
        assert_eq!(heading_level("Normal"), None);
    }
}
