//! Reading order across columns: find a gutter, read each band's left column before its right.
//!
//! A **gutter** is an x-range in the middle 60 % of the text's width, at least 0.6 em wide (the
//! body's em), that at most 40 % of the lines cross, chosen as the range crossed least (then the
//! widest), so a column's ragged right edge is not part of it. It counts only if both sides hold running text: at least [`MIN_SIDE_LINES`] lines each,
//! whose fragments are mostly wide (the median of those over 2 em at least 45 % of the side's
//! width: a table of contents' page numbers do not count), which a table with short cells is not. Lines that cross the gutter (a title, an abstract, a wide figure
//! caption) split the page into bands, and so does a line on one side with nothing beside it in
//! the other column (a short line under both columns); inside a band the left column's lines come
//! first, then the right's, each top to bottom. A line with fragments on both sides is split between them.
//! Each column is then looked at again (depth 3), so three-column pages read in order too.
//!
//! Cost: one pass over the lines per candidate x bucket (at most [`BUCKETS`] of them).

use super::{Fragment, Line};

/// Lines needed on each side of a gutter.
const MIN_SIDE_LINES: usize = 3;
/// Resolution of the crossing count across the text's width.
const BUCKETS: usize = 400;
/// Nested column splits at most.
const MAX_DEPTH: u32 = 3;

/// `lines` (top to bottom) in reading order.
pub(super) fn reading_order(lines: Vec<Line>, body: f32) -> Vec<Line> {
    order(lines, body, 0)
}

fn order(lines: Vec<Line>, body: f32, depth: u32) -> Vec<Line> {
    if depth >= MAX_DEPTH || lines.len() < 2 * MIN_SIDE_LINES {
        return lines;
    }
    let Some((g0, g1)) = gutter(&lines, body) else {
        return lines;
    };
    // Middles of the lines with text left (right) of the gutter, ascending, to ask "has the other
    // column text at this height?".
    let side_middles = |left_side: bool| {
        let mut v: Vec<f32> = lines
            .iter()
            .filter(|l| l.fragments.iter().any(|f| if left_side { f.x1 <= g0 } else { f.x0 >= g1 }))
            .map(|l| (l.y0 + l.y1) / 2.0)
            .collect();
        v.sort_by(f32::total_cmp);
        v
    };
    let (left_mids, right_mids) = (side_middles(true), side_middles(false));
    let near = |mids: &[f32], line: &Line| {
        let reach = 2.0 * line.size.max(1.0);
        let from = mids.partition_point(|m| *m < line.y0 - reach);
        mids.get(from).is_some_and(|m| *m <= line.y1 + reach)
    };
    let mut out = Vec::with_capacity(lines.len());
    let (mut left, mut right): (Vec<Line>, Vec<Line>) = (Vec::new(), Vec::new());
    for line in lines {
        let crosses = line.fragments.iter().any(|f| f.x0 < g1 && f.x1 > g0);
        let (l, r): (Vec<Fragment>, Vec<Fragment>) = line.fragments.iter().cloned().partition(|f| f.x1 <= g0);
        // A line on one side with nothing beside it in the other column (text under both
        // columns, a short closing line) belongs to the full width, like a crossing one.
        let alone = (r.is_empty() && !near(&right_mids, &line)) || (l.is_empty() && !near(&left_mids, &line));
        if crosses || alone {
            out.extend(order(std::mem::take(&mut left), body, depth + 1));
            out.extend(order(std::mem::take(&mut right), body, depth + 1));
            out.push(line);
            continue;
        }
        if !l.is_empty() {
            left.push(Line { fragments: l, ..line.clone() });
        }
        if !r.is_empty() {
            right.push(Line { fragments: r, ..line });
        }
    }
    out.extend(order(left, body, depth + 1));
    out.extend(order(right, body, depth + 1));
    out
}

/// The gutter's x-range, if the lines have one.
fn gutter(lines: &[Line], body: f32) -> Option<(f32, f32)> {
    let ax0 = lines.iter().map(Line::x0).fold(f32::MAX, f32::min);
    let ax1 = lines.iter().map(Line::x1).fold(f32::MIN, f32::max);
    let width = ax1 - ax0;
    if width <= 0.0 {
        return None;
    }
    let step = width / BUCKETS as f32;
    let mut cross = vec![0usize; BUCKETS];
    for line in lines {
        for f in &line.fragments {
            let a = (((f.x0 - ax0) / step).floor().max(0.0) as usize).min(BUCKETS - 1);
            let b = (((f.x1 - ax0) / step).ceil().max(0.0) as usize).min(BUCKETS);
            // A line counts once per bucket even if two of its fragments touch it.
            for c in cross.iter_mut().take(b).skip(a) {
                *c += 1;
            }
        }
    }
    let limit = lines.len() * 2 / 5;
    let (lo, hi) = (BUCKETS / 5, BUCKETS * 4 / 5);
    // Maximal runs of buckets under the limit inside the middle; in each, the widest stretch at
    // its lowest crossing count (a column's ragged right edge is not the gutter): (start, end,
    // crossings).
    let mut best: Option<(usize, usize, usize)> = None;
    let mut i = lo;
    while i < hi {
        if cross[i] > limit {
            i += 1;
            continue;
        }
        let start = i;
        while i < hi && cross[i] <= limit {
            i += 1;
        }
        let least = cross[start..i].iter().copied().min().unwrap_or(0);
        let (mut j, mut widest) = (start, (start, start));
        while j < i {
            if cross[j] != least {
                j += 1;
                continue;
            }
            let k = (j..i).find(|&k| cross[k] != least).unwrap_or(i);
            if k - j > widest.1 - widest.0 {
                widest = (j, k);
            }
            j = k;
        }
        let wide_enough = (widest.1 - widest.0) as f32 * step >= 0.6 * body;
        let better = match best {
            None => true,
            Some((s, e, w)) => least < w || (least == w && widest.1 - widest.0 > e - s),
        };
        if wide_enough && better {
            best = Some((widest.0, widest.1, least));
        }
    }
    let (s, e, _) = best?;
    // The crossing lines' fragments may end inside the first or last bucket: keep the range strict.
    let (g0, g1) = (ax0 + s as f32 * step, ax0 + e as f32 * step);
    let side = |pick: &dyn Fn(&Fragment) -> bool, span: f32| {
        let mut widths: Vec<f32> = Vec::new();
        let mut count = 0;
        for line in lines {
            let mut any = false;
            for f in line.fragments.iter().filter(|f| pick(f)) {
                // A page number or a bullet beside a line is not what makes it prose or a cell.
                if f.x1 - f.x0 >= 2.0 * body {
                    widths.push(f.x1 - f.x0);
                }
                any = true;
            }
            count += usize::from(any);
        }
        widths.sort_by(f32::total_cmp);
        let median = widths.get(widths.len() / 2).copied().unwrap_or(0.0);
        count >= MIN_SIDE_LINES && median >= 0.45 * span
    };
    let left = side(&|f| f.x1 <= g0, g0 - ax0);
    let right = side(&|f| f.x0 >= g1, ax1 - g1);
    (left && right).then_some((g0, g1))
}

#[cfg(test)]
mod tests {
    use super::super::lines;
    use super::super::testing::word_run;
    use super::*;

    const L: [&str; 4] = ["left column one here", "left column two here", "left column three ok", "left column four end"];
    const R: [&str; 4] = ["right column one now", "right column two now", "right column 3 is it", "right column four ok"];

    /// A title across the page, then two columns drawn line by line across both (left line 1,
    /// right line 1, left line 2...), the order that defeats content-order extraction.
    fn page() -> Vec<Line> {
        let mut g = word_run("A title that spans both of the columns", 72.0, 750.0, 10.0, false);
        for (i, (l, r)) in L.iter().zip(R.iter()).enumerate() {
            let y = 720.0 - 12.0 * i as f32;
            g.extend(word_run(l, 72.0, y, 10.0, false));
            g.extend(word_run(r, 200.0, y, 10.0, false));
        }
        g.extend(word_run("A footer line that spans the whole width", 72.0, 600.0, 10.0, false));
        lines::build(&g)
    }

    #[test]
    fn left_column_before_right() {
        let order: Vec<String> = reading_order(page(), 10.0).iter().map(Line::text).collect();
        let mut want = vec!["A title that spans both of the columns".to_owned()];
        want.extend(L.iter().map(|s| s.to_string()));
        want.extend(R.iter().map(|s| s.to_string()));
        want.push("A footer line that spans the whole width".into());
        assert_eq!(order, want);
    }

    #[test]
    fn short_cells_are_not_columns() {
        let mut g = Vec::new();
        for i in 0..6 {
            let y = 700.0 - 12.0 * i as f32;
            g.extend(word_run("Item", 72.0, y, 10.0, false));
            g.extend(word_run("42", 300.0, y, 10.0, false));
        }
        let lines = lines::build(&g);
        let before: Vec<String> = lines.iter().map(Line::text).collect();
        let after: Vec<String> = reading_order(lines, 10.0).iter().map(Line::text).collect();
        assert_eq!(before, after);
    }
}
