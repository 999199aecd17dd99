//! `hearth bench`: load-test any OpenAI-compatible endpoint (hearth, vLLM, llama.cpp's server)
//! and check it against service-level objectives, as GuideLLM does, without a Python stack.
//!
//! A run is a list of load profiles ([`profile`]) each bounded by `--max-seconds` and/or
//! `--max-requests`, fed by synthetic or file prompts ([`data`]), once the target has loaded its
//! models ([`ready`]). Every request streams; the
//! [`client`] turns the stream into one record with its token timings and inter-token gaps; [`run`]
//! drives a profile and [`stats`] summarizes it (TTFT, ITL per request and over every gap pooled,
//! TPOT, end-to-end latency, rates, errors by kind).
//! [`slo`] checks each summary against `--slo` limits and finds the highest rate that meets them;
//! [`economics`] adds cost per million output tokens and the target's GPU utilization. [`report`]
//! prints the tables and writes `--json` (every raw record), [`plot`] writes `--report` (HTML with
//! SVG charts), and [`compare`] lays two JSON reports side by side.
//!
//! Exit status: 0 when the run finished and every objective held; 3 when an objective failed (for
//! a sweep: when no rate met them all); 1 when the run could not be made (target unreachable,
//! unreadable files); 2 for usage errors.

mod client;
mod compare;
mod data;
mod economics;
mod plot;
mod profile;
mod ready;
mod report;
mod run;
mod slo;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use client::Client;
use data::{DataSpec, Dataset};
use profile::Profile;
use report::{ProfileReport, Report};
use run::{Limits, ProfileRun};
use slo::Slo;

use crate::target::{Target, TargetArgs};

/// Exit status when an objective fails.
const SLO_FAILED: u8 = 3;
/// Most distinct prompts prepared for a run.
const MAX_PROMPTS: u64 = 2048;

/// Everything that stops a run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The target could not be used.
    #[error("{0}")]
    Http(String),
    /// The data set or a report is malformed.
    #[error("{0}")]
    Data(String),
    /// The SLO file is malformed.
    #[error("SLO file {0}")]
    Slo(String),
    /// A chart could not be drawn.
    #[error("could not draw a chart: {0}")]
    Plot(String),
    /// The arguments do not make a run.
    #[error("{0}")]
    Usage(String),
}

/// Which OpenAI API to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completions,
}

impl Endpoint {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
        }
    }
}

/// `hearth bench`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// `compare A.json B.json`; without it, run a benchmark.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// The benchmark's options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands of `hearth bench`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Show two `--json` reports side by side with B/A ratios.
    Compare {
        /// The baseline report.
        a: PathBuf,
        /// The report to compare with it.
        b: PathBuf,
    },
}

/// Options of a benchmark run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The server (`--target`) and its bearer token (`--api-key`).
    #[command(flatten)]
    pub target: TargetArgs,
    /// The model to request; default: the first one `/v1/models` lists.
    #[arg(long)]
    pub model: Option<String>,
    /// Which API to drive.
    #[arg(long, value_enum, default_value_t = Endpoint::Chat)]
    pub endpoint: Endpoint,
    /// Load profiles, run in order (repeat or separate with commas): synchronous, throughput,
    /// concurrent:N, constant:RATE, poisson:RATE, sweep[:N].
    #[arg(long = "profile", value_delimiter = ',', default_value = "synchronous")]
    pub profiles: Vec<Profile>,
    /// Stop each profile after this many seconds (default 30 when --max-requests is not given).
    #[arg(long)]
    pub max_seconds: Option<f64>,
    /// Stop each profile after this many requests.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Requests in flight at most; the stream count of `throughput`.
    #[arg(long, default_value_t = 64)]
    pub max_concurrency: usize,
    /// `synthetic:prompt_tokens=N,output_tokens=M[,prefix_tokens=P]` or a JSONL file of prompts.
    #[arg(long, default_value = "synthetic:prompt_tokens=128,output_tokens=64")]
    pub data: DataSpec,
    /// Seed of synthetic prompts and Poisson arrivals.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// A TOML file of objectives (`ttft_p95_ms = 500`, `itl_p95_ms = 50`, `itl_gap_p99_ms = 200`,
    /// `error_rate = 0.001`).
    #[arg(long)]
    pub slo: Option<PathBuf>,
    /// Write every request record and the summaries to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an HTML report with charts to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The GPU's price per hour, for cost per million output tokens.
    #[arg(long)]
    pub gpu_cost_per_hour: Option<f64>,
    /// Where to read GPU utilization (Prometheus text); default: the target's `/metrics`.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Do not read the target's `/metrics`.
    #[arg(long)]
    pub no_metrics: bool,
    /// Sampling temperature for every request (0: greedy); default: the server's own.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Seconds before one request is abandoned as a timeout.
    #[arg(long, default_value_t = 600.0)]
    pub request_timeout: f64,
    /// Seconds to wait, before the first profile, for a target that answers 503 while it loads its
    /// models (0: do not wait).
    #[arg(long, default_value_t = 120.0)]
    pub wait_ready: f64,
}

/// Run `hearth bench`; returns the process exit status.
pub fn main(args: BenchArgs) -> ExitCode {
    let result = match args.command {
        Some(BenchCommand::Compare { a, b }) => compare::run(&a, &b).map(|table| {
            print!("{table}");
            ExitCode::SUCCESS
        }),
        None => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| BenchError::Usage(format!("could not start the async runtime: {e}")))
            .and_then(|rt| rt.block_on(execute(args.run))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hearth bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The model to use, once the target has loaded its models: the one given, or the first the
/// target lists.
async fn pick_model(args: &RunArgs, http: &reqwest::Client, target: &Target) -> Result<String, BenchError> {
    let wait = Duration::from_secs_f64(args.wait_ready);
    let (status, models) = ready::models_when_ready(http, target, wait).await?;
    if let Some(model) = &args.model {
        return Ok(model.clone());
    }
    let url = target.url("/v1/models");
    let body = models.ok_or_else(|| BenchError::Http(format!("{url} answered {status} without JSON; pass --model")))?;
    body.pointer("/data/0/id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Http(format!("{url} ({status}) lists no model; pass --model")))
}

/// The profile list expanded for counting prompts: a sweep counts as its parts.
fn request_budget(args: &RunArgs) -> u64 {
    let profiles: u64 = args.profiles.iter().map(|p| if let Profile::Sweep(n) = p { *n as u64 } else { 1 }).sum();
    args.max_requests.map_or(MAX_PROMPTS, |m| m.saturating_mul(profiles)).clamp(1, MAX_PROMPTS)
}

fn check(args: &RunArgs) -> Result<Limits, BenchError> {
    let max_duration = match (args.max_seconds, args.max_requests) {
        (Some(s), _) if !(s.is_finite() && s > 0.0) => return Err(BenchError::Usage(format!("--max-seconds must be positive, got {s}"))),
        (Some(s), _) => Some(Duration::from_secs_f64(s)),
        (None, None) => Some(Duration::from_secs(30)),
        (None, Some(_)) => None,
    };
    if args.max_requests == Some(0) {
        return Err(BenchError::Usage("--max-requests must be at least 1".into()));
    }
    if args.max_concurrency == 0 {
        return Err(BenchError::Usage("--max-concurrency must be at least 1".into()));
    }
    if !(args.request_timeout.is_finite() && args.request_timeout > 0.0) {
        return Err(BenchError::Usage("--request-timeout must be positive".into()));
    }
    if !(args.wait_ready.is_finite() && args.wait_ready >= 0.0) {
        return Err(BenchError::Usage("--wait-ready must be a non-negative number of seconds".into()));
    }
    if args.gpu_cost_per_hour.is_some_and(|c| !(c.is_finite() && c >= 0.0)) {
        return Err(BenchError::Usage("--gpu-cost-per-hour must be a non-negative number".into()));
    }
    Ok(Limits { max_requests: args.max_requests, max_duration, max_concurrency: args.max_concurrency })
}

/// Everything a profile needs besides itself.
struct Runner<'a> {
    args: &'a RunArgs,
    client: Client,
    data: Arc<Dataset>,
    limits: Limits,
    progress: ProgressBar,
    next_index: u64,
}

impl Runner<'_> {
    async fn run(&mut self, profile: Profile) -> ProfileRun {
        let sampler = (!self.args.no_metrics).then(|| {
            let url = self.args.metrics_url.clone().unwrap_or_else(|| format!("{}/metrics", self.client.base()));
            economics::Sampler::start(self.client.http().clone(), url)
        });
        let seed = self.args.seed.wrapping_add(self.next_index);
        let mut run = run::run_profile(&self.client, self.data.clone(), profile, self.limits, seed, self.next_index, &self.progress).await;
        self.next_index += run.records.len() as u64;
        run.summary.gpu_utilization = sampler.and_then(economics::Sampler::stop);
        run.summary.cost_per_million_output_tokens = self.args.gpu_cost_per_hour.and_then(|c| economics::cost_per_million(c, run.summary.output_tokens_per_s));
        let s = &run.summary;
        self.progress.println(format!(
            "{}: {} ok, {} errors, {} cancelled in {:.1} s; {:.2} req/s, {:.1} output tok/s, TTFT p50 {} ms, ITL p50 {} ms, gap p99 {} ms",
            s.profile,
            s.completed,
            s.errored,
            s.cancelled,
            s.duration_s,
            s.requests_per_s,
            s.output_tokens_per_s,
            s.ttft_ms.map_or("-".into(), |d| format!("{:.1}", d.p50)),
            s.itl_ms.map_or("-".into(), |d| format!("{:.1}", d.p50)),
            s.itl_gap_ms.map_or("-".into(), |d| format!("{:.1}", d.p99)),
        ));
        run
    }
}

async fn execute(args: RunArgs) -> Result<ExitCode, BenchError> {
    let limits = check(&args)?;
    let slo = args.slo.as_deref().map(Slo::load).transpose()?;
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let target = Target::new(&args.target);
    let probe = Client::new(&target, args.endpoint, String::new(), Duration::from_secs(30))?;
    let model = pick_model(&args, probe.http(), &target).await?;
    let client = Client::new(&target, args.endpoint, model.clone(), Duration::from_secs_f64(args.request_timeout))?
        .with_temperature(args.temperature);
    let data = Arc::new(Dataset::build(&args.data, request_budget(&args).try_into().unwrap_or(usize::MAX), args.seed, &client).await?);
    let progress = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}") {
        progress.set_style(style);
    }
    progress.enable_steady_tick(Duration::from_millis(200));
    let mut runner = Runner { args: &args, client, data: data.clone(), limits, progress: progress.clone(), next_index: 0 };
    let mut profiles: Vec<(ProfileRun, bool)> = Vec::new();
    for &profile in &args.profiles {
        match profile {
            Profile::Sweep(total) => {
                let sync = runner.run(Profile::Synchronous).await;
                let most = runner.run(Profile::Throughput).await;
                let rates = profile::sweep_rates(sync.summary.requests_per_s, most.summary.requests_per_s, total);
                profiles.push((sync, true));
                profiles.push((most, true));
                for rate in rates {
                    let run = runner.run(Profile::Constant(rate)).await;
                    profiles.push((run, true));
                }
            }
            single => {
                let run = runner.run(single).await;
                profiles.push((run, false));
            }
        }
    }
    progress.finish_and_clear();

    let verdicts: Vec<Vec<slo::Verdict>> = profiles.iter().map(|(run, _)| slo.as_ref().map_or_else(Vec::new, |s| s.check(&run.summary))).collect();
    let passes = |v: &[slo::Verdict]| v.iter().all(|v| v.pass);
    let highest = slo.as_ref().and_then(|_| slo::highest_sustainable_rate(profiles.iter().zip(&verdicts).map(|((run, _), v)| (&run.summary, v.as_slice()))));
    let singles_pass = profiles.iter().zip(&verdicts).filter(|((_, sweep), _)| !sweep).all(|(_, v)| passes(v));
    let sweep_parts: Vec<&Vec<slo::Verdict>> = profiles.iter().zip(&verdicts).filter(|((_, sweep), _)| *sweep).map(|(_, v)| v).collect();
    let sweep_pass = sweep_parts.is_empty() || sweep_parts.iter().any(|v| passes(v));
    let slo_passed = slo.as_ref().map(|_| singles_pass && sweep_pass);

    let report = Report {
        format_version: report::FORMAT_VERSION,
        hearth_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_unix,
        target: runner.client.base().to_owned(),
        model,
        endpoint: format!("{:?}", args.endpoint).to_lowercase(),
        data: data_label(&args.data),
        token_counting: data.token_counting.clone(),
        gpu_cost_per_hour: args.gpu_cost_per_hour,
        slo,
        highest_sustainable_rate: highest,
        slo_passed,
        profiles: profiles.into_iter().zip(verdicts).map(|((run, _), verdicts)| ProfileReport { summary: run.summary, verdicts, records: run.records }).collect(),
    };
    print!("{}", report.render());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.report {
        plot::write_html(&report, path)?;
    }
    Ok(if slo_passed == Some(false) { ExitCode::from(SLO_FAILED) } else { ExitCode::SUCCESS })
}

fn data_label(spec: &DataSpec) -> String {
    match spec {
        DataSpec::Synthetic(s) => format!("synthetic:prompt_tokens={},output_tokens={},prefix_tokens={}", s.prompt_tokens, s.output_tokens, s.prefix_tokens),
        DataSpec::File(path) => path.display().to_string(),
    }
}
