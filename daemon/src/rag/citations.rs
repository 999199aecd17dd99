//! Citations: which sources an answer rests on, as OpenAI `file_citation` annotations with the
//! page and character range hearth adds.
//!
//! Where the model wrote markers like `[2]`, each marker becomes a citation at its position.
//! Small models often write none; then the answer is attributed by word overlap: every source
//! that shares enough distinctive words with the answer is cited at the end of the text, and the
//! best-ranked source always is, since the answer was generated from it.

use serde_json::{json, Value};
use store::SearchHit;

/// One citation: the source (index into the prompt's sources) and where in the answer it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Citation {
    /// Character index in the answer text.
    pub index: usize,
    /// Index into the sources (`[1]` is 0).
    pub source: usize,
}

/// Find the citations of `answer` over `sources`.
pub fn cite(answer: &str, sources: &[SearchHit]) -> Vec<Citation> {
    if sources.is_empty() || answer.trim().is_empty() {
        return Vec::new();
    }
    let marked = markers(answer, sources.len());
    if !marked.is_empty() {
        return marked;
    }
    let end = answer.chars().count();
    let answer_words = distinctive_words(answer);
    let mut cited = vec![Citation { index: end, source: 0 }];
    for (i, source) in sources.iter().enumerate().skip(1) {
        let shared = distinctive_words(&source.text).intersection(&answer_words).count();
        if shared >= 3 {
            cited.push(Citation { index: end, source: i });
        }
    }
    cited
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

fn distinctive_words(text: &str) -> std::collections::HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 4).map(str::to_lowercase).collect()
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

    #[test]
    fn markers_become_citations_at_their_position() {
        let sources = [source("a", "x"), source("b", "y")];
        let c = cite("Green [2], then blue [1][1] and [7].", &sources);
        assert_eq!(c, vec![Citation { index: 9, source: 1 }, Citation { index: 24, source: 0 }]);
    }

    #[test]
    fn without_markers_overlap_decides_and_the_best_source_is_always_cited() {
        let sources = [
            source("a", "The cottage was painted green in 1921."),
            source("b", "Unrelated text about kayaks."),
            source("c", "The keeper painted the cottage green during summer 1921."),
        ];
        let c = cite("The keeper's cottage was painted green in 1921.", &sources);
        let cited: Vec<usize> = c.iter().map(|c| c.source).collect();
        assert_eq!(cited, [0, 2]);
        assert!(c.iter().all(|c| c.index == 47));
        assert!(cite("", &sources).is_empty());
        let a = annotation_json(&c[0], &sources[0]);
        assert_eq!((a["type"].as_str(), a["page"].as_u64(), a["filename"].as_str()), (Some("file_citation"), Some(4), Some("a")));
    }
}
