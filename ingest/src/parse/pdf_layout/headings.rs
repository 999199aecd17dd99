//! Which lines are headings, over the whole document.
//!
//! - **Outline first.** A file with bookmarks names its own headings: each entry (title, depth,
//!   target page) is looked for on its page, after the entry placed before it there, as a line
//!   (or up to three consecutive lines) whose letters and digits start with the title's and are
//!   not much longer. Found, that line is the heading, at the entry's depth (1 = top). Not found
//!   (a bookmark to a figure, a title the page does not print), the heading is still recorded,
//!   with no text of its own, where the page's next entry would be.
//! - **Otherwise from type.** The body size is the size most glyphs of the document have. A line
//!   is a heading when it is short (2 to 120 characters, at most 14 words), has a letter, does
//!   not end in `.`, `,` or `;`, is not in a table, and is set at least 15 % larger than the
//!   body (levels by size, largest first) or wholly bold at body size (the level after the sized
//!   ones). If headings would hold more than a fifth of the text (slides, a poster), bold lines
//!   are dropped, then sizes too: no headings beat wrong ones. Consecutive heading lines of the
//!   same level, a line apart, are one heading (three lines at most).

use super::{body_size, round_size, Block, Line, PageLayout};

/// Lines one heading may take (a block of short bold lines is an address, not a heading).
const MAX_HEADING_LINES: usize = 3;

/// Bookmarks walked at most (a hostile outline can be huge or loop).
pub(in crate::parse) const MAX_OUTLINE_ENTRIES: usize = 10_000;

/// One bookmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::parse) struct OutlineEntry {
    /// Its title.
    pub title: String,
    /// 1 for a top-level bookmark.
    pub level: u8,
    /// The page it points to, 0-based.
    pub page: usize,
}

/// What a block is, for rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::parse) enum Mark {
    /// A heading of this level starts here.
    Heading(u8),
    /// The line continues the heading above it.
    Continue,
}

/// A page's heading decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::parse) struct PageHeadings {
    /// Per block: heading, continuation or nothing.
    pub marks: Vec<Option<Mark>>,
    /// Headings without a line of their own: (before block index, title, level).
    pub unplaced: Vec<(usize, String, u8)>,
}

/// Letters and digits, lower-cased.
fn key(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Headings for each page (`None`: a page without layout, its text from another engine).
pub(in crate::parse) fn decide(pages: &[Option<&PageLayout>], outline: &[OutlineEntry]) -> Vec<PageHeadings> {
    let mut out: Vec<PageHeadings> = pages
        .iter()
        .map(|p| PageHeadings { marks: vec![None; p.map_or(0, |l| l.blocks.len())], unplaced: Vec::new() })
        .collect();
    if outline.iter().any(|e| e.page < pages.len()) {
        from_outline(pages, outline, &mut out);
    } else {
        from_type(pages, &mut out);
    }
    out
}

fn from_outline(pages: &[Option<&PageLayout>], outline: &[OutlineEntry], out: &mut [PageHeadings]) {
    // Per page, the block after the last placed heading, and each block's key (made once).
    let mut cursor = vec![0usize; pages.len()];
    let mut keys: Vec<Option<Vec<Option<String>>>> = vec![None; pages.len()];
    for entry in outline {
        let want = key(&entry.title);
        let (Some(layout), Some(result)) = (pages.get(entry.page).copied().flatten(), out.get_mut(entry.page)) else {
            if let Some(result) = out.get_mut(entry.page) {
                result.unplaced.push((0, entry.title.clone(), entry.level));
            }
            continue;
        };
        let page_keys = keys[entry.page].get_or_insert_with(|| {
            layout
                .blocks
                .iter()
                .map(|b| match b {
                    Block::Line(line) => Some(key(&line.text())),
                    Block::Table(_) => None,
                })
                .collect()
        });
        let from = cursor[entry.page];
        match (!want.is_empty()).then(|| find_title(page_keys, from, &want)).flatten() {
            Some((at, lines)) => {
                result.marks[at] = Some(Mark::Heading(entry.level));
                for m in result.marks.iter_mut().skip(at + 1).take(lines - 1) {
                    *m = Some(Mark::Continue);
                }
                cursor[entry.page] = at + lines;
            }
            None => result.unplaced.push((from, entry.title.clone(), entry.level)),
        }
    }
}

/// The first line at or after `from` (with up to two more) that reads as `want`: its index and
/// how many lines it takes. `keys` are the blocks' keys (`None` for a table).
fn find_title(keys: &[Option<String>], from: usize, want: &str) -> Option<(usize, usize)> {
    let limit = want.len() + want.len() / 2 + 6;
    for i in from..keys.len() {
        let mut have = String::new();
        for (n, k) in keys[i..].iter().take(3).enumerate() {
            let Some(k) = k else { break };
            have.push_str(k);
            if have.len() > limit {
                break;
            }
            if have.starts_with(want) {
                return Some((i, n + 1));
            }
            if !want.starts_with(&have) {
                break;
            }
        }
    }
    None
}

/// A line that could be a heading by its looks: `Some(size class)`, where bold at body size is
/// class 0.0.
fn candidate(line: &Line, body: f32) -> Option<f32> {
    let text = line.text();
    let chars = text.chars().count();
    if !(2..=120).contains(&chars)
        || text.split_whitespace().count() > 14
        || !text.chars().any(char::is_alphabetic)
        || text.ends_with(['.', ',', ';'])
    {
        return None;
    }
    if line.size >= 1.15 * body {
        Some(round_size(line.size))
    } else if line.bold && line.size >= 0.95 * body && chars <= 80 {
        Some(0.0)
    } else {
        None
    }
}

fn from_type(pages: &[Option<&PageLayout>], out: &mut [PageHeadings]) {
    let body = body_size(pages.iter().flatten().flat_map(|p| p.sizes.iter().copied()));
    // (page, block, class, characters)
    let mut found: Vec<(usize, usize, f32, usize)> = Vec::new();
    let mut chars = 0usize;
    for (p, layout) in pages.iter().enumerate() {
        for (b, block) in layout.iter().flat_map(|l| l.blocks.iter()).enumerate() {
            if let Block::Line(line) = block {
                chars += line.glyphs;
                if let Some(class) = candidate(line, body) {
                    found.push((p, b, class, line.glyphs));
                }
            }
        }
    }
    let too_many = |found: &[(usize, usize, f32, usize)]| found.iter().map(|f| f.3).sum::<usize>() * 5 > chars;
    if too_many(&found) {
        found.retain(|f| f.2 > 0.0);
    }
    if too_many(&found) {
        return;
    }
    let mut classes: Vec<f32> = found.iter().map(|f| f.2).filter(|c| *c > 0.0).collect();
    classes.sort_by(|a, b| b.total_cmp(a));
    classes.dedup();
    let level = |class: f32| -> u8 {
        let rank = if class > 0.0 { classes.iter().position(|c| *c == class).unwrap_or(0) } else { classes.len() };
        (rank + 1).min(6) as u8
    };
    // (page, block, level) of the line before, and how many lines its heading has.
    let mut prev: Option<(usize, usize, u8)> = None;
    let mut taken = 0usize;
    for (p, b, class, _) in found {
        let lvl = level(class);
        let continues = taken < MAX_HEADING_LINES
            && prev.is_some_and(|(pp, pb, pl)| pp == p && pb + 1 == b && pl == lvl && close(pages[p], b));
        taken = if continues { taken + 1 } else { 1 };
        out[p].marks[b] = Some(if continues { Mark::Continue } else { Mark::Heading(lvl) });
        prev = Some((p, b, lvl));
    }
}

/// Block `b` sits right under block `b - 1` (a wrapped heading, not the next heading).
fn close(layout: Option<&PageLayout>, b: usize) -> bool {
    let Some(layout) = layout else { return false };
    match (layout.blocks.get(b.wrapping_sub(1)), layout.blocks.get(b)) {
        (Some(Block::Line(a)), Some(Block::Line(c))) => a.y0 - c.y1 < 0.5 * a.size && c.y1 <= a.y1,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::word_run;
    use super::super::{lay_out, render};
    use super::*;

    fn doc() -> Vec<PageLayout> {
        let mut g = word_run("1 Install", 72.0, 750.0, 16.0, true);
        g.extend(word_run("Body text of the first part, long enough to be body text.", 72.0, 720.0, 10.0, false));
        g.extend(word_run("More body text follows on this line of the page.", 72.0, 708.0, 10.0, false));
        g.extend(word_run("1.1 Packages", 72.0, 680.0, 12.0, true));
        g.extend(word_run("The packages are listed in the table that follows.", 72.0, 660.0, 10.0, false));
        g.extend(word_run("Notes", 72.0, 640.0, 10.0, true));
        g.extend(word_run("Nothing more to say about them really, the end.", 72.0, 628.0, 10.0, false));
        let mut g2 = word_run("2 Use", 72.0, 750.0, 16.0, true);
        for i in 0..8 {
            g2.extend(word_run("Body text on the second page, of body size too.", 72.0, 720.0 - 12.0 * i as f32, 10.0, false));
        }
        vec![lay_out(&g), lay_out(&g2)]
    }

    fn sections(layouts: &[PageLayout], outline: &[OutlineEntry]) -> Vec<(String, u8)> {
        let refs: Vec<Option<&PageLayout>> = layouts.iter().map(Some).collect();
        let decided = decide(&refs, outline);
        layouts
            .iter()
            .zip(&decided)
            .enumerate()
            .flat_map(|(i, (l, h))| render(l, i as u32 + 1, h).sections)
            .map(|s| (s.heading, s.level))
            .collect()
    }

    #[test]
    fn headings_from_type() {
        let got = sections(&doc(), &[]);
        let want = [("1 Install", 1), ("1.1 Packages", 2), ("Notes", 3), ("2 Use", 1)];
        assert_eq!(got, want.map(|(h, l)| (h.to_owned(), l)));
    }

    #[test]
    fn the_outline_wins_and_unprinted_titles_are_kept() {
        let outline = [
            OutlineEntry { title: "1 Install".into(), level: 1, page: 0 },
            OutlineEntry { title: "1.1 Packages".into(), level: 2, page: 0 },
            OutlineEntry { title: "A bookmark the page does not print".into(), level: 2, page: 1 },
            OutlineEntry { title: "2 Use".into(), level: 1, page: 1 },
        ];
        let got = sections(&doc(), &outline);
        let want = [("1 Install", 1), ("1.1 Packages", 2), ("A bookmark the page does not print", 2), ("2 Use", 1)];
        assert_eq!(got, want.map(|(h, l)| (h.to_owned(), l)));
    }

    #[test]
    fn wrapped_heading_is_one() {
        let mut g = word_run("A long title that", 72.0, 750.0, 16.0, false);
        g.extend(word_run("wraps onto two lines", 72.0, 734.0, 16.0, false));
        for i in 0..6 {
            g.extend(word_run("Plain body text, at the size most glyphs have.", 72.0, 700.0 - 12.0 * i as f32, 10.0, false));
        }
        let got = sections(&[lay_out(&g)], &[]);
        assert_eq!(got, [("A long title that wraps onto two lines".to_owned(), 1)]);
    }
}
