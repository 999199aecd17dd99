//! `hearth eval --compare-modes`: the same questions searched in each retrieval mode of the
//! vector store search (`vector`, `keyword`, `hybrid`), scored against the gold pages with the
//! same metrics as a full run (hit rate@k, MRR, nDCG@k, context recall), one row per mode.
//!
//! Only retrieval is compared: no answer is generated, so a run over a few dozen questions takes
//! seconds. Each mode sees exactly the same request but for `search_mode`, and the best mode by
//! MRR (then hit rate) is named, so a change to the default can be argued from the numbers.

use serde_json::{json, Value};

use super::metrics::{score_retrieval, Mean};
use super::{Evaluated, Example};

/// The modes compared, in the order of the table.
pub const MODES: [&str; 3] = ["vector", "keyword", "hybrid"];

/// The means of one mode over the questions that have a gold location.
#[derive(Debug, Default)]
struct ModeScores {
    hit: Mean,
    mrr: Mean,
    ndcg: Mean,
    recall: Mean,
}

/// Search every question in every mode; the report with one summary per mode and the best mode.
pub(super) async fn compare(target: &Evaluated<'_>, store: &str, examples: &[Example], k: usize, progress: &dyn Fn()) -> Result<Value, String> {
    let mut scores: Vec<ModeScores> = MODES.iter().map(|_| ModeScores::default()).collect();
    let mut rows = Vec::new();
    for example in examples {
        let gold = example.gold();
        let mut per_mode = serde_json::Map::new();
        for (mode, s) in MODES.iter().zip(scores.iter_mut()) {
            let body = json!({"query": example.question, "max_num_results": k, "search_mode": mode});
            let search = target.post(&format!("/v1/vector_stores/{store}/search"), &body).await?;
            let retrieved = super::retrieved(&search);
            if gold.is_empty() {
                continue;
            }
            let r = score_retrieval(&retrieved, &gold, k);
            s.hit.add(r.hit);
            s.mrr.add(r.reciprocal_rank);
            s.ndcg.add(r.ndcg);
            s.recall.add(r.context_recall);
            per_mode.insert((*mode).to_owned(), json!({"reciprocal_rank": r.reciprocal_rank, "hit": r.hit,
                "retrieved": retrieved.iter().map(|(f, p)| json!({"file": f, "page": p})).collect::<Vec<_>>()}));
        }
        rows.push(json!({"question": example.question, "modes": per_mode}));
        progress();
    }
    let summary: serde_json::Map<String, Value> = MODES
        .iter()
        .zip(&scores)
        .map(|(mode, s)| {
            let m = |x: &Mean| json!({"mean": x.value(), "n": x.count});
            ((*mode).to_owned(), json!({format!("hit_rate@{k}"): m(&s.hit), "mrr": m(&s.mrr), format!("ndcg@{k}"): m(&s.ndcg), "context_recall": m(&s.recall)}))
        })
        .collect();
    let best = best_mode(&scores);
    Ok(json!({"vector_store": store, "k": k, "questions": examples.len(), "modes": summary, "best": best, "questions_detail": rows}))
}

/// The mode with the highest MRR, ties broken by hit rate, then by table order.
fn best_mode(scores: &[ModeScores]) -> Option<&'static str> {
    let key = |s: &ModeScores| (s.mrr.value().unwrap_or(0.0), s.hit.value().unwrap_or(0.0));
    let mut best: Option<(usize, (f64, f64))> = None;
    for (i, s) in scores.iter().enumerate() {
        if s.mrr.count == 0 {
            continue;
        }
        let k = key(s);
        if best.is_none_or(|(_, b)| k > b) {
            best = Some((i, k));
        }
    }
    best.map(|(i, _)| MODES[i])
}

/// The comparison as a table.
pub(super) fn print_table(report: &Value) {
    let k = report["k"].as_u64().unwrap_or(0);
    println!("hearth eval --compare-modes: vector store {}, {} questions, k = {k}", report["vector_store"].as_str().unwrap_or(""), report["questions"]);
    println!("{:<10} {:>12} {:>8} {:>8} {:>15} {:>5}", "mode", format!("hit_rate@{k}"), "mrr", format!("ndcg@{k}"), "context_recall", "n");
    for mode in MODES {
        let s = &report["modes"][mode];
        let f = |name: &str| s[name]["mean"].as_f64().map_or_else(|| "-".to_owned(), |m| format!("{m:.3}"));
        println!("{mode:<10} {:>12} {:>8} {:>8} {:>15} {:>5}", f(&format!("hit_rate@{k}")), f("mrr"), f(&format!("ndcg@{k}")), f("context_recall"), s["mrr"]["n"]);
    }
    if let Some(best) = report["best"].as_str() {
        println!("best by MRR: {best}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(mrr: &[f64], hit: &[f64]) -> ModeScores {
        let mut s = ModeScores::default();
        mrr.iter().for_each(|x| s.mrr.add(*x));
        hit.iter().for_each(|x| s.hit.add(*x));
        s
    }

    #[test]
    fn the_best_mode_is_the_highest_mrr_then_hit_rate() {
        let all = [scores(&[0.5, 0.5], &[1.0, 1.0]), scores(&[1.0, 0.0], &[1.0, 0.0]), scores(&[0.5, 0.5], &[1.0, 1.0])];
        assert_eq!(best_mode(&all), Some("vector"), "a tie on MRR and hit rate keeps the first");
        let all = [scores(&[0.2], &[1.0]), scores(&[0.9], &[1.0]), scores(&[0.5], &[1.0])];
        assert_eq!(best_mode(&all), Some("keyword"));
        let all = [scores(&[0.5, 0.0], &[1.0, 0.0]), scores(&[0.25, 0.25], &[1.0, 1.0]), scores(&[], &[])];
        assert_eq!(best_mode(&all), Some("keyword"), "equal MRR: the higher hit rate wins; a mode with no scores is skipped");
        assert_eq!(best_mode(&[ModeScores::default(), ModeScores::default(), ModeScores::default()]), None);
    }
}
