//! Builds a [`Page`] from structured pieces (headings, paragraphs, tables) for the formats that
//! have structure but no text layout of their own (DOCX, PPTX, ODT, spreadsheets, e-mail).
//!
//! The text is what a person would type: a heading is its own line, paragraphs are separated by a
//! blank line, a table is a GitHub-Markdown table (header row, `| --- |` rule, one line per row,
//! `|` in a cell escaped, line breaks inside a cell turned to spaces) so a chunk can quote it and
//! the chunker can keep rows whole. Sections point at the heading's first `char`.

use super::{Page, Section};

/// Accumulates one page.
#[derive(Debug, Default)]
pub(super) struct PageBuilder {
    text: String,
    chars: usize,
    sections: Vec<Section>,
}

impl PageBuilder {
    pub(super) fn new() -> Self {
        PageBuilder::default()
    }

    fn push(&mut self, s: &str) {
        self.chars += s.chars().count();
        self.text.push_str(s);
    }

    fn block(&mut self, s: &str) {
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.push(if self.text.ends_with('\n') { "\n" } else { "\n\n" });
        }
        self.push(s);
        self.push("\n");
    }

    /// A heading of `level` (1 = top); an empty heading is ignored.
    pub(super) fn heading(&mut self, text: &str, level: u8) {
        let text = clean_line(text);
        if text.is_empty() {
            return;
        }
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.push(if self.text.ends_with('\n') { "\n" } else { "\n\n" });
        }
        self.sections.push(Section {
            heading: text.clone(),
            level: level.clamp(1, 6),
            char_start: self.chars,
        });
        self.push(&text);
        self.push("\n");
    }

    /// A heading that has no text of its own here (a PDF bookmark whose title the page does not
    /// print): recorded as a section at the current end of the text, nothing written.
    pub(super) fn mark(&mut self, text: &str, level: u8) {
        let text = clean_line(text);
        if !text.is_empty() {
            self.sections.push(Section { heading: text, level: level.clamp(1, 6), char_start: self.chars });
        }
    }

    /// A paragraph; its inner line breaks are kept, surrounding blank space is not.
    pub(super) fn paragraph(&mut self, text: &str) {
        let text = text.trim();
        if !text.is_empty() {
            self.block(text);
        }
    }

    /// A table, first row as the header. Rows shorter than the widest are padded; a table whose
    /// cells are all empty is skipped.
    pub(super) fn table(&mut self, rows: &[Vec<String>]) {
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        if width == 0 || rows.iter().flatten().all(|c| c.trim().is_empty()) {
            return;
        }
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            out.push('|');
            for c in 0..width {
                out.push(' ');
                out.push_str(&cell(row.get(c).map_or("", String::as_str)));
                out.push_str(" |");
            }
            out.push('\n');
            if i == 0 {
                out.push('|');
                out.push_str(&" --- |".repeat(width));
                out.push('\n');
            }
        }
        out.pop();
        self.block(&out);
    }

    /// True when nothing but whitespace was added.
    pub(super) fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }

    /// The page, numbered `number`, labelled `label`.
    pub(super) fn finish(self, number: u32, label: Option<String>) -> Page {
        Page {
            number,
            text: self.text,
            sections: self.sections,
            label,
            ..Page::default()
        }
    }
}

/// A table cell on one line: whitespace runs become one space, `|` is escaped.
fn cell(text: &str) -> String {
    clean_line(text).replace('|', "\\|")
}

/// Whitespace runs (line breaks included) become one space; ends trimmed.
pub(super) fn clean_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_paragraphs_tables() {
        let mut b = PageBuilder::new();
        b.heading("Intro", 1);
        b.paragraph("One.\nTwo.");
        b.table(&[
            vec!["Name".into(), "Qty".into()],
            vec!["a|b".into(), "2\n3".into()],
            vec!["c".into()],
        ]);
        b.heading("  Näxt  ", 2);
        let page = b.finish(3, Some("Sheet".into()));
        assert_eq!(
            page.text,
            "Intro\n\nOne.\nTwo.\n\n| Name | Qty |\n| --- | --- |\n| a\\|b | 2 3 |\n| c |  |\n\nNäxt\n"
        );
        assert_eq!(page.sections[0].char_start, 0);
        let at: String = page.text.chars().skip(page.sections[1].char_start).collect();
        assert_eq!(at, "Näxt\n");
        assert_eq!(page.sections[1].level, 2);
        assert_eq!((page.number, page.label.as_deref()), (3, Some("Sheet")));
    }

    #[test]
    fn empty_pieces_leave_no_trace() {
        let mut b = PageBuilder::new();
        b.heading(" ", 1);
        b.paragraph("\n");
        b.table(&[vec![String::new()]]);
        assert!(b.is_blank());
    }
}
