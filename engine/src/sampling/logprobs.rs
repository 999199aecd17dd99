//! Log-probabilities of a sampled token and of the step's most likely tokens.
//!
//! Which distribution: the model's raw one, the log-softmax of the row of logits the sampler was
//! given (`ln p_i = l_i − max − ln Σ_j exp(l_j − max)`), before temperature, top-k, top-p, min-p,
//! penalties, logit biases or a grammar. That is what OpenAI reports and vLLM's default
//! (`logprobs_mode = raw_logprobs`); it does not depend on the sampling settings, so a greedy
//! request's chosen token is the top-1 unless a penalty or bias moved it, and the numbers compare
//! across requests. The
//! truncated distribution the draw used would give the chosen token ln 1 = 0 at temperature 0.
//!
//! Cost: nothing unless a request asks (`SamplingParams::logprobs`); when it does, one pass for
//! the maximum, one for the normaliser (in f64, so that the reported probabilities of any set of
//! tokens sum to at most 1 within rounding), and one that keeps the `n` best in a short sorted
//! list (not yet timed against the sampler's own passes).

use super::native::max_logit;

/// A step's log-probabilities by token id, before the tokens' bytes are looked up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ranked {
    /// The sampled token and its log-probability.
    pub chosen: (i32, f32),
    /// The `n` most likely tokens, most likely first; ties: the lower id first.
    pub top: Vec<(i32, f32)>,
}

/// Rank one row of logits for the sampled token `chosen`, keeping the `n` most likely tokens.
/// NaN logits count as impossible (−inf).
pub(crate) fn rank(logits: &[f32], chosen: i32, n: usize) -> Ranked {
    let Some(best) = max_logit(logits).filter(|b| b.is_finite()) else {
        // Nothing but NaN and −inf, or a +inf: no distribution to speak of; report the chosen
        // token as certain rather than NaN, which JSON cannot carry.
        return Ranked { chosen: (chosen, 0.0), top: vec![(chosen, 0.0)].into_iter().take(n).collect() };
    };
    let sum: f64 = logits.iter().filter(|l| !l.is_nan()).map(|&l| f64::from(l - best).exp()).sum();
    let log_z = f64::from(best) + sum.ln();
    let logprob = |logit: f32| if logit.is_nan() { f32::NEG_INFINITY } else { (f64::from(logit) - log_z).min(0.0) as f32 };

    let mut top: Vec<(i32, f32)> = Vec::with_capacity(n + 1);
    if n > 0 {
        for (id, &logit) in logits.iter().enumerate() {
            if logit.is_nan() || (top.len() == n && logit <= top[n - 1].1) {
                continue;
            }
            // After every kept logit at least as large: equal logits keep the lower id first.
            let at = top.partition_point(|&(_, kept)| kept >= logit);
            top.insert(at, (id as i32, logit));
            top.truncate(n);
        }
    }
    let chosen_logit = usize::try_from(chosen).ok().and_then(|i| logits.get(i)).copied().unwrap_or(f32::NAN);
    Ranked {
        chosen: (chosen, logprob(chosen_logit)),
        top: top.into_iter().map(|(id, logit)| (id, logprob(logit))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probabilities(r: &Ranked) -> f64 {
        r.top.iter().map(|&(_, lp)| f64::from(lp).exp()).sum()
    }

    #[test]
    fn log_softmax_of_a_small_row_matches_the_formula() {
        let logits = [1.0_f32, 3.0, 2.0, -1.0];
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        let r = rank(&logits, 2, 3);
        assert!((f64::from(r.chosen.1) - (2.0 - z.ln())).abs() < 1e-6, "{r:?}");
        assert_eq!(r.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2, 0]);
        for &(id, lp) in &r.top {
            assert!((f64::from(lp) - (f64::from(logits[id as usize]) - z.ln())).abs() < 1e-6);
        }
        assert!(probabilities(&r) < 1.0);
        let all = rank(&logits, 2, 4);
        assert!((probabilities(&all) - 1.0).abs() < 1e-6, "the whole vocabulary sums to 1");
    }

    #[test]
    fn ties_keep_the_lower_id_first_and_the_argmax_is_the_top_one() {
        let logits = [0.5_f32, 2.0, 2.0, 1.0, 2.0];
        let r = rank(&logits, 1, 2);
        assert_eq!(r.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(r.top[0].1, r.chosen.1, "the greedy pick (first maximum) is the top-1");
        assert_eq!(super::super::argmax(&logits).0, r.top[0].0);
    }

    #[test]
    fn nan_logits_are_impossible_and_n_zero_reports_only_the_chosen_token() {
        let logits = [f32::NAN, 0.0, f32::NEG_INFINITY, 0.0];
        let r = rank(&logits, 3, 0);
        assert!(r.top.is_empty());
        assert!((r.chosen.1 - 0.5_f32.ln()).abs() < 1e-6, "{r:?}");
        let r = rank(&logits, 0, 4);
        assert_eq!(r.chosen.1, f32::NEG_INFINITY);
        assert_eq!(r.top.len(), 3, "NaN is never listed: {r:?}");
        assert!(r.top.iter().all(|&(_, lp)| lp <= 0.0));
    }

    #[test]
    fn a_row_without_a_finite_maximum_reports_the_chosen_token_as_certain() {
        assert_eq!(rank(&[f32::NAN; 3], 1, 2), Ranked { chosen: (1, 0.0), top: vec![(1, 0.0)] });
        assert_eq!(rank(&[0.0, f32::INFINITY], 1, 0).top, Vec::new());
    }

    proptest::proptest! {
        /// Any row: the top list is sorted, every value is at most 0, the probabilities of the
        /// listed tokens sum to at most 1, and the chosen token's value is the one listed for it.
        #[test]
        fn the_top_list_is_sorted_bounded_and_consistent(
            logits in proptest::collection::vec(-30.0_f32..30.0, 1..300),
            pick in 0usize..300,
            n in 0usize..21,
        ) {
            let chosen = (pick % logits.len()) as i32;
            let r = rank(&logits, chosen, n);
            proptest::prop_assert_eq!(r.top.len(), n.min(logits.len()));
            proptest::prop_assert!(r.top.windows(2).all(|w| w[0].1 >= w[1].1));
            proptest::prop_assert!(r.chosen.1 <= 0.0 && r.top.iter().all(|t| t.1 <= 0.0));
            proptest::prop_assert!(probabilities(&r) <= 1.0 + 1e-6);
            if let Some(listed) = r.top.iter().find(|t| t.0 == chosen) {
                proptest::prop_assert_eq!(listed.1, r.chosen.1);
            }
            let mut sorted = logits.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            for (i, t) in r.top.iter().enumerate() {
                proptest::prop_assert_eq!(logits[t.0 as usize], sorted[i]);
            }
        }
    }
}
