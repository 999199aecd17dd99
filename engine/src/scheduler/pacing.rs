//! Prefill pacing: chunked prefill sized in time instead of tokens (Sarathi-Serve's stall-free
//! batching, with its token budget learned from the steps themselves).
//!
//! A step that prefills makes every decoding sequence wait for it. With a limit `s`
//! (`max_decode_slowdown`: the longest a step may take, as a multiple of a step of decode tokens
//! alone), a step's prefill tokens are cut to what fits in `(s − 1)` decode steps' time. Running
//! estimates, exponential moving averages of measured steps, give that number: the time of a
//! decode-only step for each number of decoding sequences (on a CPU it grows with them), and the
//! marginal time of one prefill token (a mixed step's time less a decode step's, per prefill token;
//! a prefill-only step's time per token). They follow the context's growth and a busy machine; the
//! decode step's estimate leans to its fast samples. The step time they learn from leaves out
//! saving finished prefixes to the RAM and disk tiers (host work the save budget bounds, up to
//! tens of milliseconds a save on a GPU): charged to a step's few prefill tokens, one save would
//! multiply the per-token estimate and starve the prefill of the steps after it.
//!
//! A decode step is only measured when a step does not prefill, which a steady flow of prompts
//! would never allow: when there is no estimate for the sequences decoding now (or for fewer of
//! them), or every `PROBE_INTERVAL` paced steps, the pacer asks for a step with no prefill at all
//! (a probe). Otherwise, until the token cost is known a step prefills at most `first_guess`
//! tokens, and a paced step prefills at least one token, so a prompt always makes progress. Steps
//! without decoding sequences are never paced.

/// Weight of the newest measurement in the per-token moving average.
const SMOOTHING: f64 = 0.2;
/// Weights of a faster and of a slower decode-only step: the estimate follows the fast ones
/// quickly and a busy moment slowly, since it is re-measured only by probes while prompts are
/// read, and a high estimate there would let prefill stall streams longer.
const DECODE_FASTER: f64 = 0.5;
const DECODE_SLOWER: f64 = 0.05;
/// Paced steps between two probes (decode-only steps asked for to re-measure a decode step).
const PROBE_INTERVAL: u32 = 32;
/// Lower bound of the per-token estimate, so that a step measured as free does not unbound the budget.
const MIN_TOKEN_SECONDS: f64 = 1e-7;
/// Added before rounding the budget down, so that a quotient that is whole but for float error
/// (4.999…) is not cut a token short.
const ROUNDING_SLACK: f64 = 1e-6;

/// Learns step costs and sizes the prefill of steps that also decode.
#[derive(Debug, Clone)]
pub(super) struct PrefillPacer {
    /// `max_decode_slowdown`; 0 means pacing is off.
    slowdown: f64,
    /// Seconds of a step with decode tokens only, by the number of decoding sequences.
    decode_step: Vec<Option<f64>>,
    /// Marginal seconds of one prefill token.
    prefill_token: Option<f64>,
    /// Paced steps since the last decode-only step.
    since_probe: u32,
}

impl PrefillPacer {
    pub(super) fn new(slowdown: f32) -> Self {
        Self { slowdown: f64::from(slowdown), decode_step: Vec::new(), prefill_token: None, since_probe: 0 }
    }

    fn enabled(&self) -> bool {
        self.slowdown >= 1.0
    }

    /// The decode-only step time for `decoding` sequences: measured for that many, else for the
    /// most that were measured below it (a step of fewer sequences is no longer, so the budget
    /// errs small).
    fn decode_step_for(&self, decoding: usize) -> Option<f64> {
        self.decode_step.iter().take(decoding + 1).rev().find_map(|&step| step)
    }

    /// Prefill tokens a step with `decoding` decode tokens may add, out of `budget` (what
    /// `max_num_batched_tokens` leaves); `first_guess` while the token cost is not yet known; 0
    /// for a probe.
    pub(super) fn prefill_budget(&self, decoding: usize, budget: usize, first_guess: usize) -> usize {
        if !self.enabled() || decoding == 0 || budget == 0 {
            return budget;
        }
        let Some(step) = self.decode_step_for(decoding) else { return 0 };
        if self.since_probe >= PROBE_INTERVAL {
            return 0;
        }
        let tokens = match self.prefill_token {
            Some(token) => ((self.slowdown - 1.0) * step / token + ROUNDING_SLACK).floor() as usize,
            None => first_guess,
        };
        tokens.clamp(1, budget)
    }

    /// Learn from a finished step that computed `decoding` decode tokens and `prefilled` prompt
    /// tokens in `seconds`.
    pub(super) fn record(&mut self, decoding: usize, prefilled: usize, seconds: f64) {
        if !self.enabled() || !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        let token = match (decoding, prefilled) {
            (0, 0) => return,
            (_, 0) => {
                if self.decode_step.len() <= decoding {
                    self.decode_step.resize(decoding + 1, None);
                }
                let estimate = &mut self.decode_step[decoding];
                let weight = if estimate.is_some_and(|d| seconds < d) { DECODE_FASTER } else { DECODE_SLOWER };
                *estimate = Some(smoothed(*estimate, seconds, weight));
                self.since_probe = 0;
                return;
            }
            (0, n) => seconds / n as f64,
            (d, n) => {
                self.since_probe += 1;
                match self.decode_step_for(d) {
                    Some(step) => (seconds - step).max(0.0) / n as f64,
                    None => return,
                }
            }
        };
        self.prefill_token = Some(smoothed(self.prefill_token, token.max(MIN_TOKEN_SECONDS), SMOOTHING));
    }
}

fn smoothed(average: Option<f64>, sample: f64, weight: f64) -> f64 {
    match average {
        Some(a) => a + weight * (sample - a),
        None => sample,
    }
}

#[cfg(test)]
mod tests {
    use super::PrefillPacer;

    /// A machine where a decode-only step takes `step` seconds and each prefill token `token` more.
    fn trained(slowdown: f32, step: f64, token: f64) -> PrefillPacer {
        let mut pacer = PrefillPacer::new(slowdown);
        for _ in 0..50 {
            pacer.record(4, 0, step);
            pacer.record(4, 10, step + 10.0 * token);
        }
        pacer
    }

    #[test]
    fn off_or_without_decoding_sequences_the_token_budget_is_all_there_is() {
        let off = trained(0.0, 0.045, 0.009);
        assert_eq!(off.prefill_budget(4, 508, 16), 508);
        let on = trained(2.0, 0.045, 0.009);
        assert_eq!(on.prefill_budget(0, 512, 16), 512);
    }

    #[test]
    fn a_paced_step_prefills_what_fits_in_the_allowed_slowdown() {
        // 45 ms decode steps, 9 ms a prefill token: a 2x step has room for 5 tokens, a 3x one for 10.
        assert_eq!(trained(2.0, 0.045, 0.009).prefill_budget(4, 508, 16), 5);
        assert_eq!(trained(3.0, 0.045, 0.009).prefill_budget(4, 508, 16), 10);
        // Never more than the token budget, never less than one token.
        assert_eq!(trained(2.0, 0.045, 0.00001).prefill_budget(4, 508, 16), 508);
        assert_eq!(trained(1.0, 0.045, 0.009).prefill_budget(4, 508, 16), 1);
    }

    #[test]
    fn until_a_decode_step_is_measured_a_step_only_decodes_then_prefills_the_first_guess() {
        let mut pacer = PrefillPacer::new(2.0);
        assert_eq!(pacer.prefill_budget(4, 508, 16), 0); // a probe: no decode step measured yet
        pacer.record(4, 0, 0.05);
        assert_eq!(pacer.prefill_budget(4, 508, 16), 16); // the token cost is not known yet
        pacer.record(4, 16, 0.21); // 10 ms a token over a 50 ms step: 5 tokens
        assert_eq!(pacer.prefill_budget(4, 508, 16), 5);
    }

    #[test]
    fn each_number_of_decoding_sequences_has_its_own_decode_step() {
        let mut pacer = PrefillPacer::new(2.0);
        pacer.record(2, 0, 0.02);
        pacer.record(2, 10, 0.02 + 10.0 * 0.004);
        assert_eq!(pacer.prefill_budget(2, 508, 16), 5);
        // 8 decoding: a 2-sequence step is the best estimate there is, and errs small.
        assert_eq!(pacer.prefill_budget(8, 508, 16), 5);
        pacer.record(8, 0, 0.08);
        assert_eq!(pacer.prefill_budget(8, 508, 16), 20);
        assert_eq!(pacer.prefill_budget(2, 508, 16), 5);
        // 1 decoding: nothing measured at or below it, so a probe.
        assert_eq!(pacer.prefill_budget(1, 508, 16), 0);
    }

    #[test]
    fn a_steady_flow_of_prefill_is_interrupted_by_a_probe_now_and_then() {
        let mut pacer = trained(2.0, 0.045, 0.009);
        pacer.record(4, 0, 0.045);
        let paced_steps = (0..100)
            .take_while(|_| {
                let budget = pacer.prefill_budget(4, 508, 16);
                pacer.record(4, budget, 0.045 + budget as f64 * 0.009);
                budget > 0
            })
            .count();
        assert_eq!(paced_steps, super::PROBE_INTERVAL as usize);
        pacer.record(4, 0, 0.045); // the probe
        assert_eq!(pacer.prefill_budget(4, 508, 16), 5);
    }

    #[test]
    fn a_few_slow_decode_steps_barely_move_the_decode_estimate() {
        let mut pacer = trained(2.0, 0.010, 0.002);
        for _ in 0..4 {
            pacer.record(4, 0, 0.025); // another process took the CPU for a moment
        }
        assert_eq!(pacer.prefill_budget(4, 508, 16), 6); // ~12 ms a step now, not 25: 6 tokens, not 12
        for _ in 0..3 {
            pacer.record(4, 0, 0.010);
        }
        assert_eq!(pacer.prefill_budget(4, 508, 16), 5);
    }

    #[test]
    fn the_estimates_follow_a_machine_that_slows_down() {
        let mut pacer = trained(2.0, 0.045, 0.009);
        for _ in 0..50 {
            pacer.record(4, 0, 0.045);
            pacer.record(4, 10, 0.045 + 10.0 * 0.045); // prefill became 5x dearer
        }
        assert_eq!(pacer.prefill_budget(4, 508, 16), 1);
        // A prefill-only step measures the token cost directly.
        for _ in 0..200 {
            pacer.record(0, 100, 0.9);
        }
        assert_eq!(pacer.prefill_budget(4, 508, 16), 5);
    }
}
