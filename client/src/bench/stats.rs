//! Summaries of one profile's request records, defined as GuideLLM 0.3.1 defines them so the two
//! tools' numbers can be laid side by side:
//!
//! - **TTFT**: first token received − request sent.
//! - **ITL** (inter-token latency): (last token − first token) / (output tokens − 1), one value per
//!   request, weighted by its output tokens − 1; it excludes the first token's wait.
//! - **ITL gap**: every gap between consecutive output tokens of every request, pooled (vLLM's
//!   benchmark calls this ITL). A request's mean hides a stall: one 300 ms wait among 10 ms gaps
//!   moves a 21-token request's ITL to 24.5 ms, while the gaps' max (and their p99, once stalls
//!   pass 1 % of the gaps) show 300 ms. Tokens that arrive in one chunk arrive together: the first
//!   takes the gap since the previous chunk, the others a gap of 0. So a request adds output
//!   tokens − 1 gaps summing to last − first token, and the gaps' mean equals the ITL mean. The
//!   gaps go into an HDR histogram ([`Gaps`], fixed memory whatever the run's length) with three
//!   significant digits: percentiles are nearest-rank to within 0.1 %; mean, min and max are exact.
//! - **TPOT** (time per output token): end-to-end latency / output tokens, weighted by output
//!   tokens; it includes the first token's wait. (GuideLLM 0.3.1's code divides the decode span by
//!   the output tokens instead, which is ITL × (n−1)/n; its docstring describes ours.)
//! - **E2E**: response finished − request sent.
//! - **Percentiles**: the nearest rank of the weighted distribution: the smallest value whose
//!   cumulative weight reaches the quantile (GuideLLM's method; no interpolation).
//! - **Rates**: completed requests (and their tokens) / (last completion − first start among them).
//!
//! Only successful requests enter the latency and throughput figures; errors are counted by kind,
//! and requests cut off by `--max-seconds` are counted as cancelled, neither success nor error.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::client::{Outcome, RequestRecord};

/// The longest gap the histogram resolves, µs (an hour); longer ones count as an hour in the
/// percentiles (max stays exact).
const MAX_GAP_US: u64 = 3_600_000_000;

/// Mean and percentiles of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Number of values.
    pub count: usize,
    /// Weighted mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Distribution {
    /// The distribution of `(value, weight)` pairs; `None` when empty or all weights are zero.
    pub fn weighted(mut pairs: Vec<(f64, f64)>) -> Option<Distribution> {
        pairs.retain(|(v, w)| v.is_finite() && *w > 0.0);
        let total: f64 = pairs.iter().map(|(_, w)| w).sum();
        if pairs.is_empty() || total <= 0.0 {
            return None;
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let quantile = |q: f64| {
            let mut cumulative = 0.0;
            for (value, weight) in &pairs {
                cumulative += weight / total;
                // A hair of slack so that 0.95 of 20 equal weights lands on the 19th value.
                if cumulative >= q - 1e-12 {
                    return *value;
                }
            }
            pairs[pairs.len() - 1].0
        };
        Some(Distribution {
            count: pairs.len(),
            mean: pairs.iter().map(|(v, w)| v * w).sum::<f64>() / total,
            min: pairs[0].0,
            p50: quantile(0.50),
            p90: quantile(0.90),
            p95: quantile(0.95),
            p99: quantile(0.99),
            max: pairs[pairs.len() - 1].0,
        })
    }

    /// The distribution of equally weighted values.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Distribution> {
        Self::weighted(values.into_iter().map(|v| (v, 1.0)).collect())
    }

    /// A statistic by name: `mean`, `p50`, `p90`, `p95`, `p99`, `min`, `max`.
    pub fn get(&self, stat: &str) -> Option<f64> {
        Some(match stat {
            "mean" => self.mean,
            "p50" => self.p50,
            "p90" => self.p90,
            "p95" => self.p95,
            "p99" => self.p99,
            "min" => self.min,
            "max" => self.max,
            _ => return None,
        })
    }
}

/// Every inter-token gap of a profile's successful requests, pooled in an HDR histogram of
/// microseconds (about 190 KB whatever the number of gaps).
#[derive(Debug, Clone)]
pub struct Gaps {
    histogram: Histogram<u64>,
    /// Exact sum, µs.
    sum_us: u128,
    /// Exact smallest gap, µs.
    min_us: u64,
    /// Exact largest gap, µs.
    max_us: u64,
}

impl Default for Gaps {
    fn default() -> Self {
        #[expect(clippy::expect_used, reason = "constant bounds that the crate accepts (1 ≤ low, high ≥ 2 × low, sigfig ≤ 5)")]
        let histogram = Histogram::new_with_bounds(1, MAX_GAP_US, 3).expect("valid histogram bounds");
        Gaps { histogram, sum_us: 0, min_us: u64::MAX, max_us: 0 }
    }
}

impl Gaps {
    /// Add one request's gaps, µs.
    pub fn record(&mut self, gaps_us: &[u32]) {
        for &gap in gaps_us {
            let gap = u64::from(gap);
            self.histogram.saturating_record(gap);
            self.sum_us += u128::from(gap);
            self.min_us = self.min_us.min(gap);
            self.max_us = self.max_us.max(gap);
        }
    }

    /// The distribution in milliseconds; `None` without gaps. Percentiles are the histogram's
    /// nearest rank (the bucket's upper edge, kept within the exact min and max).
    pub fn distribution(&self) -> Option<Distribution> {
        let count = self.histogram.len();
        if count == 0 {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |q: f64| ms(self.histogram.value_at_quantile(q).clamp(self.min_us, self.max_us));
        Some(Distribution {
            count: usize::try_from(count).unwrap_or(usize::MAX),
            mean: self.sum_us as f64 / count as f64 / 1000.0,
            min: ms(self.min_us),
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            max: ms(self.max_us),
        })
    }
}

/// Everything reported about one profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// The profile as given (`constant:2`, `synchronous`, ...).
    pub profile: String,
    /// Requests per second the profile asked for, for rate profiles.
    pub target_rate: Option<f64>,
    /// Requests that finished successfully.
    pub completed: u64,
    /// Requests that failed.
    pub errored: u64,
    /// Requests still running when `--max-seconds` ran out.
    pub cancelled: u64,
    /// Failures by kind (`http_429`, `connect`, `timeout`, `stream`, `server_error`, ...).
    pub errors: BTreeMap<String, u64>,
    /// errored / (completed + errored).
    pub error_rate: f64,
    /// Seconds from the first start to the last completion of the successful requests.
    pub duration_s: f64,
    /// Completed requests per second.
    pub requests_per_s: f64,
    /// Requests sent per second (all of them, over the span of their start times).
    pub send_rate: f64,
    /// Mean number of successful requests in flight.
    pub mean_concurrency: f64,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
    /// Prompt plus output tokens per second.
    pub total_tokens_per_s: f64,
    /// Mean prompt tokens per request (as the server counted them when it said).
    pub prompt_tokens_mean: f64,
    /// Mean output tokens per request.
    pub output_tokens_mean: f64,
    /// Time to first token, ms.
    pub ttft_ms: Option<Distribution>,
    /// Inter-token latency, ms: each request's mean gap, weighted by its gaps.
    pub itl_ms: Option<Distribution>,
    /// Every gap between consecutive tokens of every successful request, pooled, ms.
    #[serde(default)]
    pub itl_gap_ms: Option<Distribution>,
    /// Time per output token, ms.
    pub tpot_ms: Option<Distribution>,
    /// End-to-end request latency, ms.
    pub e2e_ms: Option<Distribution>,
    /// Mean GPU utilization (0..1) the target's `/metrics` reported during the profile.
    pub gpu_utilization: Option<f64>,
    /// Cost of a million output tokens at `--gpu-cost-per-hour` and this throughput.
    pub cost_per_million_output_tokens: Option<f64>,
}

impl Summary {
    /// Summarize the records of one profile and the pooled gaps of its successful requests.
    pub fn of(profile: &str, target_rate: Option<f64>, records: &[RequestRecord], gaps: &Gaps) -> Summary {
        let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.outcome == Outcome::Ok).collect();
        let mut errors = BTreeMap::new();
        for record in records {
            if let Outcome::Error { kind, .. } = &record.outcome {
                *errors.entry(kind.clone()).or_insert(0u64) += 1;
            }
        }
        let errored: u64 = errors.values().sum();
        let cancelled = records.iter().filter(|r| r.outcome == Outcome::Cancelled).count() as u64;
        let completed = ok.len() as u64;
        let first_start = ok.iter().map(|r| r.start_s).fold(f64::INFINITY, f64::min);
        let last_end = ok.iter().map(|r| r.end_s).fold(f64::NEG_INFINITY, f64::max);
        let duration_s = if completed > 0 { (last_end - first_start).max(1e-9) } else { 0.0 };
        let per_s = |x: f64| if duration_s > 0.0 { x / duration_s } else { 0.0 };
        let output: u64 = ok.iter().map(|r| r.output_tokens).sum();
        let prompt: u64 = ok.iter().map(|r| r.prompt_tokens).sum();
        let mean = |x: u64| if completed > 0 { x as f64 / completed as f64 } else { 0.0 };
        let starts: Vec<f64> = records.iter().map(|r| r.start_s).collect();
        let send_span = starts.iter().copied().fold(f64::NEG_INFINITY, f64::max) - starts.iter().copied().fold(f64::INFINITY, f64::min);
        let send_rate = if starts.len() > 1 && send_span > 0.0 { (starts.len() - 1) as f64 / send_span } else { 0.0 };
        let busy: f64 = ok.iter().map(|r| r.end_s - r.start_s).sum();
        Summary {
            profile: profile.to_owned(),
            target_rate,
            completed,
            errored,
            cancelled,
            errors,
            error_rate: if completed + errored > 0 { errored as f64 / (completed + errored) as f64 } else { 0.0 },
            duration_s,
            requests_per_s: per_s(completed as f64),
            send_rate,
            mean_concurrency: per_s(busy),
            output_tokens_per_s: per_s(output as f64),
            total_tokens_per_s: per_s((output + prompt) as f64),
            prompt_tokens_mean: mean(prompt),
            output_tokens_mean: mean(output),
            ttft_ms: Distribution::of(ok.iter().filter_map(|r| r.ttft_ms())),
            itl_ms: Distribution::weighted(ok.iter().filter_map(|r| Some((r.itl_ms()?, r.output_tokens.saturating_sub(1) as f64))).collect()),
            itl_gap_ms: gaps.distribution(),
            tpot_ms: Distribution::weighted(ok.iter().filter_map(|r| Some((r.tpot_ms()?, r.output_tokens as f64))).collect()),
            e2e_ms: Distribution::of(ok.iter().map(|r| r.e2e_ms())),
            gpu_utilization: None,
            cost_per_million_output_tokens: None,
        }
    }

    /// A latency metric by SLO name: `ttft`, `itl`, `itl_gap`, `tpot`, `e2e`.
    pub fn latency(&self, metric: &str) -> Option<&Distribution> {
        match metric {
            "ttft" => self.ttft_ms.as_ref(),
            "itl" => self.itl_ms.as_ref(),
            "itl_gap" => self.itl_gap_ms.as_ref(),
            "tpot" => self.tpot_ms.as_ref(),
            "e2e" => self.e2e_ms.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test fails loudly on the first unexpected error")]
mod tests {
    use super::*;

    fn record(index: u64, start: f64, first: f64, end: f64, tokens: u64) -> RequestRecord {
        RequestRecord {
            index,
            scheduled_s: start,
            start_s: start,
            end_s: end,
            first_token_s: Some(first),
            last_token_s: Some(end),
            prompt_tokens: 10,
            output_tokens: tokens,
            max_gap_ms: None,
            outcome: Outcome::Ok,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let d = Distribution::of((1..=100).map(f64::from)).unwrap();
        assert_eq!((d.p50, d.p90, d.p95, d.p99, d.min, d.max), (50.0, 90.0, 95.0, 99.0, 1.0, 100.0));
        assert!((d.mean - 50.5).abs() < 1e-9);
        let d = Distribution::of((1..=20).map(f64::from)).unwrap();
        assert_eq!(d.p95, 19.0);
        assert_eq!(Distribution::of([7.0]).unwrap().p99, 7.0);
        assert!(Distribution::of([]).is_none());
    }

    #[test]
    fn weights_shift_the_percentiles() {
        let d = Distribution::weighted(vec![(1.0, 9.0), (100.0, 1.0)]).unwrap();
        assert_eq!(d.p50, 1.0);
        assert_eq!(d.p90, 1.0);
        assert_eq!(d.p95, 100.0);
        assert!((d.mean - 10.9).abs() < 1e-9);
    }

    #[test]
    fn summary_follows_guidellm_definitions() {
        // Two requests: TTFT 100 ms, 11 tokens over 1.1 s (ITL 100 ms), back to back.
        let records = vec![
            record(0, 0.0, 0.1, 1.1, 11),
            record(1, 1.1, 1.2, 2.2, 11),
            RequestRecord { outcome: Outcome::Error { kind: "http_500".into(), message: String::new() }, ..record(2, 2.2, 2.2, 2.3, 0) },
            RequestRecord { outcome: Outcome::Cancelled, ..record(3, 2.3, 2.3, 2.4, 0) },
        ];
        let s = Summary::of("synchronous", None, &records, &Gaps::default());
        assert_eq!((s.completed, s.errored, s.cancelled), (2, 1, 1));
        assert_eq!(s.errors.get("http_500"), Some(&1));
        assert!((s.error_rate - 1.0 / 3.0).abs() < 1e-9);
        assert!((s.duration_s - 2.2).abs() < 1e-9);
        assert!((s.requests_per_s - 2.0 / 2.2).abs() < 1e-9);
        assert!((s.output_tokens_per_s - 22.0 / 2.2).abs() < 1e-9);
        assert!((s.total_tokens_per_s - 42.0 / 2.2).abs() < 1e-9);
        assert!((s.ttft_ms.unwrap().mean - 100.0).abs() < 1e-6);
        assert!((s.itl_ms.unwrap().p50 - 100.0).abs() < 1e-6);
        assert!((s.tpot_ms.unwrap().mean - 100.0).abs() < 1e-6);
        assert!((s.e2e_ms.unwrap().p99 - 1100.0).abs() < 1e-6);
        assert!((s.mean_concurrency - 1.0).abs() < 1e-9);
        assert!((s.send_rate - 3.0 / 2.3).abs() < 1e-9);
        assert!(s.itl_gap_ms.is_none(), "no gaps were recorded");
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 1e-3 + 1e-9
    }

    #[test]
    fn gap_percentiles_are_nearest_rank_within_the_histograms_precision() {
        let mut gaps = Gaps::default();
        assert!(gaps.distribution().is_none());
        gaps.record(&(1..=100).map(|ms| ms * 1000).collect::<Vec<u32>>());
        let d = gaps.distribution().unwrap();
        assert_eq!(d.count, 100);
        for (got, want) in [(d.p50, 50.0), (d.p90, 90.0), (d.p95, 95.0), (d.p99, 99.0)] {
            assert!(close(got, want), "{got} vs {want}");
        }
        assert_eq!((d.min, d.max), (1.0, 100.0), "min and max are exact");
        assert!((d.mean - 50.5).abs() < 1e-9, "the mean is exact: {}", d.mean);
        // Zero gaps (tokens of one chunk) and gaps past the histogram's range still count.
        let mut edge = Gaps::default();
        edge.record(&[0, 0, u32::MAX]);
        let d = edge.distribution().unwrap();
        assert_eq!((d.min, d.p50, d.max), (0.0, 0.0, f64::from(u32::MAX) / 1000.0));
        assert!(d.p99 <= d.max);
    }

    #[test]
    fn a_stall_shows_in_the_pooled_gaps_but_not_in_the_per_request_itl() {
        // Four requests of 21 tokens, 10 ms apart but for one 300 ms stall each.
        let mut gaps = Gaps::default();
        let per_request: Vec<u32> = (0..20).map(|i| if i == 9 { 300_000 } else { 10_000 }).collect();
        let records: Vec<RequestRecord> = (0..4u32)
            .map(|i| {
                gaps.record(&per_request);
                let start = f64::from(i);
                RequestRecord { max_gap_ms: Some(300.0), ..record(u64::from(i), start, start + 0.05, start + 0.05 + 0.49, 21) }
            })
            .collect();
        let s = Summary::of("synchronous", None, &records, &gaps);
        let (itl, gap) = (s.itl_ms.unwrap(), s.itl_gap_ms.unwrap());
        assert!(close(itl.p99, 24.5) && close(itl.max, 24.5), "each request's mean is 24.5 ms: {itl:?}");
        assert_eq!(gap.count, 80);
        assert!(close(gap.p50, 10.0) && close(gap.p90, 10.0), "{gap:?}");
        assert!(close(gap.p99, 300.0) && close(gap.max, 300.0), "1 gap in 20 is a stall: {gap:?}");
        assert!(close(gap.mean, itl.mean), "the pooled mean is the per-request weighted mean: {} vs {}", gap.mean, itl.mean);
        assert_eq!(s.latency("itl_gap").map(|d| d.p99), Some(gap.p99));
    }
}
