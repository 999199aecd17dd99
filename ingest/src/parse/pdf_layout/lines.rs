//! Glyphs → lines of fragments.
//!
//! - A **run** is glyphs consecutive in content order that share a baseline (their boxes overlap
//!   vertically by at least half the smaller height) and move right by less than
//!   [`FRAGMENT_GAP_EM`] ems (a small step back is kerning). Inside a run a space goes where PDFium
//!   had one, or where the gap is over a quarter em.
//! - Runs sorted top to bottom (by the middle of their box) join the line before when they overlap
//!   its band by half the smaller height; a line's band is its first run's, so lines never chain.
//! - A line's runs sorted left to right merge into **fragments** while the gap is under
//!   [`FRAGMENT_GAP_EM`] ems; a wider gap (a table column, a column gutter) starts a new fragment.
//!
//! Sorting makes this O(n log n) in glyphs.

use super::{round_size, Fragment, Glyph, Line, FRAGMENT_GAP_EM};

/// Glyphs on one baseline, consecutive in content order.
#[derive(Debug, Clone)]
struct Run {
    text: String,
    x0: f32,
    x1: f32,
    y0: f32,
    y1: f32,
    /// (rounded size, glyphs) pairs.
    sizes: Vec<(f32, usize)>,
    bold: usize,
    glyphs: usize,
    /// The run's first glyph had a space before it in content order.
    space_before: bool,
}

impl Run {
    fn new(g: &Glyph) -> Run {
        let mut run = Run {
            text: String::new(),
            x0: g.x0,
            x1: g.x1,
            y0: g.y0,
            y1: g.y1,
            sizes: Vec::new(),
            bold: 0,
            glyphs: 0,
            space_before: g.space_before,
        };
        run.add(g, false);
        run
    }

    fn add(&mut self, g: &Glyph, space: bool) {
        if space {
            self.text.push(' ');
        }
        match super::super::pdf::ligature(g.c) {
            Some(spelled) => self.text.push_str(spelled),
            None => self.text.push(g.c),
        }
        self.x0 = self.x0.min(g.x0);
        self.x1 = self.x1.max(g.x1);
        self.glyphs += 1;
        self.bold += usize::from(g.bold);
        let s = round_size(g.size);
        match self.sizes.iter_mut().find(|(x, _)| *x == s) {
            Some((_, n)) => *n += 1,
            None => self.sizes.push((s, 1)),
        }
    }

    fn middle(&self) -> f32 {
        (self.y0 + self.y1) / 2.0
    }

    fn size(&self) -> f32 {
        self.sizes
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)))
            .map_or(1.0, |(s, _)| *s)
            .max(1.0)
    }
}

/// How much `[a0, a1]` and `[b0, b1]` overlap, over the smaller length.
fn overlap(a0: f32, a1: f32, b0: f32, b1: f32) -> f32 {
    let shared = a1.min(b1) - a0.max(b0);
    let smaller = (a1 - a0).min(b1 - b0).max(0.1);
    shared / smaller
}

/// Lines of the page, top to bottom.
pub(super) fn build(glyphs: &[Glyph]) -> Vec<Line> {
    let runs = runs(glyphs);
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| runs[b].middle().total_cmp(&runs[a].middle()).then(runs[a].x0.total_cmp(&runs[b].x0)));
    // (band bottom, band top, run indices)
    let mut bands: Vec<(f32, f32, Vec<usize>)> = Vec::new();
    for i in order {
        let r = &runs[i];
        match bands.last_mut() {
            Some((y0, y1, members)) if overlap(*y0, *y1, r.y0, r.y1) >= 0.5 => members.push(i),
            _ => bands.push((r.y0, r.y1, vec![i])),
        }
    }
    bands.into_iter().map(|(_, _, members)| line(&runs, members)).collect()
}

fn runs(glyphs: &[Glyph]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut last: Option<&Glyph> = None;
    for g in glyphs {
        if g.c.is_whitespace() {
            continue;
        }
        let joined = match (last, out.last_mut()) {
            (Some(p), Some(run)) => {
                let size = p.size.max(g.size).max(1.0);
                let dx = g.x0 - p.x1;
                let same_line = overlap(p.y0, p.y1, g.y0, g.y1) >= 0.5;
                if same_line && dx >= -0.5 * size && dx < FRAGMENT_GAP_EM * size {
                    run.add(g, g.space_before || dx > 0.25 * size);
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        if !joined {
            out.push(Run::new(g));
        }
        last = Some(g);
    }
    out
}

/// One band's runs, left to right, merged into fragments.
fn line(runs: &[Run], mut members: Vec<usize>) -> Line {
    members.sort_by(|&a, &b| runs[a].x0.total_cmp(&runs[b].x0));
    let mut fragments: Vec<Fragment> = Vec::new();
    let (mut y0, mut y1) = (f32::MAX, f32::MIN);
    let mut sizes: Vec<(f32, usize)> = Vec::new();
    let (mut bold, mut glyphs) = (0usize, 0usize);
    let mut prev_size = 1.0f32;
    for &i in &members {
        let r = &runs[i];
        y0 = y0.min(r.y0);
        y1 = y1.max(r.y1);
        bold += r.bold;
        glyphs += r.glyphs;
        for &(s, n) in &r.sizes {
            match sizes.iter_mut().find(|(x, _)| *x == s) {
                Some((_, m)) => *m += n,
                None => sizes.push((s, n)),
            }
        }
        let size = r.size().max(prev_size);
        prev_size = r.size();
        match fragments.last_mut() {
            Some(f) if r.x0 - f.x1 < FRAGMENT_GAP_EM * size => {
                let gap = r.x0 - f.x1;
                if r.space_before || gap > 0.15 * size {
                    f.text.push(' ');
                }
                f.text.push_str(&r.text);
                f.x1 = f.x1.max(r.x1);
            }
            _ => fragments.push(Fragment { text: r.text.clone(), x0: r.x0, x1: r.x1 }),
        }
    }
    let size = sizes
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)))
        .map_or(1.0, |(s, _)| *s);
    Line { fragments, y0, y1, size, bold: glyphs > 0 && bold * 5 >= glyphs * 4, glyphs }
}

#[cfg(test)]
mod tests {
    use super::super::testing::word_run;
    use super::*;

    fn texts(lines: &[Line]) -> Vec<Vec<String>> {
        lines.iter().map(|l| l.fragments.iter().map(|f| f.text.clone()).collect()).collect()
    }

    #[test]
    fn words_lines_and_fragments() {
        let mut g = word_run("Name Qty", 72.0, 700.0, 10.0, true);
        g.extend(word_run("apples", 200.0, 700.0, 10.0, false));
        g.extend(word_run("second line", 72.0, 688.0, 10.0, false));
        let lines = build(&g);
        assert_eq!(texts(&lines), [vec!["Name Qty", "apples"], vec!["second line"]]);
        assert!(!lines[0].bold, "3 of 10 glyphs are not bold");
        assert_eq!(lines[1].size, 10.0);
    }

    #[test]
    fn content_order_does_not_matter() {
        // The second line drawn first, and a line's right half before its left half.
        let mut g = word_run("below", 72.0, 680.0, 10.0, false);
        g.extend(word_run("right", 300.0, 700.0, 10.0, false));
        g.extend(word_run("left", 72.0, 700.0, 10.0, false));
        let lines = build(&g);
        assert_eq!(texts(&lines), [vec!["left", "right"], vec!["below"]]);
    }

    #[test]
    fn a_gap_without_pdfium_space_is_a_space() {
        let mut g = word_run("ab", 72.0, 700.0, 10.0, false);
        g.extend(word_run("cd", 83.0, 700.0, 10.0, false)); // 1 pt after "ab" ends at 82
        g[2].space_before = false;
        assert_eq!(texts(&build(&g)), [vec!["abcd"]]);
        let mut g = word_run("ab", 72.0, 700.0, 10.0, false);
        g.extend(word_run("cd", 86.0, 700.0, 10.0, false)); // 4 pt: 0.4 em
        assert_eq!(texts(&build(&g)), [vec!["ab cd"]]);
    }
}
