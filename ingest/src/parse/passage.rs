//! Finding a cited passage among a rendered page's characters, for the page preview's highlight.
//!
//! The passage is a chunk's text, cut from what a parser (pdf-extract, PDFium or OCR) made of the
//! page; the characters are PDFium's, in its order. The two differ in whitespace, line-end
//! hyphenation, punctuation and ligatures, so both sides are compared as *keys*: letters and
//! digits only, lower-cased, ligatures (U+FB00–FB06) spelled out. Every key character remembers
//! the page character it came from, so a match maps back to a range of PDFium character indices.
//!
//! Search order ([`find_passage`]): the whole passage; otherwise a distinctive prefix (its first
//! 12, then 8, then 6 words) and, from there, the passage's last 12/8/6 words within a window of
//! the passage's length, so the highlight spans the passage even where its middle differs (a
//! hyphenated word, a figure caption in between). A prefix without its end is still a match,
//! covering the prefix only. A needle shorter than [`MIN_KEY_CHARS`] key characters is not
//! searched for unless it is the whole passage: "of the" would match anywhere.
//!
//! Pure Rust, no PDFium: tested here on plain strings.

use std::ops::Range;

/// Words in the prefix and suffix tried, longest first.
const WORD_COUNTS: [usize; 3] = [12, 8, 6];

/// Shortest prefix or suffix (in key characters) worth searching for.
pub const MIN_KEY_CHARS: usize = 12;

/// Where a passage was found on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassageMatch {
    /// Page character indices (PDFium's), end exclusive.
    pub chars: Range<usize>,
    /// True when the whole passage matched; false when a prefix (and maybe the end) did.
    pub whole: bool,
}

/// Letters and digits of `c`, lower-cased, ligatures spelled out; nothing for anything else.
fn fold(c: char, out: &mut impl FnMut(char)) {
    if let Some(spelled) = super::pdf::ligature(c) {
        spelled.chars().for_each(out);
    } else if c.is_alphanumeric() {
        c.to_lowercase().for_each(out);
    }
}

/// The key of `text`.
fn key(text: &str) -> Vec<char> {
    let mut out = Vec::new();
    text.chars().for_each(|c| fold(c, &mut |k| out.push(k)));
    out
}

/// A page as keys, each with the page character index it came from.
struct PageKey {
    key: Vec<char>,
    origin: Vec<usize>,
}

impl PageKey {
    fn new(chars: &[char]) -> Self {
        let (mut key, mut origin) = (Vec::new(), Vec::new());
        for (i, &c) in chars.iter().enumerate() {
            fold(c, &mut |k| {
                key.push(k);
                origin.push(i);
            });
        }
        PageKey { key, origin }
    }

    /// First occurrence of `needle` in `key[from..to]`, as key positions.
    fn find(&self, needle: &[char], from: usize, to: usize) -> Option<Range<usize>> {
        let hay = self.key.get(from..to.min(self.key.len()))?;
        if needle.is_empty() || needle.len() > hay.len() {
            return None;
        }
        hay.windows(needle.len()).position(|w| w == needle).map(|at| from + at..from + at + needle.len())
    }

    /// Key positions back to page character indices.
    fn to_chars(&self, keys: Range<usize>) -> Range<usize> {
        let start = self.origin[keys.start];
        let end = self.origin[keys.end - 1] + 1;
        start..end
    }
}

/// Where `passage` is among `page` (PDFium's characters of one page, by index), or `None`.
pub fn find_passage(page: &[char], passage: &str) -> Option<PassageMatch> {
    let whole = key(passage);
    if whole.is_empty() {
        return None;
    }
    let page_key = PageKey::new(page);
    if let Some(found) = page_key.find(&whole, 0, page_key.key.len()) {
        return Some(PassageMatch { chars: page_key.to_chars(found), whole: true });
    }
    let words: Vec<&str> = passage.split_whitespace().collect();
    for &n in WORD_COUNTS.iter().filter(|&&n| n < words.len()) {
        let prefix = key(&words[..n].join(" "));
        if prefix.len() < MIN_KEY_CHARS {
            continue;
        }
        let Some(start) = page_key.find(&prefix, 0, page_key.key.len()) else {
            continue;
        };
        // The end: the last words, after the prefix, no further than the passage could reach.
        let window_end = start.start + whole.len() * 2 + 64;
        let end = WORD_COUNTS
            .iter()
            .filter(|&&m| m < words.len())
            .map(|&m| key(&words[words.len() - m..].join(" ")))
            .filter(|suffix| suffix.len() >= MIN_KEY_CHARS)
            .find_map(|suffix| page_key.find(&suffix, start.end, window_end))
            .map_or(start.end, |found| found.end);
        return Some(PassageMatch { chars: page_key.to_chars(start.start..end), whole: false });
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    fn slice(page: &str, m: &PassageMatch) -> String {
        page.chars().skip(m.chars.start).take(m.chars.len()).collect()
    }

    #[test]
    fn the_whole_passage_despite_whitespace_case_and_punctuation() {
        let page = "Intro line.\r\nThe  quick brown\r\nfox — jumps over; the lazy dog.\r\nOutro.";
        let m = find_passage(&chars(page), "the quick brown fox jumps over the lazy dog").unwrap();
        assert!(m.whole);
        assert_eq!(slice(page, &m), "The  quick brown\r\nfox — jumps over; the lazy dog");
    }

    #[test]
    fn hyphenation_and_ligatures_do_not_break_a_match() {
        let page = "A page about ﬁnding ef-\nﬁcient ligatures.";
        let m = find_passage(&chars(page), "finding efficient ligatures").unwrap();
        assert!(m.whole);
        assert_eq!(slice(page, &m), "ﬁnding ef-\nﬁcient ligatures");
    }

    #[test]
    fn a_prefix_and_the_end_span_a_passage_whose_middle_differs() {
        let page = "zero one two three four five six seven [Figure 3] eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty. After.";
        let passage = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty";
        let m = find_passage(&chars(page), passage).unwrap();
        assert!(!m.whole);
        assert_eq!(slice(page, &m), &page[..page.find(". After").unwrap()]);
    }

    #[test]
    fn a_prefix_alone_when_the_end_is_not_there() {
        let page = "alpha beta gamma delta epsilon zeta eta theta and then something else entirely";
        let passage = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho";
        let m = find_passage(&chars(page), passage).unwrap();
        assert!(!m.whole);
        assert_eq!(slice(page, &m), "alpha beta gamma delta epsilon zeta eta theta", "the longest prefix on the page");
    }

    #[test]
    fn absent_and_degenerate_passages_are_not_found() {
        let page = chars("Bread needs flour, water, salt and time.");
        assert_eq!(find_passage(&page, "the launch code is ZEBRA-4817"), None);
        assert_eq!(find_passage(&page, ""), None);
        assert_eq!(find_passage(&page, " — ; "), None);
        assert_eq!(find_passage(&[], "flour"), None);
        // A short whole passage is searched for; a short prefix of a long one is not.
        assert!(find_passage(&page, "salt").is_some_and(|m| m.whole));
        assert_eq!(find_passage(&page, "and time plus many words that are not on this page at all here"), None);
    }
}
