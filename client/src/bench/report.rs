//! The results of a run: the JSON document (every raw request record and every summary), and
//! the terminal tables printed at the end: throughput, latency, and the inter-token gaps (every
//! gap pooled, beside the per-request ITL that averages a stall away).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::client::RequestRecord;
use super::slo::{Slo, Verdict};
use super::stats::{Distribution, Summary};
use super::BenchError;

/// The version of the JSON layout; `compare` refuses others.
pub const FORMAT_VERSION: u32 = 1;

/// A whole run, as written by `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// hearth's version.
    pub hearth_version: String,
    /// Start of the run, seconds since the Unix epoch.
    pub started_unix: u64,
    /// The target's base URL.
    pub target: String,
    /// The model.
    pub model: String,
    /// `chat` or `completions`.
    pub endpoint: String,
    /// The `--data` argument.
    pub data: String,
    /// How prompt lengths were obtained.
    pub token_counting: String,
    /// `--gpu-cost-per-hour`.
    pub gpu_cost_per_hour: Option<f64>,
    /// The objectives, when `--slo` was given.
    pub slo: Option<Slo>,
    /// The highest request rate among profiles meeting every objective.
    pub highest_sustainable_rate: Option<f64>,
    /// Whether the SLO gate passed (`None` without objectives).
    pub slo_passed: Option<bool>,
    /// Each profile in the order run.
    pub profiles: Vec<ProfileReport>,
}

/// One profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileReport {
    /// The summary.
    pub summary: Summary,
    /// The SLO verdicts (empty without objectives).
    pub verdicts: Vec<Verdict>,
    /// Every request.
    pub records: Vec<RequestRecord>,
}

impl Report {
    /// Write as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| BenchError::Data(format!("could not encode the report: {e}")))?;
        std::fs::write(path, text).map_err(|source| BenchError::Io { path: path.to_owned(), source })
    }

    /// Read a report written by `--json`.
    pub fn read_json(path: &Path) -> Result<Report, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io { path: path.to_owned(), source })?;
        let report: Report = serde_json::from_str(&text).map_err(|e| BenchError::Data(format!("{}: not a `hearth bench --json` report: {e}", path.display())))?;
        if report.format_version != FORMAT_VERSION {
            return Err(BenchError::Data(format!("{}: report format {} is not {FORMAT_VERSION}", path.display(), report.format_version)));
        }
        Ok(report)
    }

    /// The terminal tables.
    pub fn render(&self) -> String {
        let mut out = format!(
            "hearth bench: {} model {} ({}), data {}\nprompt tokens: {}\n\n",
            self.target, self.model, self.endpoint, self.data, self.token_counting
        );
        let throughput: Vec<Vec<String>> = self
            .profiles
            .iter()
            .map(|p| {
                let s = &p.summary;
                vec![
                    s.profile.clone(),
                    format!("{:.2}", s.requests_per_s),
                    format!("{:.2}", s.send_rate),
                    format!("{:.1}", s.mean_concurrency),
                    format!("{:.1}", s.output_tokens_per_s),
                    format!("{:.1}", s.total_tokens_per_s),
                    format!("{:.0}/{:.0}", s.prompt_tokens_mean, s.output_tokens_mean),
                    s.completed.to_string(),
                    errors(s),
                    s.cancelled.to_string(),
                    s.cost_per_million_output_tokens.map_or("-".into(), |c| format!("{c:.3}")),
                    s.gpu_utilization.map_or("-".into(), |u| format!("{:.0}%", u * 100.0)),
                ]
            })
            .collect();
        out += &table(&["profile", "req/s", "sent/s", "conc", "out tok/s", "tot tok/s", "in/out tok", "ok", "errors", "cancel", "$/M out", "GPU"], &throughput);
        out += "\n";
        let latency: Vec<Vec<String>> = self
            .profiles
            .iter()
            .map(|p| {
                let s = &p.summary;
                let mut row = vec![s.profile.clone()];
                for (d, stats) in [(&s.ttft_ms, &["mean", "p50", "p95", "p99"][..]), (&s.itl_ms, &["mean", "p50", "p95", "p99"]), (&s.tpot_ms, &["p50", "p95"]), (&s.e2e_ms, &["p50", "p95", "p99"])] {
                    row.extend(stats.iter().map(|st| ms(d.as_ref(), st)));
                }
                row
            })
            .collect();
        out += &table(
            &["latency (ms)", "TTFT mean", "p50", "p95", "p99", "ITL mean", "p50", "p95", "p99", "TPOT p50", "p95", "E2E p50", "p95", "p99"],
            &latency,
        );
        out += "\n";
        let gaps: Vec<Vec<String>> = self
            .profiles
            .iter()
            .map(|p| {
                let s = &p.summary;
                let mut row = vec![s.profile.clone(), s.itl_gap_ms.map_or("-".into(), |d| d.count.to_string())];
                row.extend(["mean", "p50", "p90", "p99", "max"].iter().map(|st| ms(s.itl_gap_ms.as_ref(), st)));
                row.extend(["p99", "max"].iter().map(|st| ms(s.itl_ms.as_ref(), st)));
                row
            })
            .collect();
        out += &table(&["token gaps (ms)", "gaps", "mean", "p50", "p90", "p99", "max", "request ITL p99", "max"], &gaps);
        if let Some(slo) = &self.slo {
            out += "\n";
            let mut headers = vec!["SLO".to_owned()];
            headers.extend(slo.objectives.iter().map(|o| format!("{} {} {}", o.key, if o.key.starts_with("min_") { "≥" } else { "≤" }, o.limit)));
            headers.push("result".into());
            let rows: Vec<Vec<String>> = self
                .profiles
                .iter()
                .map(|p| {
                    let mut row = vec![p.summary.profile.clone()];
                    row.extend(p.verdicts.iter().map(|v| format!("{} {}", v.actual.map_or("-".into(), |a| format!("{a:.3}")), if v.pass { "pass" } else { "FAIL" })));
                    row.push(if p.verdicts.iter().all(|v| v.pass) { "pass".into() } else { "FAIL".into() });
                    row
                })
                .collect();
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            out += &table(&headers, &rows);
            out += &match self.highest_sustainable_rate {
                Some(r) => format!("highest rate meeting every objective: {r:.3} req/s\n"),
                None => "no profile met every objective\n".into(),
            };
            out += &format!("SLO gate: {}\n", if self.slo_passed == Some(true) { "PASS" } else { "FAIL" });
        }
        out
    }
}

fn errors(s: &Summary) -> String {
    if s.errors.is_empty() {
        return "0".into();
    }
    s.errors.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" ")
}

fn ms(d: Option<&Distribution>, stat: &str) -> String {
    d.and_then(|d| d.get(stat)).map_or("-".into(), |v| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") })
}

/// A plain text table: first column left-aligned, the rest right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut s = String::new();
        for (i, cell) in cells.enumerate().take(columns) {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i == 0 {
                s += &format!("{cell}{}", " ".repeat(pad));
            } else {
                s += &format!("  {}{cell}", " ".repeat(pad));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    out += &(widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>().join("  ") + "\n");
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(&["name", "n"], &[vec!["a".into(), "1".into()], vec!["long name".into(), "100".into()]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "name         n");
        assert_eq!(lines[2], "a            1");
        assert_eq!(lines[3], "long name  100");
    }
}
