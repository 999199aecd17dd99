//! ODT (OpenDocument text): `content.xml`'s `office:text`, read with quick-xml.
//!
//! - `text:h` (with `text:outline-level`) becomes a heading and a [`super::Section`]; `text:p`
//!   a paragraph (list items are paragraphs too); `text:s` (`text:c` spaces), `text:tab` and
//!   `text:line-break` become spaces, a tab and a line break.
//! - `table:table` becomes a Markdown table (`table:number-columns-repeated` honoured up to 100).
//! - Pages: `text:soft-page-break`, which LibreOffice writes where its layout broke the page when
//!   it saved, starts the next page; a document without one is page 1 (as with DOCX, there is no
//!   fixed layout to number otherwise).

use super::archive::Archive;
use super::builder::PageBuilder;
use super::xml::{events, Node};
use super::{Format, Page, ParseError, ParsedDocument};

pub(super) fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let mut zip = Archive::open(bytes, "ODT")?;
    let nodes = events(&zip.require("content.xml")?, "ODT content.xml")?;
    super::finish(Format::Odt, "odt", pages(&nodes), Vec::new())
}

fn pages(nodes: &[Node]) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut page = PageBuilder::new();
    // Open text blocks (p/h can nest through notes and frames): (text, heading level).
    let mut blocks: Vec<(String, Option<u8>)> = Vec::new();
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut repeat: Vec<usize> = Vec::new();
    for node in nodes {
        match node {
            Node::Start { name, .. } => match name.as_str() {
                "h" => {
                    let level = node.attr("text:outline-level").and_then(|v| v.parse().ok()).unwrap_or(1);
                    blocks.push((String::new(), Some(level)));
                }
                "p" => blocks.push((String::new(), None)),
                "s" => {
                    let n = node.attr("text:c").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1);
                    if let Some((t, _)) = blocks.last_mut() {
                        t.push_str(&" ".repeat(n.min(100)));
                    }
                }
                "tab" => blocks.last_mut().into_iter().for_each(|(t, _)| t.push('\t')),
                "line-break" => blocks.last_mut().into_iter().for_each(|(t, _)| t.push('\n')),
                "soft-page-break" if tables.is_empty() && blocks.is_empty() => {
                    let number = pages.len() as u32 + 1;
                    pages.push(std::mem::replace(&mut page, PageBuilder::new()).finish(number, None));
                }
                "table" => tables.push(Vec::new()),
                "table-row" => tables.last_mut().into_iter().for_each(|t| t.push(Vec::new())),
                "table-cell" | "covered-table-cell" => {
                    let n = node
                        .attr("table:number-columns-repeated")
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(1)
                        .clamp(1, 100);
                    repeat.push(n);
                    if let Some(row) = tables.last_mut().and_then(|t| t.last_mut()) {
                        row.push(String::new());
                    }
                }
                _ => {}
            },
            Node::End { name } => match name.as_str() {
                "h" | "p" => {
                    let Some((text, level)) = blocks.pop() else { continue };
                    if let Some((outer, _)) = blocks.last_mut() {
                        outer.push(' ');
                        outer.push_str(&text);
                    } else if let Some(cell) = tables.last_mut().and_then(|t| t.last_mut()).and_then(|r| r.last_mut()) {
                        if !cell.is_empty() {
                            cell.push(' ');
                        }
                        cell.push_str(text.trim());
                    } else {
                        match level {
                            Some(l) => page.heading(&text, l),
                            None => page.paragraph(&text),
                        }
                    }
                }
                "table-cell" | "covered-table-cell" => {
                    let n = repeat.pop().unwrap_or(1);
                    if let Some(row) = tables.last_mut().and_then(|t| t.last_mut()) {
                        // Trailing repeated empty cells are padding, not data.
                        let last = row.last().cloned().unwrap_or_default();
                        if !last.is_empty() {
                            row.extend(std::iter::repeat_n(last, n - 1));
                        }
                    }
                }
                "table" => {
                    if let Some(rows) = tables.pop() {
                        match tables.last_mut().and_then(|t| t.last_mut()).and_then(|r| r.last_mut()) {
                            Some(cell) => {
                                for r in &rows {
                                    cell.push(' ');
                                    cell.push_str(&r.join(" "));
                                }
                            }
                            None => page.table(&rows),
                        }
                    }
                }
                _ => {}
            },
            Node::Text(t) => {
                if let Some((text, _)) = blocks.last_mut() {
                    text.push_str(t);
                }
            }
        }
    }
    let number = pages.len() as u32 + 1;
    pages.push(page.finish(number, None));
    pages
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::super::archive::testing::zip_of;
    use super::*;

    #[test]
    fn headings_paragraphs_tables_soft_breaks() {
        let content = r#"<office:document-content xmlns:office="o" xmlns:text="t" xmlns:table="tb"><office:body><office:text>
            <text:h text:outline-level="2">Overview</text:h>
            <text:p>Hello<text:s text:c="2"/>world<text:line-break/>again <text:span>spanned</text:span></text:p>
            <table:table><table:table-row><table:table-cell><text:p>A</text:p></table:table-cell><table:table-cell><text:p>B</text:p></table:table-cell></table:table-row>
            <table:table-row><table:table-cell><text:p>1</text:p></table:table-cell><table:table-cell table:number-columns-repeated="3"/></table:table-row></table:table>
            <text:soft-page-break/>
            <text:list><text:list-item><text:p>item one</text:p></text:list-item></text:list>
            </office:text></office:body></office:document-content>"#;
        let bytes = zip_of(&[
            ("mimetype", b"application/vnd.oasis.opendocument.text"),
            ("content.xml", content.as_bytes()),
        ]);
        let doc = parse(&bytes).unwrap();
        assert_eq!(doc.pages.len(), 2);
        assert_eq!(
            doc.pages[0].text,
            "Overview\n\nHello  world\nagain spanned\n\n| A | B |\n| --- | --- |\n| 1 |  |\n"
        );
        assert_eq!((doc.pages[0].sections[0].heading.as_str(), doc.pages[0].sections[0].level), ("Overview", 2));
        assert_eq!((doc.pages[1].number, doc.pages[1].text.as_str()), (2, "item one\n"));
    }
}
