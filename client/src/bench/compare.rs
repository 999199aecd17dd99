//! `hearth bench compare A.json B.json`: two runs side by side, with B/A ratios (the "baseline vs
//! optimized" table). Profiles are paired by name (`constant:2` with `constant:2`); profiles whose
//! names differ (a sweep's measured rates) are paired by position. For throughput a ratio above 1
//! is better, for latency below 1.

use std::path::Path;

use super::report::{table, Report};
use super::stats::Summary;
use super::BenchError;

type Metric = (&'static str, fn(&Summary) -> Option<f64>);

const METRICS: [Metric; 14] = [
    ("req/s", |s| Some(s.requests_per_s)),
    ("out tok/s", |s| Some(s.output_tokens_per_s)),
    ("total tok/s", |s| Some(s.total_tokens_per_s)),
    ("TTFT p50 ms", |s| s.ttft_ms.map(|d| d.p50)),
    ("TTFT p95 ms", |s| s.ttft_ms.map(|d| d.p95)),
    ("TTFT p99 ms", |s| s.ttft_ms.map(|d| d.p99)),
    ("ITL p50 ms", |s| s.itl_ms.map(|d| d.p50)),
    ("ITL p95 ms", |s| s.itl_ms.map(|d| d.p95)),
    ("ITL gap p99 ms", |s| s.itl_gap_ms.map(|d| d.p99)),
    ("ITL gap max ms", |s| s.itl_gap_ms.map(|d| d.max)),
    ("TPOT p95 ms", |s| s.tpot_ms.map(|d| d.p95)),
    ("E2E p50 ms", |s| s.e2e_ms.map(|d| d.p50)),
    ("E2E p95 ms", |s| s.e2e_ms.map(|d| d.p95)),
    ("error rate", |s| Some(s.error_rate)),
];

/// Pair the profiles of two reports.
fn pairs<'a>(a: &'a Report, b: &'a Report) -> Vec<(&'a Summary, &'a Summary)> {
    let names_match = a.profiles.len() == b.profiles.len() && a.profiles.iter().zip(&b.profiles).all(|(x, y)| x.summary.profile == y.summary.profile);
    if names_match {
        return a.profiles.iter().zip(&b.profiles).map(|(x, y)| (&x.summary, &y.summary)).collect();
    }
    let by_name: Vec<(&Summary, &Summary)> = a
        .profiles
        .iter()
        .filter_map(|x| Some((&x.summary, &b.profiles.iter().find(|y| y.summary.profile == x.summary.profile)?.summary)))
        .collect();
    if !by_name.is_empty() {
        return by_name;
    }
    a.profiles.iter().zip(&b.profiles).map(|(x, y)| (&x.summary, &y.summary)).collect()
}

/// The comparison table of two reports.
pub fn compare(a: &Report, b: &Report) -> String {
    let mut rows = Vec::new();
    for (x, y) in pairs(a, b) {
        let name = if x.profile == y.profile { x.profile.clone() } else { format!("{} | {}", x.profile, y.profile) };
        for (metric, get) in METRICS {
            let (va, vb) = (get(x), get(y));
            let ratio = match (va, vb) {
                (Some(va), Some(vb)) if va != 0.0 => format!("{:.3}", vb / va),
                _ => "-".into(),
            };
            let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
            rows.push(vec![name.clone(), metric.to_owned(), show(va), show(vb), ratio]);
        }
    }
    let mut out = format!("A: {} {} ({} profiles)\nB: {} {} ({} profiles)\n\n", a.target, a.model, a.profiles.len(), b.target, b.model, b.profiles.len());
    out += &table(&["profile", "metric", "A", "B", "B/A"], &rows);
    if let (Some(ra), Some(rb)) = (a.highest_sustainable_rate, b.highest_sustainable_rate) {
        out += &format!("highest rate meeting the SLOs: A {ra:.3}, B {rb:.3} req/s (B/A {:.3})\n", if ra > 0.0 { rb / ra } else { f64::NAN });
    }
    out
}

/// Read two reports and print their comparison.
pub fn run(a: &Path, b: &Path) -> Result<String, BenchError> {
    Ok(compare(&Report::read_json(a)?, &Report::read_json(b)?))
}
