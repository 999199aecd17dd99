//! Prefill pacing: chunked prefill sized in time instead of tokens (Sarathi-Serve's stall-free
//! batching, with its token budget learned from the steps themselves).
//!
//! A step that prefills makes every decoding sequence wait for it. With a limit `s`
//! (`max_decode_slowdown`: the longest a step may take, as a multiple of a step of decode tokens
//! alone), a step's prefill tokens are cut to what fits in `(s − 1)` decode steps' time. Two
//! running estimates, exponential moving averages of measured steps, give that number: the time of
//! a decode-only step, and the marginal time of one prefill token (a mixed step's time less a
//! decode step's, per prefill token; a prefill-only step's time per token). They follow the
//! context's growth and a busy machine; the decode step's estimate leans to its fast samples.
//! Until both are known a step prefills at most `first_guess` tokens. Steps without decoding
//! sequences are never paced, and a paced step still prefills at least one token, so a prompt
//! always makes progress.

/// Weight of the newest measurement in the per-token moving average.
const SMOOTHING: f64 = 0.2;
/// Weights of a faster and of a slower decode-only step: the estimate follows the fast ones
/// quickly and a busy moment slowly, since it is not re-measured while a long prompt is read
/// (every step then prefills), and a high estimate there would let prefill stall streams longer.
const DECODE_FASTER: f64 = 0.5;
const DECODE_SLOWER: f64 = 0.05;
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
    /// Seconds of a step with decode tokens only.
    decode_step: Option<f64>,
    /// Marginal seconds of one prefill token.
    prefill_token: Option<f64>,
}

impl PrefillPacer {
    pub(super) fn new(slowdown: f32) -> Self {
        Self { slowdown: f64::from(slowdown), decode_step: None, prefill_token: None }
    }

    fn enabled(&self) -> bool {
        self.slowdown >= 1.0
    }

    /// Prefill tokens a step with `decoding` decode tokens may add, out of `budget` (what
    /// `max_num_batched_tokens` leaves); `first_guess` while the costs are not yet known.
    pub(super) fn prefill_budget(&self, decoding: usize, budget: usize, first_guess: usize) -> usize {
        if !self.enabled() || decoding == 0 || budget == 0 {
            return budget;
        }
        let tokens = match (self.decode_step, self.prefill_token) {
            (Some(step), Some(token)) => ((self.slowdown - 1.0) * step / token + ROUNDING_SLACK).floor() as usize,
            _ => first_guess,
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
                let weight = if self.decode_step.is_some_and(|d| seconds < d) { DECODE_FASTER } else { DECODE_SLOWER };
                self.decode_step = Some(smoothed(self.decode_step, seconds, weight));
                return;
            }
            (0, n) => seconds / n as f64,
            (_, n) => match self.decode_step {
                Some(step) => (seconds - step).max(0.0) / n as f64,
                None => return,
            },
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
    fn until_costs_are_known_a_step_prefills_the_first_guess() {
        let mut pacer = PrefillPacer::new(2.0);
        assert_eq!(pacer.prefill_budget(4, 508, 16), 16);
        pacer.record(4, 16, 0.2); // no decode-only step seen yet: nothing to subtract, nothing learned
        assert_eq!(pacer.prefill_budget(4, 508, 16), 16);
        pacer.record(4, 0, 0.05);
        assert_eq!(pacer.prefill_budget(4, 508, 16), 16);
        pacer.record(4, 16, 0.21); // 10 ms a token over a 50 ms step: 5 tokens
        assert_eq!(pacer.prefill_budget(4, 508, 16), 5);
    }

    #[test]
    fn a_few_slow_decode_steps_barely_move_the_decode_estimate() {
        let mut pacer = trained(2.0, 0.010, 0.002);
        for _ in 0..4 {
            pacer.record(1, 0, 0.025); // another process took the CPU for a moment
        }
        assert_eq!(pacer.prefill_budget(1, 511, 16), 6); // ~12 ms a step now, not 25: 6 tokens, not 12
        for _ in 0..3 {
            pacer.record(1, 0, 0.010);
        }
        assert_eq!(pacer.prefill_budget(1, 511, 16), 5);
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
