//! Who gets a step's prefill budget when several prompts are being read.
//!
//! Shortest remaining first: a chat turn of a few dozen tokens is not stuck behind a document of
//! thousands (with paced prefill a long prompt can take most of a minute on a CPU, and every
//! stream whose next turn arrives meanwhile would wait that long for its first token; vLLM's
//! partial prefills let short prompts jump the queue for the same reason). Prompts with equally
//! many tokens left keep their admission order, so a wave of similar prompts is first come, first
//! served. While shorter prompts go ahead, the oldest prompt keeps a quarter of the budget, so a
//! steady stream of short prompts cannot starve it. The quarter is rounded down: a paced budget of
//! one to three tokens (a slow or busy machine) goes wholly to the shortest prompt, which is then
//! read in a few steps, instead of the oldest taking the only token of every step for minutes.

use crate::kv::SeqKey;

/// The oldest prompt's share of the budget while shorter ones go ahead: 1 / `OLDEST_SHARE`.
const OLDEST_SHARE: usize = 4;

/// One prompt's turn at the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PrefillTurn {
    pub key: SeqKey,
    /// Tokens of the budget this prompt must leave for the oldest prompt, whose turn comes later.
    pub held_back: usize,
}

/// The order in which `prompts` — `(key, tokens left to compute)`, in admission order — take from
/// a prefill budget of `budget` tokens.
pub(super) fn prefill_order(prompts: &[(SeqKey, usize)], budget: usize) -> Vec<PrefillTurn> {
    let Some(&(oldest, oldest_left)) = prompts.first() else { return Vec::new() };
    let mut by_length = prompts.to_vec();
    by_length.sort_by_key(|&(_, left)| left); // stable: ties keep admission order
    let reserve = oldest_left.min(budget / OLDEST_SHARE);
    let mut oldest_served = false;
    by_length
        .into_iter()
        .map(|(key, _)| {
            oldest_served |= key == oldest;
            PrefillTurn { key, held_back: if oldest_served { 0 } else { reserve } }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(prompts: &[(SeqKey, usize)], budget: usize) -> Vec<(SeqKey, usize)> {
        prefill_order(prompts, budget).into_iter().map(|t| (t.key, t.held_back)).collect()
    }

    #[test]
    fn equal_prompts_are_first_come_first_served_with_nothing_held_back() {
        assert_eq!(turns(&[(3, 128), (5, 128), (9, 128)], 512), vec![(3, 0), (5, 0), (9, 0)]);
        assert_eq!(turns(&[(7, 2000)], 16), vec![(7, 0)]);
        assert!(prefill_order(&[], 512).is_empty());
    }

    #[test]
    fn a_short_prompt_goes_ahead_of_a_long_one_which_keeps_a_quarter() {
        // A 2,000-token document admitted first, then two chat turns.
        assert_eq!(turns(&[(1, 2000), (2, 64), (3, 40)], 512), vec![(3, 128), (2, 128), (1, 0)]);
        // Under a paced budget of 12 tokens the document still gets 3 a step.
        assert_eq!(turns(&[(1, 2000), (2, 64)], 12), vec![(2, 3), (1, 0)]);
        // A budget below four tokens goes to the shortest: held back, the only token of a step
        // would go to the document, and a chat turn would wait for all of it.
        assert_eq!(turns(&[(1, 2000), (2, 64)], 2), vec![(2, 0), (1, 0)]);
        assert_eq!(turns(&[(1, 2000), (2, 64)], 1), vec![(2, 0), (1, 0)]);
    }

    #[test]
    fn the_oldest_is_held_no_more_than_it_needs_and_nothing_once_served() {
        // The oldest needs 20 tokens: only 20 are held back from the shorter one before it.
        assert_eq!(turns(&[(1, 20), (2, 10), (3, 300)], 512), vec![(2, 20), (1, 0), (3, 0)]);
    }
}
