//! Token-based chunking of parsed pages, like OpenAI's / Llama Stack's `static` strategy
//! (`max_chunk_size_tokens` 800, `chunk_overlap_tokens` 400), with structure-aware boundaries.
//!
//! Invariants (checked by the property tests):
//! - a chunk never spans pages, and its `text` is exactly `page.text[char_start..char_end]` in
//!   `char`s, trimmed of surrounding whitespace;
//! - every non-whitespace character of every page is in at least one chunk;
//! - `token_count` is the counter's count of the chunk's text and is ≤ `max_chunk_size_tokens`
//!   (unless one character alone counts more);
//! - consecutive chunks of a page overlap by at most `chunk_overlap_tokens` (by segment counts).
//!
//! How (see `segment.rs` for the first step):
//! 1. The page is cut into small segments (sentences, or lines / words / hard cuts of long
//!    sentences), each counted once. Each segment knows how strong the boundary before it is:
//!    heading > blank-line paragraph > sentence end > line break > space > hard cut.
//! 2. A chunk grows over segments while the sum of their counts fits. It ends at the strongest
//!    boundary among the ends that keep it at least `min_fill` full (latest on ties), so chunks
//!    break at headings and paragraphs when they can and are still mostly full.
//! 3. The next chunk starts far enough back to repeat up to `chunk_overlap_tokens`, preferring a
//!    sentence start.
//! 4. The final text is counted once more; if a tokenizer is not additive over segments and the
//!    chunk went over, it gives back segments until it fits.
//!
//! The tokenizer therefore sees each character about three times (segments, then chunks with
//! their overlap), never O(n²).

mod segment;

use crate::parse::{Page, ParsedDocument};
use segment::{Segment, Strength};
use serde::{Deserialize, Serialize};

/// Counts tokens of a piece of text. The daemon implements it with the embedding model's
/// tokenizer, without special tokens (`[CLS]`/`[SEP]`): leave room for those in the maximum.
pub trait TokenCounter {
    /// Number of tokens in `text`.
    fn count(&self, text: &str) -> usize;
}

impl<F: Fn(&str) -> usize> TokenCounter for F {
    fn count(&self, text: &str) -> usize {
        self(text)
    }
}

/// Counts whitespace-separated words: a tokenizer stand-in for tests and estimates.
#[derive(Debug, Clone, Copy, Default)]
pub struct WhitespaceCounter;

impl TokenCounter for WhitespaceCounter {
    fn count(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}

/// Counts `ceil(chars / chars_per_token)`: the usual rough estimate (4 for English with BPE).
/// Summing it over pieces never undercounts the whole.
#[derive(Debug, Clone, Copy)]
pub struct CharCounter {
    /// Characters per token, at least 1.
    pub chars_per_token: usize,
}

impl TokenCounter for CharCounter {
    fn count(&self, text: &str) -> usize {
        text.chars().count().div_ceil(self.chars_per_token.max(1))
    }
}

/// The `static` chunking strategy's settings, with OpenAI's names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkingOptions {
    /// Largest chunk, in tokens (OpenAI: 100..=4096, default 800). The daemon also caps it at the
    /// embedding model's context.
    pub max_chunk_size_tokens: usize,
    /// Tokens repeated between consecutive chunks (default 400, at most half the maximum).
    pub chunk_overlap_tokens: usize,
}

impl Default for ChunkingOptions {
    fn default() -> Self {
        ChunkingOptions {
            max_chunk_size_tokens: 800,
            chunk_overlap_tokens: 400,
        }
    }
}

/// Invalid chunking settings; the message names the field, for a 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkingError {
    /// `max_chunk_size_tokens` outside 100..=4096.
    #[error("max_chunk_size_tokens must be between 100 and 4096, got {0}")]
    MaxChunkSize(usize),
    /// `chunk_overlap_tokens` above half of `max_chunk_size_tokens`.
    #[error("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens ({max_half}), got {overlap}")]
    Overlap {
        /// The overlap asked for.
        overlap: usize,
        /// `max_chunk_size_tokens / 2`.
        max_half: usize,
    },
}

impl ChunkingOptions {
    /// Smallest and largest `max_chunk_size_tokens` accepted from a client (OpenAI's range).
    pub const MAX_RANGE: std::ops::RangeInclusive<usize> = 100..=4096;

    /// Checked settings.
    pub fn new(
        max_chunk_size_tokens: usize,
        chunk_overlap_tokens: usize,
    ) -> Result<Self, ChunkingError> {
        let opts = ChunkingOptions {
            max_chunk_size_tokens,
            chunk_overlap_tokens,
        };
        opts.validate()?;
        Ok(opts)
    }

    /// Checks a client's settings: the maximum in 100..=4096, the overlap at most half of it.
    pub fn validate(&self) -> Result<(), ChunkingError> {
        if !Self::MAX_RANGE.contains(&self.max_chunk_size_tokens) {
            return Err(ChunkingError::MaxChunkSize(self.max_chunk_size_tokens));
        }
        let max_half = self.max_chunk_size_tokens / 2;
        if self.chunk_overlap_tokens > max_half {
            return Err(ChunkingError::Overlap {
                overlap: self.chunk_overlap_tokens,
                max_half,
            });
        }
        Ok(())
    }

    /// The same settings with the maximum capped at `limit` (an embedding model's context) and
    /// the overlap kept at most half of the result.
    pub fn capped(&self, limit: usize) -> ChunkingOptions {
        let max = self.max_chunk_size_tokens.min(limit).max(1);
        ChunkingOptions {
            max_chunk_size_tokens: max,
            chunk_overlap_tokens: self.chunk_overlap_tokens.min(max / 2),
        }
    }
}

/// A piece of one page, ready to embed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// `page.text[char_start..char_end]` (by `char`s).
    pub text: String,
    /// The page's number (1-based).
    pub page: u32,
    /// First `char` of the chunk in the page text.
    pub char_start: usize,
    /// One past the last `char`.
    pub char_end: usize,
    /// The counter's count of `text`.
    pub token_count: usize,
    /// The nearest heading at or before the chunk's start on its page, if any.
    pub heading: Option<String>,
    /// The headings the chunk sits under, outermost first (`["Guide", "Install"]`), carried over
    /// from earlier pages: a level-2 heading replaces the previous level 2 and anything deeper.
    /// Empty for text without headings. Filled by [`chunk_document`].
    #[serde(default)]
    pub section_path: Vec<String>,
    /// The page's name where it has one (slide title, sheet name, chapter heading).
    #[serde(default)]
    pub label: Option<String>,
    /// The page's text came from OCR.
    #[serde(default)]
    pub ocr: bool,
}

/// Cuts every page of `doc` into chunks, in page order. `opts` is used as given, not validated
/// (call [`ChunkingOptions::validate`] on client input, [`ChunkingOptions::capped`] for the
/// model's context); an overlap above half the maximum is treated as half, so chunks always move
/// forward.
pub fn chunk_document(
    doc: &ParsedDocument,
    opts: &ChunkingOptions,
    tokenizer: &dyn TokenCounter,
) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    // (level, heading) of the headings open at the end of the pages so far.
    let mut open: Vec<(u8, String)> = Vec::new();
    for page in &doc.pages {
        let first = chunks.len();
        chunk_page(page, opts, tokenizer, &mut chunks);
        let mut sections: Vec<&crate::parse::Section> = page.sections.iter().collect();
        sections.sort_by_key(|s| s.char_start);
        for chunk in &mut chunks[first..] {
            let mut path = open.clone();
            for s in sections.iter().take_while(|s| s.char_start <= chunk.char_start) {
                enter(&mut path, s.level, &s.heading);
            }
            chunk.section_path = path.into_iter().map(|(_, h)| h).collect();
        }
        for s in sections {
            enter(&mut open, s.level, &s.heading);
        }
    }
    chunks
}

/// A heading of `level` closes the open ones at its level or deeper, then opens.
fn enter(open: &mut Vec<(u8, String)>, level: u8, heading: &str) {
    while open.last().is_some_and(|(l, _)| *l >= level) {
        open.pop();
    }
    open.push((level, heading.to_owned()));
}

/// Cuts one page into chunks, appending to `out`.
pub fn chunk_page(
    page: &Page,
    opts: &ChunkingOptions,
    tokenizer: &dyn TokenCounter,
    out: &mut Vec<Chunk>,
) {
    let max = opts.max_chunk_size_tokens.max(1);
    let overlap = opts.chunk_overlap_tokens.min(max / 2);
    let text = page.text.as_str();
    let headings = heading_byte_starts(page);
    let segs = segment::segments(text, &headings, max, tokenizer);
    if segs.is_empty() {
        return;
    }
    // prefix[i] = tokens of segments before i.
    let mut prefix = Vec::with_capacity(segs.len() + 1);
    prefix.push(0usize);
    for s in &segs {
        prefix.push(prefix[prefix.len() - 1] + s.tokens);
    }
    let n = segs.len();
    let min_fill = (max / 2).max(overlap + max / 4).min(max);
    let mut offsets = CharOffsets::new(text);
    let mut a = 0usize;
    // The previous chunk's end: every chunk ends later than the one before it.
    let mut prev_end = 0usize;
    loop {
        // Largest end that fits (at least one segment, and past the previous chunk).
        let mut b_max = (a + 1).max(prev_end + 1);
        while b_max < n && prefix[b_max + 1] - prefix[a] <= max {
            b_max += 1;
        }
        let mut b = if b_max == n {
            n
        } else {
            best_end(&segs, &prefix, a, prev_end.max(a) + 1, b_max, min_fill)
        };
        // Final check with the real count of the trimmed text; a counter that is not additive
        // over segments may need segments given back (the end first, then the overlap).
        let (mut start, mut end, mut tokens) = trimmed(text, &segs, a, b, tokenizer);
        while tokens > max {
            if b > (a + 1).max(prev_end + 1) {
                b -= 1;
            } else if a + 1 < b {
                a += 1;
            } else {
                break; // one segment that alone counts more than max (a single huge char)
            }
            (start, end, tokens) = trimmed(text, &segs, a, b, tokenizer);
        }
        if start < end {
            let char_start = offsets.chars_at(start);
            let char_end = char_start + text[start..end].chars().count();
            out.push(Chunk {
                text: text[start..end].to_owned(),
                page: page.number,
                char_start,
                char_end,
                token_count: tokens,
                heading: heading_at(page, char_start),
                section_path: Vec::new(),
                label: page.label.clone(),
                ocr: page.ocr,
            });
        }
        if b >= n {
            break;
        }
        a = next_start(&segs, &prefix, a, b, overlap, max);
        prev_end = b;
    }
}

/// The end (exclusive segment index) in `min_end..=b_max` with the strongest boundary among those
/// that keep the chunk at least `min_fill` tokens; the latest on ties; `b_max` if none qualifies.
fn best_end(
    segs: &[Segment],
    prefix: &[usize],
    a: usize,
    min_end: usize,
    b_max: usize,
    min_fill: usize,
) -> usize {
    let mut best = b_max;
    let mut best_strength = segs[b_max].strength;
    for e in (min_end..b_max).rev() {
        if prefix[e] - prefix[a] < min_fill {
            break;
        }
        if segs[e].strength > best_strength {
            best = e;
            best_strength = segs[e].strength;
        }
    }
    best
}

/// Where the chunk after `a..b` starts: as far back from `b` as `overlap` tokens allow while the
/// next segment still fits after the overlap (never at or before `a`), moved forward to a sentence
/// start when one keeps at least half the overlap.
fn next_start(
    segs: &[Segment],
    prefix: &[usize],
    a: usize,
    b: usize,
    overlap: usize,
    max: usize,
) -> usize {
    let next = segs.get(b).map_or(0, |s| s.tokens);
    let mut earliest = b;
    while earliest - 1 > a
        && prefix[b] - prefix[earliest - 1] <= overlap
        && prefix[b] - prefix[earliest - 1] + next <= max
    {
        earliest -= 1;
    }
    if earliest == b {
        return b;
    }
    (earliest..b)
        .find(|&s| segs[s].strength >= Strength::Sentence && prefix[b] - prefix[s] >= overlap / 2)
        .unwrap_or(earliest)
}

/// Byte range of segments `a..b` without surrounding whitespace, and its token count.
fn trimmed(
    text: &str,
    segs: &[Segment],
    a: usize,
    b: usize,
    tokenizer: &dyn TokenCounter,
) -> (usize, usize, usize) {
    let (start, end) = (segs[a].start, segs[b - 1].end);
    let slice = &text[start..end];
    let lead = slice.len() - slice.trim_start().len();
    let trail = slice.len() - slice.trim_end().len();
    if lead == slice.len() {
        return (start, start, 0);
    }
    let (s, e) = (start + lead, end - trail);
    (s, e, tokenizer.count(&text[s..e]))
}

fn heading_byte_starts(page: &Page) -> Vec<usize> {
    let mut starts: Vec<usize> = Vec::with_capacity(page.sections.len());
    let mut chars = page.text.char_indices().enumerate().peekable();
    let mut wanted: Vec<usize> = page.sections.iter().map(|s| s.char_start).collect();
    wanted.sort_unstable();
    for w in wanted {
        while let Some(&(ci, (bi, _))) = chars.peek() {
            if ci == w {
                starts.push(bi);
                break;
            }
            if ci > w {
                break;
            }
            chars.next();
        }
    }
    starts
}

fn heading_at(page: &Page, char_start: usize) -> Option<String> {
    page.sections
        .iter()
        .filter(|s| s.char_start <= char_start)
        .max_by_key(|s| s.char_start)
        .map(|s| s.heading.clone())
}

/// Byte offset → char offset for non-decreasing queries, in O(total length).
struct CharOffsets<'a> {
    text: &'a str,
    byte: usize,
    chars: usize,
}

impl<'a> CharOffsets<'a> {
    fn new(text: &'a str) -> Self {
        CharOffsets {
            text,
            byte: 0,
            chars: 0,
        }
    }

    fn chars_at(&mut self, byte: usize) -> usize {
        if byte < self.byte {
            self.byte = 0;
            self.chars = 0;
        }
        self.chars += self.text[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars
    }
}

#[cfg(test)]
mod tests;
