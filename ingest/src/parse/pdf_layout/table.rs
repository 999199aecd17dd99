//! Tables: consecutive lines whose fragments sit in the same columns.
//!
//! A table starts at a line of at least two fragments and grows over the following lines while
//! each has at least two fragments, follows the one before within three line heights, and the
//! x-ranges empty in *every* row so far (the column gaps, at least 0.5 em wide, inside the rows'
//! common extent) still number at least one. At [`MIN_ROWS`] rows or more it is a table: the
//! gaps cut each row into cells (a fragment goes to the column its left edge is in; two in one
//! cell are joined by a space). A two-column "table" whose cells are mostly as wide as their
//! column is running text in two columns that the gutter search did not take, and is left as
//! lines; so is a listing whose first column numbers its lines one by one.

use super::{Block, Line};

/// Rows a table needs.
pub(super) const MIN_ROWS: usize = 3;
/// Rows one table takes at most (a longer run goes on as a new table): bounds the work on a
/// hostile page of thousands of aligned lines.
const MAX_ROWS: usize = 500;

/// The lines in reading order, with tables found among them.
pub(super) fn find(lines: Vec<Line>, body: f32) -> Vec<Block> {
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        if let Some((end, gaps)) = grow(&lines, i, body) {
            if end - i >= MIN_ROWS {
                let rows = cells(&lines[i..end], &gaps);
                if !prose(&lines[i..end], &gaps) && !numbered_lines(&rows) {
                    out.push(Block::Table(rows));
                } else {
                    // Not a table: nor is any run inside it (and looking again would be quadratic).
                    out.extend(lines[i..end].iter().cloned().map(Block::Line));
                }
                i = end;
                continue;
            }
        }
        out.push(Block::Line(lines[i].clone()));
        i += 1;
    }
    out
}

/// Empty x-ranges between a line's fragments, at least `min` wide.
fn gaps_of(line: &Line, min: f32) -> Vec<(f32, f32)> {
    line.fragments
        .windows(2)
        .filter(|w| w[1].x0 - w[0].x1 >= min)
        .map(|w| (w[0].x1, w[1].x0))
        .collect()
}

/// The parts of `gaps` that no fragment of `line` covers, at least `min` wide.
fn keep_clear(gaps: &[(f32, f32)], line: &Line, min: f32) -> Vec<(f32, f32)> {
    let mut out = Vec::new();
    for &(a, b) in gaps {
        let mut pieces = vec![(a, b)];
        for f in &line.fragments {
            pieces = pieces
                .into_iter()
                .flat_map(|(p0, p1)| {
                    if f.x1 <= p0 || f.x0 >= p1 {
                        vec![(p0, p1)]
                    } else {
                        vec![(p0, f.x0.min(p1)), (f.x1.max(p0), p1)]
                    }
                })
                .filter(|(p0, p1)| p1 - p0 >= min)
                .collect();
        }
        out.extend(pieces);
    }
    out
}

/// The longest table-like run from `start`: its end and its column gaps.
fn grow(lines: &[Line], start: usize, body: f32) -> Option<(usize, Vec<(f32, f32)>)> {
    let first = &lines[start];
    if first.fragments.len() < 2 {
        return None;
    }
    let min = 0.5 * body;
    let mut gaps = gaps_of(first, min);
    let mut end = start + 1;
    while end < lines.len() && end - start < MAX_ROWS {
        let (prev, next) = (&lines[end - 1], &lines[end]);
        let pitch = prev.y0 - next.y1;
        if next.fragments.len() < 2 || pitch > 3.0 * prev.size.max(next.size) || next.y1 > prev.y1 {
            break;
        }
        let kept = keep_clear(&gaps, next, min);
        // Every row must have something on both sides of at least one kept gap (the rows before
        // are looked at again only when the gaps narrowed).
        let split = |l: &Line| kept.iter().any(|&(a, b)| l.x0() < a && l.x1() > b);
        let rows = if kept == gaps { &lines[end..=end] } else { &lines[start..=end] };
        if kept.is_empty() || !rows.iter().all(split) {
            break;
        }
        gaps = kept;
        end += 1;
    }
    (!gaps.is_empty()).then_some((end, gaps))
}

/// Two columns whose cells mostly fill them: running text, not a table.
fn prose(rows: &[Line], gaps: &[(f32, f32)]) -> bool {
    if gaps.len() != 1 {
        return false;
    }
    let (a, b) = gaps[0];
    let x0 = rows.iter().map(Line::x0).fold(f32::MAX, f32::min);
    let x1 = rows.iter().map(Line::x1).fold(f32::MIN, f32::max);
    let filled = |span: f32, pick: &dyn Fn(f32) -> bool| {
        let mut widths: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.fragments.iter())
            .filter(|f| pick(f.x0))
            .map(|f| f.x1 - f.x0)
            .collect();
        widths.sort_by(f32::total_cmp);
        widths.get(widths.len() / 2).is_some_and(|m| *m >= 0.7 * span)
    };
    filled(a - x0, &|x| x < a) && filled(x1 - b, &|x| x >= b)
}

/// Two columns, the first holding line numbers that count up by one (a listing with numbered
/// lines, as LaTeX's documented sources print them): text, not a table.
fn numbered_lines(rows: &[Vec<String>]) -> bool {
    if rows.first().is_none_or(|r| r.len() != 2) {
        return false;
    }
    let numbers: Vec<u64> = rows.iter().filter_map(|r| r[0].trim().parse().ok()).collect();
    let numbered = rows.iter().filter(|r| !r[0].trim().is_empty()).count();
    numbers.len() == numbered && numbers.len() >= MIN_ROWS.min(rows.len()) && numbers.windows(2).all(|w| w[1] == w[0] + 1)
}

/// Each row cut into cells at the gaps.
fn cells(rows: &[Line], gaps: &[(f32, f32)]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| {
            let mut cells = vec![String::new(); gaps.len() + 1];
            for f in &row.fragments {
                let col = gaps.iter().filter(|(a, _)| f.x0 >= *a).count();
                let cell = &mut cells[col];
                if !cell.is_empty() {
                    cell.push(' ');
                }
                cell.push_str(&f.text);
            }
            cells
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::lines;
    use super::super::testing::word_run;
    use super::*;

    fn table_page() -> Vec<Line> {
        let rows = [["Fruit", "Qty", "Price"], ["Apple", "3", "1.20"], ["Banana", "12", "0.25"], ["Kiwi", "", "2.00"]];
        let mut g = word_run("Some text before the table.", 72.0, 730.0, 10.0, false);
        for (i, row) in rows.iter().enumerate() {
            let y = 700.0 - 14.0 * i as f32;
            for (c, cell) in row.iter().enumerate() {
                g.extend(word_run(cell, 72.0 + 120.0 * c as f32, y, 10.0, i == 0));
            }
        }
        g.extend(word_run("And text after it.", 72.0, 620.0, 10.0, false));
        lines::build(&g)
    }

    #[test]
    fn aligned_rows_make_a_table() {
        let blocks = find(table_page(), 10.0);
        assert_eq!(blocks.len(), 3, "{blocks:#?}");
        let Block::Table(rows) = &blocks[1] else { panic!("{blocks:#?}") };
        assert_eq!(rows[0], ["Fruit", "Qty", "Price"]);
        assert_eq!(rows[2], ["Banana", "12", "0.25"]);
        assert_eq!(rows[3], ["Kiwi", "", "2.00"]);
    }

    #[test]
    fn numbered_code_lines_are_not_a_table() {
        let mut g = Vec::new();
        for (i, code) in ["\\def\\a{1}%", "\\def\\b{2}%", "\\let\\c\\a", "\\fi"].iter().enumerate() {
            let y = 700.0 - 12.0 * i as f32;
            g.extend(word_run(&(41 + i).to_string(), 72.0, y, 10.0, false));
            g.extend(word_run(code, 110.0, y, 10.0, false));
        }
        let blocks = find(lines::build(&g), 10.0);
        assert!(blocks.iter().all(|b| matches!(b, Block::Line(_))), "{blocks:#?}");
        // Numbers that do not count line by line are a column like any other.
        assert!(!numbered_lines(&[vec!["3".into(), "a".into()], vec!["7".into(), "b".into()], vec!["9".into(), "c".into()]]));
    }

    #[test]
    fn thousands_of_aligned_rows_are_cheap() {
        let mut g = Vec::new();
        for i in 0..5000 {
            let y = 60_000.0 - 12.0 * i as f32;
            g.extend(word_run("cell", 72.0, y, 10.0, false));
            g.extend(word_run(&i.to_string(), 200.0, y, 10.0, false));
            g.extend(word_run("x", 300.0, y, 10.0, false));
        }
        let started = std::time::Instant::now();
        let blocks = find(lines::build(&g), 10.0);
        assert!(started.elapsed().as_secs_f64() < 2.0, "{:?}", started.elapsed());
        let tables: Vec<usize> = blocks.iter().filter_map(|b| if let Block::Table(r) = b { Some(r.len()) } else { None }).collect();
        assert_eq!(tables.iter().sum::<usize>(), 5000);
        assert!(tables.iter().all(|n| *n <= MAX_ROWS), "{tables:?}");
        // Two columns that fill their width are running text: rejected once per run, not per line.
        let mut g = Vec::new();
        for i in 0..5000 {
            let y = 60_000.0 - 12.0 * i as f32;
            g.extend(word_run("left column words", 72.0, y, 10.0, false));
            g.extend(word_run("right column text", 170.0, y, 10.0, false));
        }
        let started = std::time::Instant::now();
        let blocks = find(lines::build(&g), 10.0);
        assert!(started.elapsed().as_secs_f64() < 2.0, "{:?}", started.elapsed());
        assert!(blocks.iter().all(|b| matches!(b, Block::Line(_))));
    }

    #[test]
    fn two_rows_are_not_a_table() {
        let mut lines = table_page();
        lines.truncate(3); // text, header, one row
        assert!(find(lines, 10.0).iter().all(|b| matches!(b, Block::Line(_))));
    }

    #[test]
    fn misaligned_rows_are_not_a_table() {
        // Each row's gap lies where the row before has text.
        let mut g = Vec::new();
        for (i, left) in ["ab", "abcdefgh", "abcdefghijklmn", "abcdefghijklmnopqrst"].iter().enumerate() {
            let y = 700.0 - 14.0 * i as f32;
            g.extend(word_run(left, 72.0, y, 10.0, false));
            g.extend(word_run("next", 72.0 + 5.0 * left.len() as f32 + 12.0, y, 10.0, false));
        }
        let lines = lines::build(&g);
        assert!(lines.iter().all(|l| l.fragments.len() == 2), "{lines:#?}");
        let blocks = find(lines, 10.0);
        assert!(blocks.iter().all(|b| matches!(b, Block::Line(_))), "{blocks:#?}");
    }
}
