//! How much of the engine thread's time saving finished sequences' KV to the prefix cache's RAM
//! tier may take while other requests are running or waiting.
//!
//! A save copies a sequence's KV out of llama.cpp (`llama_state_seq_get_data_ext`: on a GPU one
//! device-to-host copy per layer and per K and V, each waited for) on the engine thread, between
//! two steps, and every running sequence waits for it. When many sequences finish in the same
//! step (a wave of equal requests), their saves add up to a stall. So saves run on credit: every
//! step earns [`SAVE_SHARE`] of its duration, a save spends what it took, and while the credit is
//! spent a finished sequence's prefix is not saved (it stays in the hot KV cache until its cells
//! are reused; `hearth_prefix_cache_saves_skipped_total` counts it). With nothing else running or
//! waiting, a save never waits: one request at a time (a chat, a RAG app) keeps every prefix.
//! Saving a preempted sequence's prefix is not budgeted: its own progress depends on it.

use std::time::Duration;

/// The share of busy engine time that saves may take.
pub(crate) const SAVE_SHARE: f64 = 0.05;
/// Most credit kept (so a long busy stretch cannot pay for a burst of saves later).
const MAX_CREDIT: Duration = Duration::from_millis(100);

/// The save credit of one engine thread.
#[derive(Debug, Default)]
pub(crate) struct SaveBudget {
    /// Nanoseconds of saving allowed now; negative after a save that cost more than there was.
    credit_ns: i64,
}

impl SaveBudget {
    /// A step of `took` was computed.
    pub(crate) fn earn(&mut self, took: Duration) {
        let earned = (took.as_nanos() as f64 * SAVE_SHARE) as i64;
        self.credit_ns = self.credit_ns.saturating_add(earned).min(MAX_CREDIT.as_nanos() as i64);
    }

    /// Whether a finished sequence's prefix may be saved now; `busy`: other sequences are running
    /// or waiting for the engine.
    pub(crate) fn allows(&self, busy: bool) -> bool {
        !busy || self.credit_ns > 0
    }

    /// A save took `took`.
    pub(crate) fn spend(&mut self, took: Duration) {
        self.credit_ns = self.credit_ns.saturating_sub(took.as_nanos().min(i64::MAX as u128) as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_idle_engine_always_saves() {
        let mut budget = SaveBudget::default();
        budget.spend(500 * MS);
        assert!(budget.allows(false));
        assert!(!budget.allows(true));
    }

    #[test]
    fn a_busy_engine_saves_on_credit_earned_from_its_steps() {
        let mut budget = SaveBudget::default();
        assert!(!budget.allows(true), "no credit before any step");
        budget.earn(100 * MS); // 5 ms of credit
        assert!(budget.allows(true));
        budget.spend(7 * MS); // a save that cost more than the credit
        assert!(!budget.allows(true));
        budget.earn(20 * MS); // +1 ms: still 1 ms short
        assert!(!budget.allows(true));
        budget.earn(40 * MS); // +2 ms
        assert!(budget.allows(true));
    }

    #[test]
    fn saves_take_at_most_the_share_of_busy_time_over_a_long_run() {
        let (mut budget, mut saved, mut busy) = (SaveBudget::default(), Duration::ZERO, Duration::ZERO);
        // 10,000 steps of 6 ms, each followed by as many 7 ms saves as the budget allows.
        for _ in 0..10_000 {
            budget.earn(6 * MS);
            busy += 6 * MS;
            while budget.allows(true) {
                budget.spend(7 * MS);
                saved += 7 * MS;
            }
        }
        let share = saved.as_secs_f64() / busy.as_secs_f64();
        assert!(share <= SAVE_SHARE + 7e-3 / busy.as_secs_f64() && share > SAVE_SHARE * 0.9, "share {share}");
    }

    #[test]
    fn credit_is_capped_so_a_long_stretch_cannot_pay_for_a_burst() {
        let mut budget = SaveBudget::default();
        budget.earn(Duration::from_secs(3600));
        let mut saves = 0;
        while budget.allows(true) {
            budget.spend(7 * MS);
            saves += 1;
        }
        assert_eq!(saves, MAX_CREDIT.as_millis().div_ceil(7) as usize);
    }
}
