//! Running one load profile: issuing requests, bounding the run, collecting records.
//!
//! Closed-loop profiles (`synchronous`, `throughput`, `concurrent:N`) run N tasks that each send
//! the next request when their last one ends. Open-loop profiles (`constant`, `poisson`) run one
//! dispatcher that sleeps until each scheduled time, takes a slot out of a semaphore of
//! `--max-concurrency` permits, and spawns the request. A profile ends when `--max-requests` have
//! been sent and answered, or at `--max-seconds`: then nothing new is sent and requests still in
//! flight are dropped (their connection closes, so the server stops generating) and recorded as
//! cancelled. The inter-token gaps of successful requests are pooled into one histogram per
//! profile as each request ends, so memory does not grow with the run. Requests take consecutive indices into the data set across profiles, so a sweep
//! never replays a prompt a prefix cache has already seen (until the data set wraps around).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::client::{Client, Outcome, RequestRecord};
use super::data::Dataset;
use super::profile::{Mode, Profile, Schedule};
use super::stats::{Gaps, Summary};

/// What bounds each profile.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests per profile.
    pub max_requests: Option<u64>,
    /// Wall time per profile.
    pub max_duration: Option<Duration>,
    /// Requests in flight at most (the stream count of `throughput`).
    pub max_concurrency: usize,
}

/// One profile's records and summary.
#[derive(Debug)]
pub struct ProfileRun {
    /// Every request.
    pub records: Vec<RequestRecord>,
    /// The summary of the records.
    pub summary: Summary,
}

/// Shared state of a running profile.
struct Shared {
    client: Client,
    data: Arc<Dataset>,
    epoch: Instant,
    deadline: Option<Instant>,
    first_index: u64,
    records: Mutex<Vec<RequestRecord>>,
    /// Inter-token gaps of the successful requests.
    gaps: Mutex<Gaps>,
    live: Mutex<Live>,
    progress: ProgressBar,
    name: String,
}

/// Running totals for the progress line.
#[derive(Default)]
struct Live {
    done: u64,
    errors: u64,
    tokens: u64,
    ttft_sum_ms: f64,
    ttft_n: u64,
}

impl Shared {
    /// Send request `i` of this profile, cut off at the deadline, and keep its record.
    async fn request(&self, i: u64, scheduled_s: f64) {
        let index = self.first_index + i;
        let prompt = self.data.get(index);
        let send = self.client.send(index, prompt, self.epoch, scheduled_s);
        let (record, gaps) = match self.deadline {
            None => send.await,
            Some(deadline) => {
                let start_s = self.epoch.elapsed().as_secs_f64();
                tokio::select! {
                    sent = send => sent,
                    () = tokio::time::sleep_until(deadline.into()) => (RequestRecord {
                        index,
                        scheduled_s,
                        start_s,
                        end_s: self.epoch.elapsed().as_secs_f64(),
                        first_token_s: None,
                        last_token_s: None,
                        prompt_tokens: prompt.prompt_tokens,
                        output_tokens: 0,
                        max_gap_ms: None,
                        outcome: Outcome::Cancelled,
                    }, Vec::new()),
                }
            }
        };
        if record.outcome == Outcome::Ok {
            self.gaps.lock().unwrap_or_else(PoisonError::into_inner).record(&gaps);
        }
        self.note(&record);
        self.records.lock().unwrap_or_else(PoisonError::into_inner).push(record);
    }

    fn note(&self, record: &RequestRecord) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        match record.outcome {
            Outcome::Ok => {
                live.done += 1;
                live.tokens += record.output_tokens;
                if let Some(t) = record.ttft_ms() {
                    live.ttft_sum_ms += t;
                    live.ttft_n += 1;
                }
            }
            Outcome::Error { .. } => live.errors += 1,
            Outcome::Cancelled => {}
        }
        let secs = self.epoch.elapsed().as_secs_f64().max(1e-3);
        let ttft = if live.ttft_n > 0 { live.ttft_sum_ms / live.ttft_n as f64 } else { 0.0 };
        self.progress.set_message(format!(
            "{} │ {} done, {} errors │ {:.2} req/s │ {:.1} out tok/s │ TTFT mean {:.0} ms",
            self.name,
            live.done,
            live.errors,
            live.done as f64 / secs,
            live.tokens as f64 / secs,
            ttft
        ));
    }

    /// Whether the profile may still send (its deadline, if any, has not passed).
    fn open(&self) -> bool {
        self.deadline.is_none_or(|d| Instant::now() < d)
    }
}

/// Run one (non-sweep) profile. `first_index` is the data set position of its first request.
pub async fn run_profile(client: &Client, data: Arc<Dataset>, profile: Profile, limits: Limits, seed: u64, first_index: u64, progress: &ProgressBar) -> ProfileRun {
    let epoch = Instant::now();
    let shared = Arc::new(Shared {
        client: client.clone(),
        data,
        epoch,
        deadline: limits.max_duration.map(|d| epoch + d),
        first_index,
        records: Mutex::new(Vec::new()),
        gaps: Mutex::new(Gaps::default()),
        live: Mutex::new(Live::default()),
        progress: progress.clone(),
        name: profile.to_string(),
    });
    let max = limits.max_requests.unwrap_or(u64::MAX);
    let mut tasks = JoinSet::new();
    match profile.mode(limits.max_concurrency) {
        Mode::Streams(n) => {
            let next = Arc::new(AtomicU64::new(0));
            for _ in 0..n.min(usize::try_from(max).unwrap_or(usize::MAX)) {
                let (shared, next) = (shared.clone(), next.clone());
                tasks.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= max || !shared.open() {
                            break;
                        }
                        let scheduled = shared.epoch.elapsed().as_secs_f64();
                        shared.request(i, scheduled).await;
                    }
                });
            }
        }
        Mode::Scheduled(profile, _) => {
            let slots = Arc::new(Semaphore::new(limits.max_concurrency.max(1)));
            let schedule = Schedule::new(profile, seed).into_iter().flatten();
            for (i, at) in (0..max).zip(schedule) {
                let when = epoch + Duration::from_secs_f64(at);
                if shared.deadline.is_some_and(|d| when >= d) {
                    break;
                }
                tokio::time::sleep_until(when.into()).await;
                let permit = match shared.deadline {
                    None => slots.clone().acquire_owned().await.ok(),
                    Some(d) => tokio::select! {
                        permit = slots.clone().acquire_owned() => permit.ok(),
                        () = tokio::time::sleep_until(d.into()) => None,
                    },
                };
                let Some(permit) = permit else { break };
                let shared = shared.clone();
                tasks.spawn(async move {
                    shared.request(i, at).await;
                    drop(permit);
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let mut records = std::mem::take(&mut *shared.records.lock().unwrap_or_else(PoisonError::into_inner));
    records.sort_by_key(|r| r.index);
    let gaps = std::mem::take(&mut *shared.gaps.lock().unwrap_or_else(PoisonError::into_inner));
    let summary = Summary::of(&profile.to_string(), profile.target_rate(), &records, &gaps);
    ProfileRun { records, summary }
}
