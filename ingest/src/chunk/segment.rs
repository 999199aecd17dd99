//! Step 1 of chunking: cut a page into small counted segments, each knowing how strong the
//! boundary before it is.
//!
//! One pass finds every place a new piece may start: each word start, classified by the
//! whitespace before it (blank line → paragraph, after `.`/`!`/`?`/`…` (and closing quotes or
//! brackets) → sentence, a newline → line, else space), plus heading starts and the points after
//! CJK full stops (`。！？`, which take no space); none inside a Markdown table row (a line that
//! starts and ends with `|`), so rows stay whole. Sentences (pieces between boundaries of at least
//! sentence strength) are counted; one above the granularity is split at its strongest inner
//! boundaries (lines, then words) and those pieces counted; a single word still above the maximum
//! is cut into character windows, never inside a `char`. So each character is counted at most
//! three times, and usually once.
//!
//! Segments cover the text exactly, in order, without gaps: `segs[i].end == segs[i + 1].start`.

use super::TokenCounter;

/// How good a place to cut the boundary before a segment is. Ordered weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Strength {
    /// Inside a word (a hard cut of an over-long word).
    Hard,
    /// Between words.
    Space,
    /// At a line break.
    Line,
    /// At a sentence end.
    Sentence,
    /// After a blank line.
    Paragraph,
    /// At a heading, or the page's start.
    Heading,
}

/// A counted piece of page text (byte offsets; trailing whitespace included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Segment {
    pub start: usize,
    pub end: usize,
    pub tokens: usize,
    pub strength: Strength,
}

/// Segments of `text` for chunks of at most `max` tokens. `headings` are byte offsets of heading
/// starts, sorted.
pub(super) fn segments(
    text: &str,
    headings: &[usize],
    max: usize,
    tokenizer: &dyn TokenCounter,
) -> Vec<Segment> {
    if text.is_empty() {
        return Vec::new();
    }
    let bounds = boundaries(text, headings);
    let cutter = Cutter {
        text,
        bounds: &bounds,
        max,
        granularity: (max / 8).max(1),
        tokenizer,
    };
    let mut out = Vec::new();
    // Sentence-level groups first, without counting the whole page.
    let mut i = 0;
    while i < bounds.len() {
        let mut j = i + 1;
        while j < bounds.len() && bounds[j].1 < Strength::Sentence {
            j += 1;
        }
        cutter.piece(i, j, &mut out);
        i = j;
    }
    out
}

/// Byte ranges of Markdown table rows: lines that start and end with `|` (spaces aside).
fn table_rows(text: &str) -> Vec<(usize, usize)> {
    let mut rows = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim();
        if body.len() >= 2 && body.starts_with('|') && body.ends_with('|') {
            let start = at + (line.len() - line.trim_start().len());
            rows.push((start, start + body.len()));
        }
        at += line.len();
    }
    rows
}

/// Every place a piece may start, with its strength; the first is `(0, Heading)`. Inside a
/// Markdown table row there is none but the row's start, so no chunk splits a row (unless one row
/// alone is over the maximum, and is cut like an over-long word).
fn boundaries(text: &str, headings: &[usize]) -> Vec<(usize, Strength)> {
    let mut out = vec![(0usize, Strength::Heading)];
    let rows = table_rows(text);
    let mut rows = rows.iter().copied().peekable();
    let mut headings = headings.iter().copied().peekable();
    let mut seen_text = false;
    let mut in_space = false;
    let mut newlines = 0u32;
    let mut sentence_end = false;
    let mut after_cjk_stop = false;
    for (i, c) in text.char_indices() {
        while headings.next_if(|&h| h < i).is_some() {}
        let is_heading = headings.next_if_eq(&i).is_some();
        if c.is_whitespace() {
            if !in_space {
                in_space = true;
                newlines = 0;
            }
            if c == '\n' {
                newlines += 1;
            }
            after_cjk_stop = false;
            continue;
        }
        if i > 0 && seen_text {
            let strength = if is_heading {
                Some(Strength::Heading)
            } else if in_space {
                Some(if newlines >= 2 {
                    Strength::Paragraph
                } else if sentence_end {
                    Strength::Sentence
                } else if newlines == 1 {
                    Strength::Line
                } else {
                    Strength::Space
                })
            } else if after_cjk_stop {
                Some(Strength::Sentence)
            } else {
                None
            };
            while rows.next_if(|&(_, end)| end <= i).is_some() {}
            let inside_row = rows.peek().is_some_and(|&(start, _)| start < i);
            if let Some(s) = strength.filter(|_| !inside_row) {
                out.push((i, s));
            }
        }
        seen_text = true;
        in_space = false;
        after_cjk_stop = matches!(c, '。' | '！' | '？');
        sentence_end = match c {
            '.' | '!' | '?' | '…' | '。' | '！' | '？' => true,
            '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»' | '*' | '_' => sentence_end,
            _ => false,
        };
    }
    out
}

struct Cutter<'a> {
    text: &'a str,
    bounds: &'a [(usize, Strength)],
    max: usize,
    granularity: usize,
    tokenizer: &'a dyn TokenCounter,
}

impl Cutter<'_> {
    fn pos(&self, k: usize) -> usize {
        self.bounds.get(k).map_or(self.text.len(), |b| b.0)
    }

    /// Segments for boundaries `i..j` (the text from `bounds[i]` to `bounds[j]`).
    fn piece(&self, i: usize, j: usize, out: &mut Vec<Segment>) {
        let (start, end) = (self.pos(i), self.pos(j));
        let tokens = self.tokenizer.count(&self.text[start..end]);
        let strength = self.bounds[i].1;
        if tokens <= self.granularity || (j - i == 1 && tokens <= self.max) {
            out.push(Segment {
                start,
                end,
                tokens,
                strength,
            });
            return;
        }
        if j - i == 1 {
            self.hard_cut(start, end, strength, out);
            return;
        }
        // Split at the strongest inner boundaries (all inner ones are weaker than bounds[i]).
        let level = self.bounds[i + 1..j]
            .iter()
            .map(|b| b.1)
            .max()
            .unwrap_or(Strength::Hard);
        let mut k = i;
        for m in i + 1..=j {
            if m == j || self.bounds[m].1 >= level {
                self.piece(k, m, out);
                k = m;
            }
        }
    }

    /// Character windows of one over-long word, each at most the granularity when a window of one
    /// character allows it. Only the word itself is cut: whitespace around it stays attached to the
    /// first and last window, so no window is blank.
    fn hard_cut(&self, start: usize, end: usize, strength: Strength, out: &mut Vec<Segment>) {
        let slice = &self.text[start..end];
        let word_start = end - slice.trim_start().len();
        let word_end = start + slice.trim_end().len();
        if word_start >= word_end {
            let tokens = self.tokenizer.count(slice);
            out.push(Segment {
                start,
                end,
                tokens,
                strength,
            });
            return;
        }
        let mut pos = word_start;
        let mut window = self.granularity;
        let mut strength = strength;
        while pos < word_end {
            let (mut piece_end, mut tokens);
            loop {
                piece_end = advance_chars(self.text, pos, word_end, window);
                if piece_end == word_end {
                    piece_end = end;
                }
                let piece_start = if pos == word_start { start } else { pos };
                tokens = self.tokenizer.count(&self.text[piece_start..piece_end]);
                if tokens <= self.granularity || window == 1 {
                    break;
                }
                window = (window / 2).max(1);
            }
            out.push(Segment {
                start: if pos == word_start { start } else { pos },
                end: piece_end,
                tokens,
                strength,
            });
            strength = Strength::Hard;
            pos = piece_end;
            if tokens * 2 < self.granularity {
                window = window.saturating_mul(2);
            }
        }
    }
}

/// The byte offset `n` chars after `pos`, at most `end`.
fn advance_chars(text: &str, pos: usize, end: usize, n: usize) -> usize {
    text[pos..end]
        .char_indices()
        .nth(n)
        .map_or(end, |(off, _)| pos + off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{CharCounter, WhitespaceCounter};

    fn strengths(text: &str) -> Vec<(&str, Strength)> {
        let b = boundaries(text, &[]);
        (0..b.len())
            .map(|k| {
                let end = b.get(k + 1).map_or(text.len(), |x| x.0);
                (&text[b[k].0..end], b[k].1)
            })
            .collect()
    }

    #[test]
    fn boundary_kinds() {
        use Strength::*;
        let got = strengths("One two. \"Three\" four!\" Five\nsix\n\n  Seven");
        assert_eq!(
            got,
            [
                ("One ", Heading),
                ("two. ", Space),
                ("\"Three\" ", Sentence),
                ("four!\" ", Space),
                ("Five\n", Sentence),
                ("six\n\n  ", Line),
                ("Seven", Paragraph),
            ]
        );
    }

    #[test]
    fn cjk_full_stop_is_a_sentence_boundary() {
        let got = strengths("今日は晴れ。明日は雨？");
        assert_eq!(got[1], ("明日は雨？", Strength::Sentence));
    }

    #[test]
    fn leading_whitespace_belongs_to_first_segment() {
        let segs = segments("  \n hello world", &[], 100, &WhitespaceCounter);
        assert_eq!(segs.len(), 1);
        assert_eq!((segs[0].start, segs[0].tokens), (0, 2));
    }

    #[test]
    fn long_sentence_splits_to_words_and_covers_text() {
        let text = "word ".repeat(50) + "end.";
        let segs = segments(&text, &[], 16, &WhitespaceCounter);
        assert!(segs.len() > 1);
        assert!(segs.iter().all(|s| s.tokens <= 2));
        assert_eq!(segs[0].start, 0);
        assert_eq!(segs.last().map(|s| s.end), Some(text.len()));
        assert!(segs.windows(2).all(|w| w[0].end == w[1].start));
    }

    #[test]
    fn hard_cut_respects_char_boundaries() {
        let text = "é".repeat(1000);
        let segs = segments(&text, &[], 80, &CharCounter { chars_per_token: 1 });
        assert!(segs.len() >= 100);
        for s in &segs {
            assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
            assert!(s.tokens <= 10);
        }
        assert_eq!(segs.last().map(|s| s.end), Some(text.len()));
    }

    #[test]
    fn table_rows_have_no_inner_boundaries() {
        let text = "Intro text.\n\n| Loaf | Price |\n| --- | --- |\n| Rye bread. | 5.10 |\n\nAfter.";
        let starts: Vec<&str> = strengths(text).iter().map(|(piece, _)| *piece).collect();
        assert_eq!(
            starts,
            ["Intro ", "text.\n\n", "| Loaf | Price |\n", "| --- | --- |\n", "| Rye bread. | 5.10 |\n\n", "After."]
        );
    }

    #[test]
    fn headings_are_strongest() {
        let text = "intro text\n# Head\nbody";
        let b = boundaries(text, &[11]);
        assert!(b.contains(&(11, Strength::Heading)));
    }
}
