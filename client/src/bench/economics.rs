//! Inference economics: GPU utilization read from the target's Prometheus `/metrics` while a
//! profile runs, and the cost of a million output tokens at a GPU's hourly price.
//!
//! Utilization is optional: a target without `/metrics`, or without a GPU utilization series,
//! simply leaves it out. A series counts when its name contains `gpu` and `util` (hearth's
//! `hearth_gpu_utilization_ratio`, DCGM's `DCGM_FI_DEV_GPU_UTIL`, nvidia_gpu_exporter's
//! `nvidia_smi_utilization_gpu_ratio`); names with `ratio` are read as 0..1, others as percent.
//! Several devices are averaged per scrape, scrapes averaged over the profile.
//!
//! Cost per million output tokens = price per hour / (output tokens per second × 3600) × 10⁶:
//! what the GPU's hour buys at the measured throughput, whatever its utilization was.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

/// Scrapes `/metrics` once a second until stopped.
#[derive(Debug)]
pub struct Sampler {
    samples: Arc<Mutex<Vec<f64>>>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Start scraping `url` with `http`.
    pub fn start(http: reqwest::Client, url: String) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Ok(response) = http.get(&url).timeout(Duration::from_secs(2)).send().await else { continue };
                if !response.status().is_success() {
                    continue;
                }
                let Ok(text) = response.text().await else { continue };
                if let Some(u) = gpu_utilization(&text) {
                    sink.lock().unwrap_or_else(PoisonError::into_inner).push(u);
                }
            }
        });
        Sampler { samples, task }
    }

    /// Stop and return the mean utilization (0..1), if the target reported any.
    pub fn stop(self) -> Option<f64> {
        self.task.abort();
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64)
    }
}

/// The mean GPU utilization (0..1) in one Prometheus text exposition, if it has any.
pub fn gpu_utilization(exposition: &str) -> Option<f64> {
    let values: Vec<f64> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let name_end = line.find(['{', ' '])?;
            let name = line[..name_end].to_ascii_lowercase();
            if !(name.contains("gpu") && name.contains("util")) {
                return None;
            }
            let rest = match line[name_end..].strip_prefix('{') {
                Some(labels) => &labels[labels.find('}')? + 1..],
                None => &line[name_end..],
            };
            let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
            let ratio = if name.contains("ratio") { value } else { value / 100.0 };
            ratio.is_finite().then_some(ratio.clamp(0.0, 1.0))
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Cost of a million output tokens at `price_per_hour` and `output_tokens_per_s`.
pub fn cost_per_million(price_per_hour: f64, output_tokens_per_s: f64) -> Option<f64> {
    (output_tokens_per_s > 0.0).then(|| price_per_hour / (output_tokens_per_s * 3600.0) * 1e6)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test fails loudly on the first unexpected error")]
mod tests {
    use super::*;

    #[test]
    fn utilization_is_read_from_known_series_names() {
        let text = "# HELP x\nhearth_gpu_utilization_ratio{gpu=\"0\"} 0.5\nhearth_gpu_utilization_ratio{gpu=\"1\"} 0.7\nhearth_requests_total 9\n";
        assert!((gpu_utilization(text).unwrap() - 0.6).abs() < 1e-9);
        assert!((gpu_utilization("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"x\"} 80 1700000000\n").unwrap() - 0.8).abs() < 1e-9);
        assert_eq!(gpu_utilization("hearth_requests_total 3\n"), None);
        assert_eq!(gpu_utilization(""), None);
    }

    #[test]
    fn cost_follows_throughput() {
        // $3.60/h at 1000 tok/s: 3.6 M tokens an hour, so $1 per million.
        assert!((cost_per_million(3.6, 1000.0).unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(cost_per_million(3.6, 0.0), None);
    }
}
