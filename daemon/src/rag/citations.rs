//! Citations: which sources an answer rests on, as OpenAI `file_citation` annotations with the
//! page and character range hearth adds — and only those it rests on.
//!
//! Where the model wrote markers like `[2]`, each marker becomes a citation at its position.
//! Small models often write none; then the answer is attributed by word overlap: a source is cited
//! (at the end of the text) when it shares at least [`MIN_SHARED`] distinctive words with the
//! answer and those cover [`MIN_COVERAGE`] of the answer's distinctive words (or [`STRONG_SHARED`]
//! words, for a long answer). Distinctive words are words of four or more characters that are not
//! common English words.
//!
//! No source is cited for being ranked first: an answer that cites nothing and shares too little
//! with every source is *unsupported*, and [`annotate`] adds [`UNSUPPORTED_NOTE`] to its text,
//! so the model's words are still shown but not dressed up as sourced. An answer with no sources
//! at all (no `file_search`, or the fixed "nothing found" answer) gets neither note nor citation.

use std::collections::HashSet;

use serde_json::{json, Value};
use store::SearchHit;

/// Distinctive words a source must share with an answer that has at least this many.
pub const MIN_SHARED: usize = 3;

/// The share of the answer's distinctive words that a source must contain.
pub const MIN_COVERAGE: f64 = 0.25;

/// Shared distinctive words that cite a source whatever the answer's length.
pub const STRONG_SHARED: usize = 8;

/// Added to an answer that cites nothing and that no source supports.
pub const UNSUPPORTED_NOTE: &str = "\n\n(Note: none of the retrieved documents supports this answer, so it cites none.)";

/// Common words that say nothing about where an answer came from.
const COMMON: &[&str] = &[
    "about", "above", "after", "again", "also", "answer", "based", "because", "been", "before", "being", "between", "both",
    "cannot", "context", "could", "does", "doing", "document", "documents", "down", "during", "each", "every", "following",
    "from", "further", "have", "having", "here", "however", "information", "into", "just", "know", "like", "made", "make",
    "many", "more", "most", "much", "must", "only", "other", "over", "please", "provide", "provided", "question", "really",
    "same", "should", "some", "sorry", "source", "sources", "such", "sure", "than", "that", "their", "them", "then", "there",
    "these", "they", "thing", "things", "this", "those", "through", "under", "until", "upon", "very", "want", "well", "were",
    "what", "when", "where", "which", "while", "will", "with", "within", "without", "would", "your", "yours",
];

/// One citation: the source (index into the prompt's sources) and where in the answer it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Citation {
    /// Character index in the answer text.
    pub index: usize,
    /// Index into the sources (`[1]` is 0).
    pub source: usize,
}

/// Find the citations of `answer` over `sources` (empty when nothing supports it). A trailing
/// [`UNSUPPORTED_NOTE`] is not part of the answer.
pub fn cite(answer: &str, sources: &[SearchHit]) -> Vec<Citation> {
    let answer = answer.strip_suffix(UNSUPPORTED_NOTE).unwrap_or(answer);
    if sources.is_empty() || answer.trim().is_empty() {
        return Vec::new();
    }
    let marked = markers(answer, sources.len());
    if !marked.is_empty() {
        return marked;
    }
    let end = answer.chars().count();
    let answer_words = distinctive_words(answer);
    sources
        .iter()
        .enumerate()
        .filter(|(_, source)| supports(&distinctive_words(&source.text), &answer_words))
        .map(|(i, _)| Citation { index: end, source: i })
        .collect()
}

/// True when a source with `source_words` supports an answer with `answer_words`.
fn supports(source_words: &HashSet<String>, answer_words: &HashSet<String>) -> bool {
    if answer_words.is_empty() {
        return false;
    }
    let shared = source_words.intersection(answer_words).count();
    let coverage = shared as f64 / answer_words.len() as f64;
    shared >= MIN_SHARED.min(answer_words.len()) && (coverage >= MIN_COVERAGE || shared >= STRONG_SHARED)
}

/// The answer's final text and its `file_citation` annotations: `answer` as it is when it cites
/// a source (or has no sources), `answer` plus [`UNSUPPORTED_NOTE`] when it has sources and none
/// supports it. Idempotent: a text that already ends with the note is kept.
pub fn annotate(answer: &str, sources: &[SearchHit]) -> (String, Vec<Value>) {
    let citations = cite(answer, sources);
    let annotations = citations.iter().map(|c| annotation_json(c, &sources[c.source])).collect();
    let unsupported = citations.is_empty() && !sources.is_empty() && !answer.ends_with(UNSUPPORTED_NOTE);
    let text = if unsupported { format!("{answer}{UNSUPPORTED_NOTE}") } else { answer.to_owned() };
    (text, annotations)
}

/// `[n]` markers with 1 <= n <= sources, each once.
fn markers(answer: &str, sources: usize) -> Vec<Citation> {
    let chars: Vec<char> = answer.chars().collect();
    let mut out: Vec<Citation> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            let digits: String = chars[i + 1..].iter().take_while(|c| c.is_ascii_digit()).collect();
            let close = i + 1 + digits.len();
            if !digits.is_empty() && chars.get(close) == Some(&']') {
                if let Ok(n) = digits.parse::<usize>() {
                    if (1..=sources).contains(&n) && !out.iter().any(|c| c.source == n - 1) {
                        out.push(Citation { index: close + 1, source: n - 1 });
                    }
                }
                i = close;
            }
        }
        i += 1;
    }
    out
}

fn distinctive_words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_lowercase)
        .filter(|w| !COMMON.contains(&w.as_str()))
        .collect()
}

/// The `file_citation` annotation, with hearth's `page`, `char_start` and `char_end`.
pub fn annotation_json(citation: &Citation, source: &SearchHit) -> Value {
    json!({
        "type": "file_citation", "index": citation.index,
        "file_id": source.document_id, "filename": source.document_name,
        "page": source.page, "char_start": source.char_start, "char_end": source.char_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, text: &str) -> SearchHit {
        SearchHit {
            key: 0,
            document_id: format!("file-{name}"),
            document_name: name.into(),
            score: 1.0,
            text: text.into(),
            page: Some(4),
            char_start: 10,
            char_end: 20,
            attributes: Default::default(),
        }
    }

    fn cited(answer: &str, sources: &[SearchHit]) -> Vec<usize> {
        cite(answer, sources).iter().map(|c| c.source).collect()
    }

    #[test]
    fn markers_become_citations_at_their_position() {
        let sources = [source("a", "x"), source("b", "y")];
        let c = cite("Green [2], then blue [1][1] and [7].", &sources);
        assert_eq!(c, vec![Citation { index: 9, source: 1 }, Citation { index: 24, source: 0 }]);
    }

    #[test]
    fn without_markers_only_the_sources_the_answer_overlaps_are_cited() {
        let sources = [
            source("a", "Unrelated text about kayaks and paddles on the river."),
            source("b", "The cottage was painted green in 1921."),
            source("c", "The keeper painted the cottage green during summer 1921."),
        ];
        let c = cite("The keeper's cottage was painted green in 1921.", &sources);
        assert_eq!(c.iter().map(|c| c.source).collect::<Vec<_>>(), [1, 2], "the top-ranked kayak source is not borrowed");
        assert!(c.iter().all(|c| c.index == 47));
        assert!(cite("", &sources).is_empty());
        let a = annotation_json(&c[0], &sources[1]);
        assert_eq!((a["type"].as_str(), a["page"].as_u64(), a["filename"].as_str()), (Some("file_citation"), Some(4), Some("b")));
    }

    #[test]
    fn an_answer_that_uses_no_source_cites_none_and_says_so() {
        let sources = [source("a", "The lighthouse keeper winds the lamp clock every evening at nine.")];
        let answer = "Paris is the capital of France and home to the Eiffel Tower.";
        assert!(cited(answer, &sources).is_empty());
        let (text, annotations) = annotate(answer, &sources);
        assert!(annotations.is_empty());
        assert_eq!(text, format!("{answer}{UNSUPPORTED_NOTE}"));
        // Idempotent, and the note itself never makes a citation.
        assert_eq!(annotate(&text, &sources), (text.clone(), Vec::new()));
        // Sharing only common words ("information", "about", "this") is no support either.
        assert!(cited("I have no information about this, sorry.", &sources).is_empty());
        // No sources at all: the text is left alone.
        assert_eq!(annotate(answer, &[]), (answer.to_owned(), Vec::new()));
    }

    #[test]
    fn a_supported_answer_keeps_its_text_and_short_answers_need_all_their_words() {
        let sources = [source("a", "The lighthouse keeper winds the lamp clock every evening at nine and oils the brass lens.")];
        let (text, annotations) = annotate("The keeper winds the lamp clock at nine each evening.", &sources);
        assert_eq!(text, "The keeper winds the lamp clock at nine each evening.");
        assert_eq!(annotations.len(), 1);
        // A two-word answer is supported when both words are in the source, not by one of them.
        assert_eq!(cited("Lamp clock.", &sources), [0]);
        assert!(cited("Lamp wick.", &sources).is_empty());
        // A long answer that draws many words from a source cites it though its share is small.
        let ramble: String = (0..40).map(|i| format!("ramble{i} ")).collect();
        let long = format!("{ramble}The lighthouse keeper winds the lamp clock every evening at nine and oils the brass lens.");
        assert!(distinctive_words(&long).len() > 4 * STRONG_SHARED);
        assert_eq!(cited(&long, &sources), [0]);
    }
}
