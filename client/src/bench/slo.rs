//! Service-level objectives: a TOML file of limits, checked against each profile's summary.
//!
//! Keys (all optional, any number):
//! - `{ttft,itl,itl_gap,tpot,e2e}_{mean,p50,p90,p95,p99,max}_ms = LIMIT`: an upper bound in
//!   milliseconds (`itl` is each request's mean gap, `itl_gap` every gap pooled: `itl_gap_p99_ms`
//!   and `itl_gap_max_ms` bound stalls);
//! - `error_rate = FRACTION`: an upper bound on errored / (completed + errored);
//! - `min_requests_per_s`, `min_output_tokens_per_s`, `min_total_tokens_per_s`: lower bounds.
//!
//! An unknown key or a non-numeric value is an error that names the key. A latency objective of a
//! profile with no successful request fails (there is nothing that meets it).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::stats::Summary;
use super::BenchError;

/// Latency metrics, longest first where one name begins another (`itl_gap` before `itl`).
const LATENCY_METRICS: [&str; 5] = ["ttft", "itl_gap", "itl", "tpot", "e2e"];
const LATENCY_STATS: [&str; 6] = ["mean", "p50", "p90", "p95", "p99", "max"];

/// One objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// The key as written (`ttft_p95_ms`).
    pub key: String,
    /// The limit.
    pub limit: f64,
}

/// The objectives of a run, in file order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Every objective.
    pub objectives: Vec<Objective>,
}

/// One objective checked against one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The objective's key.
    pub key: String,
    /// Its limit.
    pub limit: f64,
    /// The measured value (`None`: nothing to measure, e.g. no successful request).
    pub actual: Option<f64>,
    /// Whether it is met.
    pub pass: bool,
}

/// What an objective bounds.
enum Bound<'a> {
    Latency { metric: &'a str, stat: &'a str },
    ErrorRate,
    MinRate(&'a str),
}

fn bound(key: &str) -> Option<Bound<'_>> {
    if key == "error_rate" {
        return Some(Bound::ErrorRate);
    }
    if let Some(rate) = key.strip_prefix("min_") {
        return ["requests_per_s", "output_tokens_per_s", "total_tokens_per_s"].contains(&rate).then_some(Bound::MinRate(rate));
    }
    let stat_ms = |metric: &'static str| Some((metric, key.strip_prefix(metric)?.strip_prefix('_')?.strip_suffix("_ms")?));
    let (metric, stat) = LATENCY_METRICS.iter().find_map(|&m| stat_ms(m).filter(|(_, stat)| LATENCY_STATS.contains(stat)))?;
    Some(Bound::Latency { metric, stat })
}

impl Slo {
    /// Read and check a TOML file.
    pub fn load(path: &Path) -> Result<Slo, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io { path: path.to_owned(), source })?;
        Slo::parse(&text).map_err(|why| BenchError::Slo(format!("{}: {why}", path.display())))
    }

    /// Parse TOML text.
    pub fn parse(text: &str) -> Result<Slo, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
        let mut objectives = Vec::new();
        for (key, value) in table {
            if bound(&key).is_none() {
                return Err(format!(
                    "unknown objective `{key}`; expected {{ttft,itl,itl_gap,tpot,e2e}}_{{mean,p50,p90,p95,p99,max}}_ms, error_rate, min_requests_per_s, min_output_tokens_per_s or min_total_tokens_per_s"
                ));
            }
            let limit = match value {
                toml::Value::Integer(i) => i as f64,
                toml::Value::Float(f) => f,
                other => return Err(format!("`{key}` must be a number, got {other}")),
            };
            if !limit.is_finite() || limit < 0.0 {
                return Err(format!("`{key}` must be a non-negative number, got {limit}"));
            }
            objectives.push(Objective { key, limit });
        }
        if objectives.is_empty() {
            return Err("no objectives".into());
        }
        Ok(Slo { objectives })
    }

    /// Check every objective against a summary.
    pub fn check(&self, summary: &Summary) -> Vec<Verdict> {
        self.objectives
            .iter()
            .map(|o| {
                let (actual, upper) = match bound(&o.key) {
                    Some(Bound::Latency { metric, stat }) => (summary.latency(metric).and_then(|d| d.get(stat)), true),
                    Some(Bound::ErrorRate) => (Some(summary.error_rate), true),
                    Some(Bound::MinRate(rate)) => (
                        Some(match rate {
                            "requests_per_s" => summary.requests_per_s,
                            "output_tokens_per_s" => summary.output_tokens_per_s,
                            _ => summary.total_tokens_per_s,
                        }),
                        false,
                    ),
                    None => (None, true),
                };
                let pass = actual.is_some_and(|a| if upper { a <= o.limit } else { a >= o.limit });
                Verdict { key: o.key.clone(), limit: o.limit, actual, pass }
            })
            .collect()
    }
}

/// The highest completed request rate among profiles whose verdicts all pass.
pub fn highest_sustainable_rate<'a>(results: impl IntoIterator<Item = (&'a Summary, &'a [Verdict])>) -> Option<f64> {
    results
        .into_iter()
        .filter(|(s, v)| s.completed > 0 && v.iter().all(|v| v.pass))
        .map(|(s, _)| s.requests_per_s)
        .fold(None, |best, r| Some(best.map_or(r, |b: f64| b.max(r))))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test fails loudly on the first unexpected error")]
mod tests {
    use super::*;
    use crate::bench::client::{Outcome, RequestRecord};
    use crate::bench::stats::{Distribution, Gaps};

    fn summary(ttft: f64, errors: usize) -> Summary {
        let mut records: Vec<RequestRecord> = (0..10)
            .map(|i| RequestRecord {
                index: i,
                scheduled_s: i as f64,
                start_s: i as f64,
                end_s: i as f64 + 0.5,
                first_token_s: Some(i as f64 + ttft / 1000.0),
                last_token_s: Some(i as f64 + 0.5),
                prompt_tokens: 8,
                output_tokens: 10,
                max_gap_ms: None,
                outcome: Outcome::Ok,
            })
            .collect();
        for r in records.iter_mut().take(errors) {
            r.outcome = Outcome::Error { kind: "http_500".into(), message: String::new() };
        }
        Summary::of("constant:1", Some(1.0), &records, &Gaps::default())
    }

    #[test]
    fn limits_pass_and_fail_where_they_should() {
        let slo = Slo::parse("ttft_p95_ms = 150\nitl_p95_ms = 100.0\nerror_rate = 0.1\nmin_requests_per_s = 0.5").unwrap();
        assert!(slo.check(&summary(100.0, 0)).iter().all(|v| v.pass));
        let slow = slo.check(&summary(200.0, 0));
        assert_eq!(slow.iter().filter(|v| !v.pass).map(|v| v.key.as_str()).collect::<Vec<_>>(), vec!["ttft_p95_ms"]);
        let flaky = slo.check(&summary(100.0, 2));
        assert!(!flaky.iter().find(|v| v.key == "error_rate").unwrap().pass);
    }

    #[test]
    fn a_profile_with_nothing_measured_fails_latency_objectives() {
        let slo = Slo::parse("ttft_p95_ms = 150").unwrap();
        let empty = Summary::of("synchronous", None, &[], &Gaps::default());
        let verdicts = slo.check(&empty);
        assert_eq!((verdicts[0].actual, verdicts[0].pass), (None, false));
    }

    #[test]
    fn itl_gap_objectives_bound_every_gap_not_each_requests_mean() {
        let slo = Slo::parse("itl_p99_ms = 100\nitl_gap_p99_ms = 100\nitl_gap_max_ms = 1000").unwrap();
        let mut s = summary(100.0, 0);
        s.itl_gap_ms = Distribution::of([10.0, 10.0, 500.0]);
        let verdicts = slo.check(&s);
        let failing: Vec<&str> = verdicts.iter().filter(|v| !v.pass).map(|v| v.key.as_str()).collect();
        assert_eq!(failing, vec!["itl_gap_p99_ms"], "{verdicts:?}");
        assert_eq!(verdicts[1].actual, Some(500.0));
        for bad in ["itl_gap_p97_ms = 1", "itl_gap_ms = 1", "gap_p99_ms = 1", "itl_gapp99_ms = 1"] {
            assert!(Slo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        assert!(Slo::parse("ttft_p97_ms = 1").unwrap_err().contains("ttft_p97_ms"));
        assert!(Slo::parse("ttft_p95 = 1").unwrap_err().contains("ttft_p95"));
        assert!(Slo::parse("error_rate = \"low\"").unwrap_err().contains("error_rate"));
        assert!(Slo::parse("").unwrap_err().contains("no objectives"));
        assert!(Slo::parse("min_output_tokens_per_s = 10").is_ok());
    }

    #[test]
    fn the_sustainable_rate_is_the_best_passing_one() {
        let slo = Slo::parse("ttft_p95_ms = 150").unwrap();
        let (a, b) = (summary(100.0, 0), summary(200.0, 0));
        let (va, vb) = (slo.check(&a), slo.check(&b));
        assert_eq!(highest_sustainable_rate([(&a, va.as_slice()), (&b, vb.as_slice())]), Some(a.requests_per_s));
        assert_eq!(highest_sustainable_rate([(&b, vb.as_slice())]), None);
    }
}
