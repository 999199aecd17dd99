//! What an engine thread publishes for the outside world: its heartbeat (for the systemd
//! watchdog and `/ready`), whether it still runs, and live counters (for `/metrics`). The engine
//! thread stores, anyone reads; atomics and a set-once cell, no locks, so reading never slows a
//! step.
//!
//! The heartbeat proves progress inside work, not only between jobs: the chat scheduler beats at
//! every step and after each llama.cpp batch of a step, the embedding engine after each batch.
//! The longest silence of a healthy engine is therefore one llama.cpp batch, which
//! `max_num_batched_tokens` bounds.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where a cached prefix was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheTier {
    /// Unused blocks still in llama.cpp's KV cache (shared, no copy).
    Hot,
    /// Host RAM (restored).
    Ram,
    /// A file (read, then restored).
    Disk,
}

/// A point-in-time view of an engine, in vLLM's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Sequences admitted and being computed.
    pub running: u64,
    /// Requests waiting for admission.
    pub waiting: u64,
    /// KV cache cells in use (tokens).
    pub kv_used_tokens: u64,
    /// KV cache capacity (tokens).
    pub kv_capacity_tokens: u64,
    /// Prompt tokens looked up in the prefix cache (counter).
    pub prefix_cache_queries: u64,
    /// Prompt tokens found in the prefix cache (counter).
    pub prefix_cache_hits: u64,
    /// The prefix cache by tier: the KV cache itself (hot), host RAM, disk.
    pub prefix_tiers: PrefixTierStats,
    /// Sequences preempted to free KV cells (counter).
    pub preemptions: u64,
    /// Sequences cancelled because their client took no event for the stall timeout (counter).
    pub stalled: u64,
    /// Engine steps that computed a batch (counter).
    pub steps: u64,
    /// Tokens in those batches: decode tokens plus prefill tokens (counter).
    pub batch_tokens: u64,
    /// Time in each phase of those steps, nanoseconds (counters): admission, planning and batch
    /// building; llama.cpp's decode including the wait for the device; sampling (with registering
    /// newly full blocks in the prefix cache); detokenizing and queueing events for clients.
    pub schedule_ns: u64,
    /// See `schedule_ns`.
    pub decode_ns: u64,
    /// See `schedule_ns`.
    pub sample_ns: u64,
    /// See `schedule_ns`.
    pub emit_ns: u64,
}

/// The prefix cache's tiers: where admitted prompts found their cached prefix, and what each tier
/// holds. Counters count admissions (a preempted sequence's readmission is not counted again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixTierStats {
    /// Admissions that shared a prefix kept in the KV cache (counter).
    pub hot_hits: u64,
    /// Admissions whose prefix was restored from host RAM (counter).
    pub ram_hits: u64,
    /// Admissions whose prefix was restored from a file (counter).
    pub disk_hits: u64,
    /// Admissions with no cached prefix of a block or more anywhere (counter).
    pub misses: u64,
    /// Restores tried from host RAM (counter); `ram_restores - ram_hits` failed.
    pub ram_restores: u64,
    /// Restores tried from disk (counter); `disk_restores - disk_hits` failed (a missing, corrupt
    /// or refused file).
    pub disk_restores: u64,
    /// Finished sequences whose prefix was saved to the tiers (counter).
    pub saves: u64,
    /// Finished sequences whose prefix was not saved because saving had used its share of a busy
    /// engine's time (counter).
    pub saves_skipped: u64,
    /// Time the engine thread spent saving prefixes, in nanoseconds (counter).
    pub save_ns: u64,
    /// Bytes of KV in unused cached blocks of the KV cache (gauge).
    pub hot_bytes: u64,
    /// Bytes of saved prefixes in host RAM (gauge).
    pub ram_bytes: u64,
    /// Bytes of saved prefixes on disk (gauge).
    pub disk_bytes: u64,
}

/// Where one step's time went.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StepPhases {
    pub schedule: Duration,
    pub decode: Duration,
    pub sample: Duration,
    pub emit: Duration,
}

/// Shared between an engine thread (writer) and its handles (readers).
#[derive(Debug)]
pub(crate) struct Telemetry {
    origin: Instant,
    heartbeat_ms: AtomicU64,
    /// Why the engine thread ended, once it has.
    stopped: OnceLock<String>,
    running: AtomicU64,
    waiting: AtomicU64,
    kv_used: AtomicU64,
    kv_capacity: AtomicU64,
    prefix_queries: AtomicU64,
    prefix_hits: AtomicU64,
    /// Hits by tier (hot, RAM, disk), misses, restores (RAM, disk), saves, skipped saves.
    tier_counts: [AtomicU64; 8],
    save_ns: AtomicU64,
    /// Bytes by tier (hot, RAM, disk).
    tier_bytes: [AtomicU64; 3],
    preemptions: AtomicU64,
    stalled: AtomicU64,
    steps: AtomicU64,
    batch_tokens: AtomicU64,
    phase_ns: [AtomicU64; 4],
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            stopped: OnceLock::new(),
            running: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            kv_used: AtomicU64::new(0),
            kv_capacity: AtomicU64::new(0),
            prefix_queries: AtomicU64::new(0),
            prefix_hits: AtomicU64::new(0),
            tier_counts: Default::default(),
            save_ns: AtomicU64::new(0),
            tier_bytes: Default::default(),
            preemptions: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            batch_tokens: AtomicU64::new(0),
            phase_ns: Default::default(),
        }
    }
}

impl Telemetry {
    /// The engine loop went round.
    pub(crate) fn beat(&self) {
        self.heartbeat_ms.store(self.origin.elapsed().as_millis() as u64, Relaxed);
    }

    /// Time since the last beat.
    pub(crate) fn heartbeat_age(&self) -> Duration {
        self.origin.elapsed().saturating_sub(Duration::from_millis(self.heartbeat_ms.load(Relaxed)))
    }

    /// The engine thread has ended, for `reason`; the first reason stays.
    pub(crate) fn thread_stopped(&self, reason: String) {
        let _ = self.stopped.set(reason);
    }

    /// Why the engine thread ended, if it has.
    pub(crate) fn stop_reason(&self) -> Option<&str> {
        self.stopped.get().map(String::as_str)
    }

    /// Gauges, stored once per step.
    pub(crate) fn publish(&self, running: usize, waiting: usize, kv_used: usize, kv_capacity: usize) {
        self.running.store(running as u64, Relaxed);
        self.waiting.store(waiting as u64, Relaxed);
        self.kv_used.store(kv_used as u64, Relaxed);
        self.kv_capacity.store(kv_capacity as u64, Relaxed);
    }

    /// A prefix-cache lookup of `queried` prompt tokens found `hit` of them.
    pub(crate) fn prefix_lookup(&self, queried: usize, hit: usize) {
        self.prefix_queries.fetch_add(queried as u64, Relaxed);
        self.prefix_hits.fetch_add(hit as u64, Relaxed);
    }

    /// An admission's prefix came from `from` (`None`: nowhere).
    pub(crate) fn tier_hit(&self, from: Option<CacheTier>) {
        let i = match from {
            Some(CacheTier::Hot) => 0,
            Some(CacheTier::Ram) => 1,
            Some(CacheTier::Disk) => 2,
            None => 3,
        };
        self.tier_counts[i].fetch_add(1, Relaxed);
    }

    /// A restore from `from` (RAM or disk) was tried.
    pub(crate) fn tier_restore(&self, from: CacheTier) {
        let i = if from == CacheTier::Disk { 5 } else { 4 };
        self.tier_counts[i].fetch_add(1, Relaxed);
    }

    /// A finished sequence's prefix was saved, in `took`.
    pub(crate) fn tier_saved(&self, took: Duration) {
        self.tier_counts[6].fetch_add(1, Relaxed);
        self.save_ns.fetch_add(took.as_nanos() as u64, Relaxed);
    }

    /// A finished sequence's prefix was not saved: the save budget was spent.
    pub(crate) fn tier_save_skipped(&self) {
        self.tier_counts[7].fetch_add(1, Relaxed);
    }

    /// What each tier holds now, in bytes.
    pub(crate) fn tier_bytes(&self, hot: u64, ram: u64, disk: u64) {
        for (gauge, v) in self.tier_bytes.iter().zip([hot, ram, disk]) {
            gauge.store(v, Relaxed);
        }
    }

    /// A sequence was preempted.
    pub(crate) fn preempted(&self) {
        self.preemptions.fetch_add(1, Relaxed);
    }

    /// A sequence was cancelled because its client stopped reading.
    pub(crate) fn stalled(&self) {
        self.stalled.fetch_add(1, Relaxed);
    }

    /// A step computed `batch_tokens` tokens and spent `phases`.
    pub(crate) fn step_done(&self, batch_tokens: u64, phases: StepPhases) {
        self.steps.fetch_add(1, Relaxed);
        self.batch_tokens.fetch_add(batch_tokens, Relaxed);
        for (counter, d) in self.phase_ns.iter().zip([phases.schedule, phases.decode, phases.sample, phases.emit]) {
            counter.fetch_add(d.as_nanos() as u64, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> EngineStats {
        EngineStats {
            running: self.running.load(Relaxed),
            waiting: self.waiting.load(Relaxed),
            kv_used_tokens: self.kv_used.load(Relaxed),
            kv_capacity_tokens: self.kv_capacity.load(Relaxed),
            prefix_cache_queries: self.prefix_queries.load(Relaxed),
            prefix_cache_hits: self.prefix_hits.load(Relaxed),
            prefix_tiers: {
                let c = |i: usize| self.tier_counts[i].load(Relaxed);
                let b = |i: usize| self.tier_bytes[i].load(Relaxed);
                PrefixTierStats {
                    hot_hits: c(0),
                    ram_hits: c(1),
                    disk_hits: c(2),
                    misses: c(3),
                    ram_restores: c(4),
                    disk_restores: c(5),
                    saves: c(6),
                    saves_skipped: c(7),
                    save_ns: self.save_ns.load(Relaxed),
                    hot_bytes: b(0),
                    ram_bytes: b(1),
                    disk_bytes: b(2),
                }
            },
            preemptions: self.preemptions.load(Relaxed),
            stalled: self.stalled.load(Relaxed),
            steps: self.steps.load(Relaxed),
            batch_tokens: self.batch_tokens.load(Relaxed),
            schedule_ns: self.phase_ns[0].load(Relaxed),
            decode_ns: self.phase_ns[1].load(Relaxed),
            sample_ns: self.phase_ns[2].load(Relaxed),
            emit_ns: self.phase_ns[3].load(Relaxed),
        }
    }
}
