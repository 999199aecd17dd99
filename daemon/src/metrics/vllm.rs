//! vLLM's metric names and buckets, one set of series per served model (labels `model_name` and
//! `provider`, `local` or `remote`).
//!
//! Two sources, one collector ([`ModelRegistry`]), so each family is described once with a
//! sample per model:
//! - **engine state**, read from `Backend::stats()` at scrape time: `vllm:num_requests_running`,
//!   `vllm:num_requests_waiting` (for a remote model, hearth's side: requests in flight to the
//!   upstream and waiting for a slot), and for local models only `vllm:kv_cache_usage_perc` and
//!   the counters `vllm:prefix_cache_queries`, `vllm:prefix_cache_hits`, `vllm:num_preemptions`
//!   (a remote model's KV cache is the upstream's, on the upstream's own `/metrics`);
//! - **engine steps** (hearth's own, for profiling local engines): `hearth_engine_steps_total`,
//!   `hearth_engine_batch_tokens_total` and `hearth_engine_step_seconds_total` by `phase`
//!   (`schedule`, `decode` including the wait for the device, `sample`, `emit`);
//! - **per request**, recorded by the service layer through a [`RequestTimer`]: token counters,
//!   `vllm:request_success` by `finished_reason`, and the histograms of time to first token,
//!   inter-token latency, end-to-end latency, queue time, prompt and generation lengths.
//!
//! Buckets are vLLM's (`vllm/v1/metrics/loggers.py`): fixed lists for the latencies, and
//! 1-2-5 steps up to the model's context length (for a remote model of unknown length,
//! [`UNKNOWN_MAX_LEN`]) for the token histograms. A request that ends without `Finished` (the
//! client went away, the engine or the upstream failed) counts as `abort`, as in vLLM.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use engine::{FinishReason, Usage};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;

use crate::models::Models;
use crate::provider::Backend;

/// The top of the token histograms' buckets for a model whose context length is not known.
pub const UNKNOWN_MAX_LEN: u64 = 1 << 20;

/// vLLM's `vllm:time_to_first_token_seconds` buckets.
pub const TTFT_BUCKETS: [f64; 22] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's `vllm:inter_token_latency_seconds` buckets.
pub const ITL_BUCKETS: [f64; 19] =
    [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
/// vLLM's request latency buckets (end-to-end and queue time).
pub const REQUEST_LATENCY_BUCKETS: [f64; 21] =
    [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];

/// The finish reasons reported, every one from the start so rates work from zero.
const FINISH_REASONS: [&str; 3] = ["stop", "length", "abort"];

/// vLLM's `build_1_2_5_buckets(max)`: 1, 2, 5, 10, 20, 50, … up to `max`.
pub fn buckets_1_2_5(max: u64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut scale = 1u64;
    loop {
        for m in [1u64, 2, 5] {
            let v = m.saturating_mul(scale);
            if v > max {
                return out;
            }
            out.push(v as f64);
        }
        scale = match scale.checked_mul(10) {
            Some(s) => s,
            None => return out,
        };
    }
}

/// The series of one model.
#[derive(Debug)]
pub struct ModelMetrics {
    name: String,
    backend: Backend,
    prompt_tokens: Counter,
    generation_tokens: Counter,
    /// Indexed like [`FINISH_REASONS`].
    success: [Counter; 3],
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
    queue: Histogram,
    prompt_len: Histogram,
    generation_len: Histogram,
}

impl ModelMetrics {
    fn new(backend: &Backend) -> Self {
        let max_len = backend.max_model_len().map_or(UNKNOWN_MAX_LEN, |n| u64::from(n.max(1)));
        Self {
            name: backend.name().to_owned(),
            backend: backend.clone(),
            prompt_tokens: Counter::default(),
            generation_tokens: Counter::default(),
            success: Default::default(),
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(REQUEST_LATENCY_BUCKETS),
            queue: Histogram::new(REQUEST_LATENCY_BUCKETS),
            prompt_len: Histogram::new(buckets_1_2_5(max_len)),
            generation_len: Histogram::new(buckets_1_2_5(max_len)),
        }
    }

    fn finished(&self, reason: &str) {
        if let Some(i) = FINISH_REASONS.iter().position(|r| *r == reason) {
            self.success[i].inc();
        }
    }

    /// An embeddings request: its tokens are prompt tokens, and it ends with `stop`.
    pub(crate) fn record_embedding(&self, prompt_tokens: u64, elapsed: Duration) {
        self.prompt_tokens.inc_by(prompt_tokens);
        self.prompt_len.observe(prompt_tokens as f64);
        self.e2e.observe(elapsed.as_secs_f64());
        self.finished("stop");
    }
}

/// The served models' series; empty until the models are loaded. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    models: Arc<OnceLock<Vec<Arc<ModelMetrics>>>>,
}

impl ModelRegistry {
    /// Start reporting these models (once; later calls are ignored).
    pub fn attach(&self, models: &Models) {
        let _ = self.models.set(models.all().iter().map(|b| Arc::new(ModelMetrics::new(b))).collect());
    }

    /// The series of `model`, once loaded.
    pub fn get(&self, model: &str) -> Option<Arc<ModelMetrics>> {
        self.models.get()?.iter().find(|m| m.name == model).cloned()
    }
}

type Labels<'a> = [(&'static str, &'a str); 2];
/// A family read from a model's stats at scrape time: name, help, value.
type StatFamily<T> = (&'static str, &'static str, fn(&engine::EngineStats) -> T);
/// A family recorded per request: name, help, the model's metric.
type RequestFamily<M> = (&'static str, &'static str, fn(&ModelMetrics) -> &M);

impl Collector for ModelRegistry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(models) = self.models.get() else { return Ok(()) };
        let stats: Vec<_> = models.iter().map(|m| (m, m.backend.stats())).collect();
        let local: Vec<_> = stats.iter().filter(|(m, _)| m.backend.provider() == "local").collect();

        let gauges: [StatFamily<f64>; 2] = [
            ("vllm:num_requests_running", "Number of requests in model execution batches.", |s| s.running as f64),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", |s| s.waiting as f64),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (m, s) in &stats {
                ConstGauge::new(value(s)).encode(family.encode_family(&labels(m))?)?;
            }
        }
        encode_model_states(&mut encoder, &stats)?;
        let mut family = encoder.encode_descriptor("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", None, MetricType::Gauge)?;
        for (m, s) in &local {
            let usage = if s.kv_capacity_tokens == 0 { 0.0 } else { s.kv_used_tokens as f64 / s.kv_capacity_tokens as f64 };
            ConstGauge::new(usage).encode(family.encode_family(&labels(m))?)?;
        }
        let engine_counters: [StatFamily<u64>; 6] = [
            ("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", |s| s.prefix_cache_queries),
            ("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", |s| s.prefix_cache_hits),
            ("vllm:num_preemptions", "Cumulative number of preemption from the engine.", |s| s.preemptions),
            ("hearth_engine_steps", "Engine steps that computed a batch.", |s| s.steps),
            ("hearth_engine_batch_tokens", "Tokens computed in engine steps (decode plus prefill).", |s| s.batch_tokens),
            ("hearth_engine_stalled_requests", "Generations cancelled because their client took no event for [server] stall_timeout_seconds.", |s| s.stalled),
        ];
        for (name, help, value) in engine_counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (m, s) in &local {
                ConstCounter::new(value(s)).encode(family.encode_family(&labels(m))?)?;
            }
        }

        encode_prefix_tiers(&mut encoder, &local)?;

        let mut family = encoder.encode_descriptor(
            "hearth_engine_step_seconds",
            "Time of engine steps by phase: schedule, decode (with the wait for the device), sample, emit.",
            None,
            MetricType::Counter,
        )?;
        for (m, s) in &local {
            for (phase, ns) in [("schedule", s.schedule_ns), ("decode", s.decode_ns), ("sample", s.sample_ns), ("emit", s.emit_ns)] {
                ConstCounter::new(ns as f64 / 1e9).encode(family.encode_family(&[("model_name", m.name.as_str()), ("provider", "local"), ("phase", phase)])?)?;
            }
        }

        let counters: [RequestFamily<Counter>; 2] = [
            ("vllm:prompt_tokens", "Number of prefill tokens processed.", |m| &m.prompt_tokens),
            ("vllm:generation_tokens", "Number of generation tokens processed.", |m| &m.generation_tokens),
        ];
        for (name, help, metric) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for m in models {
                metric(m).encode(family.encode_family(&labels(m))?)?;
            }
        }
        let mut family =
            encoder.encode_descriptor("vllm:request_success", "Count of successfully processed requests.", None, MetricType::Counter)?;
        for m in models {
            for (reason, counter) in FINISH_REASONS.iter().zip(&m.success) {
                let [model, provider] = labels(m);
                counter.encode(family.encode_family(&[model, provider, ("finished_reason", reason)])?)?;
            }
        }

        let histograms: [RequestFamily<Histogram>; 6] = [
            ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", |m| &m.ttft),
            ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", |m| &m.itl),
            ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", |m| &m.e2e),
            ("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", |m| &m.queue),
            ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", |m| &m.prompt_len),
            ("vllm:request_generation_tokens", "Number of generation tokens processed.", |m| &m.generation_len),
        ];
        for (name, help, metric) in histograms {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for m in models {
                metric(m).encode(family.encode_family(&labels(m))?)?;
            }
        }
        Ok(())
    }
}

/// The prefix cache by tier (`hot`: unused blocks in the KV cache, `ram`, `disk`), for local models:
/// admissions served from each tier, misses, restores tried, saves, and the bytes each holds.
fn encode_prefix_tiers(encoder: &mut DescriptorEncoder, local: &[&(&Arc<ModelMetrics>, engine::EngineStats)]) -> Result<(), std::fmt::Error> {
    type TierFamily = (&'static str, &'static str, MetricType, &'static [(&'static str, fn(&engine::PrefixTierStats) -> u64)]);
    let families: [TierFamily; 6] = [
        (
            "hearth_prefix_cache_hits",
            "Admitted requests whose prompt prefix came from the prefix cache, by tier (hot: shared in the KV cache; ram, disk: restored).",
            MetricType::Counter,
            &[("hot", |t| t.hot_hits), ("ram", |t| t.ram_hits), ("disk", |t| t.disk_hits)],
        ),
        ("hearth_prefix_cache_misses", "Admitted requests with no cached prefix of a block or more.", MetricType::Counter, &[("", |t| t.misses)]),
        (
            "hearth_prefix_cache_restores",
            "Restores of a saved prefix tried, by tier; those not counted as hits failed (missing, corrupt or refused).",
            MetricType::Counter,
            &[("ram", |t| t.ram_restores), ("disk", |t| t.disk_restores)],
        ),
        ("hearth_prefix_cache_saves", "Finished requests whose prompt prefix was saved to the RAM and disk tiers.", MetricType::Counter, &[("", |t| t.saves)]),
        (
            "hearth_prefix_cache_saves_skipped",
            "Finished requests whose prefix was not saved: saving had used its share of a busy engine's time.",
            MetricType::Counter,
            &[("", |t| t.saves_skipped)],
        ),
        (
            "hearth_prefix_cache_bytes",
            "Bytes of KV the prefix cache holds, by tier.",
            MetricType::Gauge,
            &[("hot", |t| t.hot_bytes), ("ram", |t| t.ram_bytes), ("disk", |t| t.disk_bytes)],
        ),
    ];
    for (name, help, kind, tiers) in families {
        let mut family = encoder.encode_descriptor(name, help, None, kind)?;
        for (m, s) in local {
            for &(tier, value) in tiers {
                let v = value(&s.prefix_tiers);
                let mut l: Vec<(&str, &str)> = labels(m).to_vec();
                if !tier.is_empty() {
                    l.push(("tier", tier));
                }
                match kind {
                    MetricType::Gauge => ConstGauge::new(v as f64).encode(family.encode_family(&l)?)?,
                    _ => ConstCounter::new(v).encode(family.encode_family(&l)?)?,
                }
            }
        }
    }
    let mut family = encoder.encode_descriptor(
        "hearth_prefix_cache_save_seconds",
        "Time the engine thread spent copying finished requests' KV to the RAM tier.",
        None,
        MetricType::Counter,
    )?;
    for (m, s) in local {
        ConstCounter::new(s.prefix_tiers.save_ns as f64 / 1e9).encode(family.encode_family(&labels(m))?)?;
    }
    Ok(())
}

/// `hearth_model_state{model_name, provider, state}`: 1 for each local model's state now, 0 for
/// the others (loading on demand and unloading under `max_loaded_models` change it).
fn encode_model_states(encoder: &mut DescriptorEncoder, stats: &[(&Arc<ModelMetrics>, engine::EngineStats)]) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor("hearth_model_state", "A local model's state: 1 for the state it is in, 0 for the others.", None, MetricType::Gauge)?;
    for (m, _) in stats {
        let Some(now) = m.backend.state() else { continue };
        for state in MODEL_STATES {
            let [model, provider] = labels(m);
            let l = [model, provider, ("state", state)];
            ConstGauge::new(i64::from(now.name() == state)).encode(family.encode_family(&l)?)?;
        }
    }
    Ok(())
}

/// Every state a local model can be in, reported from the start so each series exists.
const MODEL_STATES: [&str; 5] = ["unloaded", "loading", "loaded", "unloading", "failed"];

fn labels(m: &ModelMetrics) -> Labels<'_> {
    [("model_name", m.name.as_str()), ("provider", m.backend.provider())]
}

/// Measures one generation as its events are consumed: time to first token from arrival,
/// inter-token gaps, tokens, and the outcome. Dropped before `finished`, it counts an abort.
/// Prompt tokens are counted at the first token, as known at submission, and topped up to the
/// final `usage` (a remote model's upstream reports them only there).
#[derive(Debug)]
pub struct RequestTimer {
    model: Option<Arc<ModelMetrics>>,
    arrived: Instant,
    prompt_tokens: u32,
    /// Prompt tokens already added to the counter.
    prompt_counted: u32,
    last_token_at: Option<Instant>,
    tokens_seen: u32,
    done: bool,
}

impl RequestTimer {
    /// A timer for a request that arrived at `arrived` with `prompt_tokens` tokens; records nothing
    /// when the model has no series (it is not loaded).
    pub(crate) fn new(model: Option<Arc<ModelMetrics>>, arrived: Instant, prompt_tokens: u32) -> Self {
        Self { model, arrived, prompt_tokens, prompt_counted: 0, last_token_at: None, tokens_seen: 0, done: false }
    }

    /// A `Delta` arrived; `completion_tokens` counts every token so far.
    pub fn delta(&mut self, completion_tokens: u32) {
        self.tokens_at(completion_tokens, Instant::now());
    }

    fn tokens_at(&mut self, completion_tokens: u32, now: Instant) {
        let new = completion_tokens.saturating_sub(self.tokens_seen);
        let Some(m) = &self.model else { return };
        if new == 0 {
            return;
        }
        match self.last_token_at {
            None => {
                m.ttft.observe(now.saturating_duration_since(self.arrived).as_secs_f64());
                m.prompt_tokens.inc_by(u64::from(self.prompt_tokens));
                self.prompt_counted = self.prompt_tokens;
            }
            Some(last) => {
                // A delta may carry several tokens (held back for UTF-8 or a stop string):
                // spread the gap over them, one observation per token, as vLLM's per-step ITL.
                let gap = now.saturating_duration_since(last).as_secs_f64() / f64::from(new);
                for _ in 0..new {
                    m.itl.observe(gap);
                }
            }
        }
        m.generation_tokens.inc_by(u64::from(new));
        self.tokens_seen = completion_tokens;
        self.last_token_at = Some(now);
    }

    /// The request ended normally.
    pub fn finished(&mut self, reason: FinishReason, usage: &Usage, queued: Duration) {
        let now = Instant::now();
        self.tokens_at(usage.completion_tokens, now);
        self.done = true;
        let Some(m) = &self.model else { return };
        // Nothing generated: the prompt was still processed. Or the count known at submission
        // was short of the final one.
        let prompt = usage.prompt_tokens.max(self.prompt_tokens);
        m.prompt_tokens.inc_by(u64::from(prompt.saturating_sub(self.prompt_counted)));
        self.prompt_counted = prompt;
        m.finished(reason.as_str());
        m.e2e.observe(now.saturating_duration_since(self.arrived).as_secs_f64());
        m.queue.observe(queued.as_secs_f64());
        m.prompt_len.observe(f64::from(usage.prompt_tokens));
        m.generation_len.observe(f64::from(usage.completion_tokens));
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        if !self.done {
            if let Some(m) = &self.model {
                m.finished("abort");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_vllms_1_2_5_steps() {
        assert_eq!(buckets_1_2_5(100), vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
        assert_eq!(buckets_1_2_5(8192).last().copied(), Some(5000.0));
        assert_eq!(buckets_1_2_5(1), vec![1.0]);
        assert!(!buckets_1_2_5(u64::MAX).is_empty());
    }

    #[test]
    fn latency_buckets_are_sorted() {
        for b in [&TTFT_BUCKETS[..], &ITL_BUCKETS[..], &REQUEST_LATENCY_BUCKETS[..]] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn a_timer_without_series_records_nothing_and_does_not_panic() {
        let mut t = RequestTimer::new(None, Instant::now(), 3);
        t.delta(1);
        t.finished(FinishReason::Stop, &Usage { prompt_tokens: 3, completion_tokens: 2, cached_tokens: 0 }, Duration::ZERO);
    }
}
