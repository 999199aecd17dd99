//! PDF page layout from character geometry: lines, reading order across columns, tables and headings.
//!
//! Input is what PDFium reports for each character of a page ([`Glyph`]: the character, its loose
//! box in page points with y up, its font size with the text matrix applied, bold or not, and
//! whether PDFium put a space before it in content order). Pure Rust from there, tested on
//! synthetic glyphs; `pdf.rs` feeds it PDFium's characters.
//!
//! Steps, per page ([`lay_out`]):
//! 1. **Lines** (`lines.rs`): glyphs consecutive in content order on one baseline form runs; runs
//!    that share a band of height form a line; a line's runs, left to right, become fragments,
//!    split where the gap is at least one em ([`FRAGMENT_GAP_EM`]). Words are spaced where PDFium
//!    spaced them, or where the gap says so.
//! 2. **Reading order** (`columns.rs`): a gutter (an x-range that at most 40 % of the lines cross,
//!    with prose-wide text on both sides) splits the page into columns; lines that cross it (a
//!    title, an abstract) separate bands, and each band reads its left column, then its right.
//!    Applied again inside each column, so three columns work too.
//! 3. **Tables** (`table.rs`): within a column, at least [`table::MIN_ROWS`] consecutive lines of
//!    two or more fragments whose gaps line up (an x-range empty in every row) are a table; it is
//!    written as a Markdown table (first row the header), one line per row.
//! 4. **Headings** (`headings.rs`, over the whole document): from the outline (bookmarks, with
//!    their page targets) when the file has one, otherwise from type: a short line, not ending in a
//!    period, set clearly larger than the body text (the most common size) or wholly bold.
//!
//! Every visible character of the input is in the output exactly once (tables and headings only
//! add `|`, `---` and line breaks), so nothing PDFium read is lost to layout; `pdf.rs` falls
//! back to PDFium's own text where the geometry is unusable (vertical writing, no boxes).

mod columns;
mod headings;
mod lines;
mod table;

pub(super) use headings::{decide, OutlineEntry, PageHeadings, MAX_OUTLINE_ENTRIES};
use headings::Mark;

use super::builder::PageBuilder;
use super::Page;

/// Fragments of a line are split where the gap is at least this many ems.
pub(super) const FRAGMENT_GAP_EM: f32 = 1.0;

/// One character as PDFium placed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Glyph {
    /// The character (ligatures are expanded later).
    pub c: char,
    /// Left edge of its loose box, in page points.
    pub x0: f32,
    /// Bottom edge (y grows upwards).
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Font size in points, the text matrix applied.
    pub size: f32,
    /// Set in a bold face (weight ≥ 550, or "Bold" in the font's name).
    pub bold: bool,
    /// PDFium had a space (the file's or its own) between this glyph and the previous one in
    /// content order.
    pub space_before: bool,
}

/// A piece of a line between gaps of at least [`FRAGMENT_GAP_EM`].
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fragment {
    pub text: String,
    pub x0: f32,
    pub x1: f32,
}

/// A line of text: fragments left to right on one band of height.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Line {
    pub fragments: Vec<Fragment>,
    /// Bottom and top of the line's band.
    pub y0: f32,
    pub y1: f32,
    /// The most common glyph size on the line (rounded to 0.5 pt).
    pub size: f32,
    /// At least 80 % of the line's glyphs are bold.
    pub bold: bool,
    /// Visible glyphs on the line.
    pub glyphs: usize,
}

impl Line {
    pub(super) fn x0(&self) -> f32 {
        self.fragments.first().map_or(0.0, |f| f.x0)
    }

    pub(super) fn x1(&self) -> f32 {
        self.fragments.last().map_or(0.0, |f| f.x1)
    }

    /// The fragments joined by one space.
    pub(super) fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.fragments {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&f.text);
        }
        out
    }
}

/// A page's content in reading order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Block {
    /// A line of running text (or a heading, decided later).
    Line(Line),
    /// A table: rows of cells.
    Table(Vec<Vec<String>>),
}

/// A laid-out page, before headings are decided.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct PageLayout {
    pub blocks: Vec<Block>,
    /// Visible glyphs per font size (rounded to 0.5 pt), for the document's body size.
    pub sizes: Vec<(f32, usize)>,
    /// Visible glyphs placed (every one is in `blocks`).
    pub glyphs: usize,
}

/// Lays out one page's glyphs.
pub(super) fn lay_out(glyphs: &[Glyph]) -> PageLayout {
    let lines = lines::build(glyphs);
    let body = body_size(lines.iter().map(|l| (l.size, l.glyphs)));
    let ordered = columns::reading_order(lines, body);
    let blocks = table::find(ordered, body);
    let mut sizes: Vec<(f32, usize)> = Vec::new();
    for g in glyphs.iter().filter(|g| !g.c.is_whitespace()) {
        let s = round_size(g.size);
        match sizes.iter_mut().find(|(x, _)| *x == s) {
            Some((_, n)) => *n += 1,
            None => sizes.push((s, 1)),
        }
    }
    let placed = glyphs.iter().filter(|g| !g.c.is_whitespace()).count();
    PageLayout { blocks, sizes, glyphs: placed }
}

/// Sizes are compared at half-point precision.
pub(super) fn round_size(size: f32) -> f32 {
    (size * 2.0).round() / 2.0
}

/// The most common size among `(size, count)` pairs, weighted by count; 10 pt when empty.
pub(super) fn body_size(sizes: impl Iterator<Item = (f32, usize)>) -> f32 {
    let mut hist: Vec<(f32, usize)> = Vec::new();
    for (s, n) in sizes {
        let s = round_size(s);
        match hist.iter_mut().find(|(x, _)| *x == s) {
            Some((_, m)) => *m += n,
            None => hist.push((s, n)),
        }
    }
    hist.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)))
        .map_or(10.0, |(s, _)| s.max(1.0))
}

/// Writes a laid-out page: headings as their own lines (with sections), tables as Markdown,
/// paragraphs split at vertical gaps.
pub(super) fn render(layout: &PageLayout, number: u32, headings: &PageHeadings) -> Page {
    let mut page = PageBuilder::new();
    let mut paragraph = String::new();
    let mut prev: Option<&Line> = None;
    let mut unplaced = headings.unplaced.iter().peekable();
    let flush = |page: &mut PageBuilder, paragraph: &mut String| {
        page.paragraph(paragraph);
        paragraph.clear();
    };
    let mut i = 0;
    while i < layout.blocks.len() {
        while let Some((_, title, level)) = unplaced.next_if(|u| u.0 <= i) {
            flush(&mut page, &mut paragraph);
            page.mark(title, *level);
            prev = None;
        }
        match &layout.blocks[i] {
            Block::Table(rows) => {
                flush(&mut page, &mut paragraph);
                page.table(rows);
                prev = None;
            }
            Block::Line(line) => {
                if let Some(Mark::Heading(level)) = headings.marks.get(i).copied().flatten() {
                    let mut text = line.text();
                    while let (Some(Some(Mark::Continue)), Some(Block::Line(next))) =
                        (headings.marks.get(i + 1), layout.blocks.get(i + 1))
                    {
                        let next = next.text();
                        // "environ-" + "ments": a word the line broke, rejoined.
                        if text.ends_with('-') && next.starts_with(char::is_lowercase) {
                            text.pop();
                        } else {
                            text.push(' ');
                        }
                        text.push_str(&next);
                        i += 1;
                    }
                    flush(&mut page, &mut paragraph);
                    page.heading(&text, level);
                    prev = None;
                    i += 1;
                    continue;
                }
                if let Some(p) = prev {
                    if new_paragraph(p, line) {
                        flush(&mut page, &mut paragraph);
                    } else {
                        paragraph.push('\n');
                    }
                }
                paragraph.push_str(&line.text());
                prev = Some(line);
            }
        }
        i += 1;
    }
    flush(&mut page, &mut paragraph);
    for (_, title, level) in unplaced {
        page.mark(title, *level);
    }
    page.finish(number, None)
}

/// A paragraph break between two lines read one after the other: a vertical gap of more than
/// about a line, a move up (the next column), or a change of size.
fn new_paragraph(prev: &Line, next: &Line) -> bool {
    let size = prev.size.max(next.size).max(1.0);
    let gap = prev.y0 - next.y1;
    gap > 0.8 * size || next.y1 > prev.y1 + 0.5 * size || (prev.size - next.size).abs() > 0.2 * size
}

#[cfg(test)]
pub(super) mod testing {
    use super::Glyph;

    /// Glyphs for `text` set on one baseline from `x`, `size` points, monospaced at 0.5 em.
    pub fn word_run(text: &str, x: f32, baseline: f32, size: f32, bold: bool) -> Vec<Glyph> {
        let w = size * 0.5;
        let mut out = Vec::new();
        let mut space = false;
        for (i, c) in text.chars().enumerate() {
            if c == ' ' {
                space = true;
                continue;
            }
            let x0 = x + i as f32 * w;
            out.push(Glyph {
                c,
                x0,
                x1: x0 + w,
                y0: baseline - 0.2 * size,
                y1: baseline + 0.8 * size,
                size,
                bold,
                space_before: std::mem::take(&mut space),
            });
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::testing::word_run;
    use super::*;

    #[test]
    fn body_size_is_the_mode() {
        assert_eq!(body_size([(10.0, 500), (14.4, 30), (9.96, 200)].into_iter()), 10.0);
        assert_eq!(body_size(std::iter::empty()), 10.0);
    }

    #[test]
    fn paragraphs_split_at_gaps() {
        let mut g = word_run("First line of text", 72.0, 700.0, 10.0, false);
        g.extend(word_run("second line here", 72.0, 688.0, 10.0, false));
        g.extend(word_run("After a gap", 72.0, 650.0, 10.0, false));
        let layout = lay_out(&g);
        let page = render(&layout, 1, &PageHeadings::default());
        assert_eq!(page.text, "First line of text\nsecond line here\n\nAfter a gap\n");
    }
}
