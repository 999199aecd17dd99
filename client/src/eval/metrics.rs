//! The evaluation metrics, as pure functions: retrieval quality against gold pages (hit rate@k,
//! MRR, nDCG@k, context recall) and the aggregation of per-question scores into means.

/// A retrieved (or gold) location: a file name and, where known, a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Option<String>,
    pub page: Option<u32>,
}

/// Whether a retrieved `(file, page)` matches a gold location (a gold field left out matches anything).
pub fn matches(gold: &Location, file: &str, page: Option<u32>) -> bool {
    gold.file.as_deref().is_none_or(|f| f == file) && gold.page.is_none_or(|p| Some(p) == page)
}

/// Retrieval scores of one question.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrievalScores {
    pub hit: f64,
    pub reciprocal_rank: f64,
    pub ndcg: f64,
    pub context_recall: f64,
}

/// Score a ranked list of retrieved `(file, page)` against the gold locations.
pub fn score_retrieval(retrieved: &[(String, Option<u32>)], gold: &[Location], k: usize) -> RetrievalScores {
    let top = &retrieved[..retrieved.len().min(k)];
    let relevant: Vec<bool> = top.iter().map(|(f, p)| gold.iter().any(|g| matches(g, f, *p))).collect();
    let first = relevant.iter().position(|&r| r);
    let dcg: f64 = relevant.iter().enumerate().filter(|(_, &r)| r).map(|(i, _)| 1.0 / ((i + 2) as f64).log2()).sum();
    let ideal: f64 = (0..gold.len().min(k).max(1)).map(|i| 1.0 / ((i + 2) as f64).log2()).sum();
    let found = gold.iter().filter(|g| top.iter().any(|(f, p)| matches(g, f, *p))).count();
    RetrievalScores {
        hit: if first.is_some() { 1.0 } else { 0.0 },
        reciprocal_rank: first.map_or(0.0, |i| 1.0 / (i + 1) as f64),
        ndcg: (dcg / ideal).min(1.0),
        context_recall: if gold.is_empty() { 0.0 } else { found as f64 / gold.len() as f64 },
    }
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// The answer's claims: its sentences with some substance.
pub fn claims(answer: &str) -> Vec<String> {
    answer
        .split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| s.split_whitespace().count() >= 3)
        .map(str::to_owned)
        .collect()
}

/// A running mean.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mean {
    pub sum: f64,
    pub count: usize,
}

impl Mean {
    pub fn add(&mut self, x: f64) {
        self.sum += x;
        self.count += 1;
    }

    pub fn value(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, page: u32) -> (String, Option<u32>) {
        (file.into(), Some(page))
    }

    #[test]
    fn retrieval_scores_follow_their_definitions() {
        let gold = [Location { file: Some("a.pdf".into()), page: Some(2) }];
        let first = score_retrieval(&[at("a.pdf", 2), at("b.pdf", 1)], &gold, 5);
        assert_eq!(first, RetrievalScores { hit: 1.0, reciprocal_rank: 1.0, ndcg: 1.0, context_recall: 1.0 });
        let second = score_retrieval(&[at("b.pdf", 1), at("a.pdf", 2)], &gold, 5);
        assert_eq!(second.reciprocal_rank, 0.5);
        assert!((second.ndcg - 1.0 / 3f64.log2()).abs() < 1e-9);
        let beyond_k = score_retrieval(&[at("b.pdf", 1), at("a.pdf", 2)], &gold, 1);
        assert_eq!(beyond_k, RetrievalScores { hit: 0.0, reciprocal_rank: 0.0, ndcg: 0.0, context_recall: 0.0 });
        let nothing = score_retrieval(&[], &gold, 5);
        assert_eq!(nothing.hit, 0.0);
        let any_page = [Location { file: Some("a.pdf".into()), page: None }];
        assert_eq!(score_retrieval(&[at("a.pdf", 9)], &any_page, 5).hit, 1.0);
        let two = [Location { file: None, page: Some(1) }, Location { file: None, page: Some(3) }];
        assert_eq!(score_retrieval(&[at("x", 1)], &two, 5).context_recall, 0.5);
    }

    #[test]
    fn cosine_claims_and_means() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-9);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(claims("Yes. The code is ZEBRA-4817. It is on page two!"), ["The code is ZEBRA-4817.", "It is on page two!"]);
        let mut m = Mean::default();
        assert_eq!(m.value(), None);
        m.add(1.0);
        m.add(0.0);
        assert_eq!(m.value(), Some(0.5));
    }
}
