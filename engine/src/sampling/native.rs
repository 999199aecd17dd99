//! Temperature sampling with top-k, top-p and min-p, computed in Rust straight from a row of logits.
//!
//! Design: llama.cpp's sampler chain copies the whole vocabulary into a candidate array (12 bytes a
//! token) and makes several passes over it with libm's `expf`: about 0.45 ms a sequence at
//! SmolLM2's 49,152 tokens, which the engine pays for every sequence of every step. This sampler
//! draws from the same distribution as that chain (top-k, then top-p, then min-p, each on the
//! untempered probabilities as llama.cpp's server orders them, then temperature and the draw) in
//! fewer and cheaper passes:
//! - No truncation (the OpenAI default): one pass finds the best logit, one writes
//!   `exp((logit − best) / T)` with a polynomial exp the compiler vectorizes and sums it per block of
//!   256 tokens; the draw walks the block sums and scans one block.
//! - A truncation never sorts the vocabulary: each token falls in a bucket by its distance below the
//!   best logit (1/16 of a nat wide); bucket counts and masses locate the bucket where top-k, top-p or
//!   min-p must cut, only the tokens above it are collected and sorted, and the chain's rules are
//!   applied exactly to that short list.
//!
//! Grammar, logit biases and penalties stay on llama.cpp's chain (`sampling/mod.rs`).

use std::cell::RefCell;

use llama_cpp_2::token::LlamaToken;

/// Tokens per block of the weight sums the draw walks.
const BLOCK: usize = 256;
/// Independent accumulators, so that maxima and sums vectorize without reassociating floats.
const LANES: usize = 8;
/// Buckets per nat of distance below the best logit.
const BUCKETS_PER_NAT: f32 = 16.0;
/// Distances past this many nats share the last bucket (probability below e^-32 each).
const BUCKET_SPAN_NATS: f32 = 32.0;
const BUCKETS: usize = (BUCKET_SPAN_NATS * BUCKETS_PER_NAT) as usize + 1;

/// One sequence's sampling state: the request's parameters and its random stream.
pub(crate) struct NativeSampler {
    temperature: f32,
    /// 0: off.
    top_k: usize,
    /// 1: off.
    top_p: f32,
    /// 0: off.
    min_p: f32,
    rng: fastrand::Rng,
}

/// Buffers reused by every sequence a sampling thread serves.
#[derive(Default)]
struct Scratch {
    weights: Vec<f32>,
    block_sums: Vec<f32>,
    candidates: Vec<(f32, u32)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl NativeSampler {
    /// `temperature` must be above 0 (greedy requests take an argmax instead).
    pub(crate) fn new(temperature: f32, top_k: i32, top_p: f32, min_p: f32, seed: u32) -> Self {
        Self {
            temperature,
            top_k: top_k.max(0) as usize,
            top_p: if top_p < 1.0 { top_p.max(0.0) } else { 1.0 }, // 0 keeps the best token alone
            min_p: min_p.clamp(0.0, 1.0),
            rng: fastrand::Rng::with_seed(u64::from(seed)),
        }
    }

    /// Draw the next token from one row of logits.
    pub(crate) fn pick(&mut self, logits: &[f32]) -> LlamaToken {
        let Some(best) = max_logit(logits) else {
            return LlamaToken(0); // empty, or nothing but NaN and -inf: no token is better than another
        };
        if best == f32::INFINITY {
            return super::argmax(logits); // the first +inf: every other token has weight 0
        }
        let u = self.rng.f64();
        let token = SCRATCH.with(|scratch| {
            let scratch = &mut *scratch.borrow_mut();
            if self.truncates(logits.len()) {
                self.pick_truncated(logits, best, u, scratch)
            } else {
                draw_full(logits, best, 1.0 / self.temperature, u, scratch)
            }
        });
        LlamaToken(token as i32)
    }

    fn truncates(&self, n_vocab: usize) -> bool {
        (self.top_k > 0 && self.top_k < n_vocab) || self.top_p < 1.0 || self.min_p > 0.0
    }

    /// Collect the tokens above the bucket where the first cutting rule stops, sort them, and
    /// apply top-k, top-p and min-p exactly to that list before drawing.
    fn pick_truncated(&self, logits: &[f32], best: f32, u: f64, scratch: &mut Scratch) -> usize {
        let n_vocab = logits.len();
        let k = if self.top_k > 0 { self.top_k.min(n_vocab) } else { n_vocab };
        // Top-p over the whole vocabulary (no top-k) is the one rule that needs the bucket masses.
        let nucleus_of_all = self.top_p < 1.0 && k == n_vocab;
        let histogram = Histogram::of(logits, best, nucleus_of_all);

        // The last bucket a survivor can be in. With both top-k and top-p, top-p's reference mass is
        // the top-k tokens', so all of those are needed.
        let mut last = histogram.bucket_of_rank(k);
        if nucleus_of_all {
            last = last.min(histogram.bucket_of_mass(f64::from(self.top_p) * histogram.total_mass()) + 1);
        }
        if self.min_p > 0.0 && !(self.top_p < 1.0 && k < n_vocab) {
            last = last.min(bucket(-self.min_p.ln()));
        }

        let candidates = &mut scratch.candidates;
        candidates.clear();
        candidates.extend(
            logits
                .iter()
                .enumerate()
                .filter(|&(_, &logit)| !logit.is_nan() && bucket(best - logit) <= last)
                .map(|(i, &logit)| (logit, i as u32)),
        );
        // Best first; among equal logits the lower token id first, so the order is reproducible.
        candidates.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));

        let mut kept = candidates.len().min(k);
        if self.top_p < 1.0 {
            let reference = if k < n_vocab {
                candidates[..kept].iter().map(|&(logit, _)| f64::from(exp_nonpositive(logit - best))).sum()
            } else {
                histogram.total_mass()
            };
            let target = f64::from(self.top_p) * reference;
            let mut cumulative = 0.0;
            for (i, &(logit, _)) in candidates[..kept].iter().enumerate() {
                cumulative += f64::from(exp_nonpositive(logit - best));
                if cumulative >= target {
                    kept = i + 1;
                    break;
                }
            }
        }
        if self.min_p > 0.0 {
            let floor = best + self.min_p.ln();
            kept = candidates[..kept].iter().take_while(|&&(logit, _)| logit >= floor).count().max(1);
        }

        let inv_t = 1.0 / self.temperature;
        let survivors = &candidates[..kept.max(1)];
        let total: f64 = survivors.iter().map(|&(logit, _)| f64::from(exp_nonpositive((logit - best) * inv_t))).sum();
        let target = u * total;
        let mut cumulative = 0.0;
        for &(logit, token) in survivors {
            cumulative += f64::from(exp_nonpositive((logit - best) * inv_t));
            if cumulative > target {
                return token as usize;
            }
        }
        survivors[survivors.len() - 1].1 as usize // only float rounding reaches here
    }
}

/// Draw from every token's `exp((logit − best) / T)`.
fn draw_full(logits: &[f32], best: f32, inv_t: f32, u: f64, scratch: &mut Scratch) -> usize {
    let Scratch { weights, block_sums, .. } = scratch;
    weights.resize(logits.len(), 0.0);
    block_sums.clear();
    for (source, block) in logits.chunks(BLOCK).zip(weights.chunks_mut(BLOCK)) {
        for (weight, &logit) in block.iter_mut().zip(source) {
            *weight = exp_nonpositive((logit - best) * inv_t);
        }
        block_sums.push(lane_sum(block));
    }
    let total: f64 = block_sums.iter().map(|&s| f64::from(s)).sum();
    let target = u * total; // u < 1, and the best token's weight is 1, so target < total
    let mut cumulative = 0.0;
    for (b, &block_sum) in block_sums.iter().enumerate() {
        if cumulative + f64::from(block_sum) > target {
            let start = b * BLOCK;
            let block = &weights[start..(start + BLOCK).min(weights.len())];
            for (i, &weight) in block.iter().enumerate() {
                cumulative += f64::from(weight);
                if cumulative > target {
                    return start + i;
                }
            }
            // The block's own sum was rounded up past the target: its last weighted token.
            return start + block.iter().rposition(|&w| w > 0.0).unwrap_or(0);
        }
        cumulative += f64::from(block_sum);
    }
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// Counts and untempered masses of the tokens by their distance below the best logit.
struct Histogram {
    counts: [u32; BUCKETS],
    masses: [f64; BUCKETS],
}

impl Histogram {
    /// Counts always; masses only `with_masses` (they cost an exp a token), else they stay 0.
    fn of(logits: &[f32], best: f32, with_masses: bool) -> Self {
        let mut histogram = Histogram { counts: [0; BUCKETS], masses: [0.0; BUCKETS] };
        for &logit in logits {
            let b = bucket(best - logit);
            histogram.counts[b] += 1;
            if with_masses {
                histogram.masses[b] += f64::from(exp_nonpositive(logit - best));
            }
        }
        histogram
    }

    fn total_mass(&self) -> f64 {
        self.masses.iter().sum()
    }

    /// The bucket that holds the `rank`-th best token (1-based).
    fn bucket_of_rank(&self, rank: usize) -> usize {
        let mut seen = 0;
        for (b, &count) in self.counts.iter().enumerate() {
            seen += count as usize;
            if seen >= rank {
                return b;
            }
        }
        BUCKETS - 1
    }

    /// The bucket where the best tokens' mass reaches `mass`.
    fn bucket_of_mass(&self, mass: f64) -> usize {
        let mut seen = 0.0;
        for (b, &m) in self.masses.iter().enumerate() {
            seen += m;
            if seen >= mass {
                return b;
            }
        }
        BUCKETS - 1
    }
}

/// The bucket of a token `distance` nats below the best logit (NaN and infinity: the last).
fn bucket(distance: f32) -> usize {
    if distance < BUCKET_SPAN_NATS {
        (distance.max(0.0) * BUCKETS_PER_NAT) as usize
    } else {
        BUCKETS - 1
    }
}

/// The largest logit, NaN never winning; `None` when every logit is NaN or -inf.
pub(super) fn max_logit(logits: &[f32]) -> Option<f32> {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = logits.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            if value > *lane {
                *lane = value;
            }
        }
    }
    let best = lanes.iter().chain(rest).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    (best > f32::NEG_INFINITY).then_some(best)
}

/// A sum of lane-wise partial sums (vectorizes; the order differs from a serial sum only in rounding).
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane += value;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `e^x` for `x ≤ 0`, to about 2e-7 relative; results below 2^-126 (x < −87.3) come out as that
/// smallest normal, and NaN as well. Branch-free so that loops over it vectorize: `2^n · 2^f` with
/// `n` rounded by the 1.5·2^23 trick and `2^f` a degree-6 Taylor polynomial on |f| ≤ 1/2.
#[inline(always)]
#[allow(clippy::manual_clamp)] // `clamp` passes NaN through; `max` turns it into -126
fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    const C: [f32; 6] = [
        std::f32::consts::LN_2,
        0.240_226_5,
        0.055_504_11,
        0.009_618_129,
        0.001_333_355_8,
        0.000_154_035_3,
    ];
    let t = (x * std::f32::consts::LOG2_E).max(-126.0).min(0.0);
    let shifted = t + ROUND;
    let n = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let f = t - (shifted - ROUND);
    let poly = 1.0 + f * (C[0] + f * (C[1] + f * (C[2] + f * (C[3] + f * (C[4] + f * C[5])))));
    f32::from_bits(((n + 127) as u32) << 23) * poly
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(logits: &[f32], temperature: f32) -> Vec<f64> {
        let best = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let w: Vec<f64> = logits.iter().map(|&l| ((l as f64 - best) / temperature as f64).exp()).collect();
        let total: f64 = w.iter().sum();
        w.into_iter().map(|x| x / total).collect()
    }

    fn frequencies(sampler: &mut NativeSampler, logits: &[f32], draws: usize) -> Vec<f64> {
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..draws {
            counts[sampler.pick(logits).0 as usize] += 1;
        }
        counts.into_iter().map(|c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn exp_matches_the_library_exp() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let exact = (x as f64).exp();
            let fast = exp_nonpositive(x) as f64;
            // f32 rounding of x·log2(e) alone costs about |x|·6e-8 relative.
            let tolerance = (3e-7 + 1e-7 * (x.abs() as f64)) * exact;
            assert!((fast - exact).abs() <= tolerance, "exp({x}) = {fast}, expected {exact}");
            x += 0.0137;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) < 1e-37);
        assert!(exp_nonpositive(f32::NAN) < 1e-37);
    }

    #[test]
    fn full_vocabulary_draws_follow_the_tempered_softmax() {
        // 1,000 tokens spread over several blocks, so the block walk is exercised.
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 37 % 101) as f32) / 10.0 - 8.0).collect();
        for temperature in [0.7f32, 1.0, 1.6] {
            let mut sampler = NativeSampler::new(temperature, 0, 1.0, 0.0, 7);
            let seen = frequencies(&mut sampler, &logits, 100_000);
            let expected = softmax(&logits, temperature);
            // Tokens grouped by 50 neighbouring ids (each group straddles the 256-token blocks
            // differently); a group's share has a standard deviation under 0.0008 at 100,000 draws.
            for (token, (&seen, &expected)) in seen.iter().zip(&expected).enumerate().filter(|(_, (_, &p))| p > 0.004) {
                assert!((seen - expected).abs() < 5.0 * (expected / 100_000.0).sqrt(), "token {token}: drawn {seen}, expected {expected} (T {temperature})");
            }
            for (group, (seen, expected)) in seen.chunks(50).zip(expected.chunks(50)).enumerate() {
                let (seen, expected): (f64, f64) = (seen.iter().sum(), expected.iter().sum());
                assert!((seen - expected).abs() < 0.004, "tokens {}..: drawn {seen}, expected {expected} (T {temperature})", group * 50);
            }
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens() {
        let logits: Vec<f32> = (0..5000).map(|i| ((i * 7919 % 1000) as f32) / 200.0).collect();
        let draws = |seed| {
            let mut s = NativeSampler::new(1.0, 0, 0.9, 0.0, seed);
            (0..50).map(|_| s.pick(&logits).0).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }

    #[test]
    fn top_k_keeps_exactly_the_k_best() {
        let logits = [1.0, 5.0, 3.0, 4.0, 2.0, 4.5];
        let mut sampler = NativeSampler::new(1.0, 3, 1.0, 0.0, 1);
        let seen = frequencies(&mut sampler, &logits, 30_000);
        let kept: Vec<usize> = (0..6).filter(|&i| seen[i] > 0.0).collect();
        assert_eq!(kept, vec![1, 3, 5]);
        let expected = softmax(&[5.0, 4.0, 4.5], 1.0);
        assert!((seen[1] - expected[0]).abs() < 0.02 && (seen[5] - expected[2]).abs() < 0.02, "{seen:?}");
    }

    #[test]
    fn top_p_keeps_the_smallest_set_that_reaches_p() {
        // Untempered probabilities about 0.64, 0.24, 0.09, 0.03: p = 0.8 keeps two tokens, whatever
        // the temperature.
        let logits = [3.0, 2.0, 1.0, 0.0];
        let mut sampler = NativeSampler::new(5.0, 0, 0.8, 0.0, 2);
        let seen = frequencies(&mut sampler, &logits, 20_000);
        assert!(seen[0] > 0.0 && seen[1] > 0.0 && seen[2] == 0.0 && seen[3] == 0.0, "{seen:?}");
        // At a high temperature the two are drawn almost evenly: temperature comes after the cut.
        assert!((seen[0] - 0.55).abs() < 0.03, "{seen:?}");
        // p = 0 keeps the best token alone, as llama.cpp's top-p does.
        let mut nucleus_of_one = NativeSampler::new(5.0, 0, 0.0, 0.0, 2);
        assert!((0..100).all(|_| nucleus_of_one.pick(&logits).0 == 0));
    }

    #[test]
    fn min_p_drops_tokens_below_a_fraction_of_the_best() {
        let logits = [0.0, -0.5, -2.0, -3.0]; // relative probabilities 1, 0.61, 0.14, 0.05
        let mut sampler = NativeSampler::new(1.0, 0, 1.0, 0.1, 3);
        let seen = frequencies(&mut sampler, &logits, 20_000);
        assert!(seen[2] > 0.0 && seen[3] == 0.0, "{seen:?}");
    }

    #[test]
    fn nan_and_infinite_logits_do_not_panic_or_win() {
        let mut sampler = NativeSampler::new(1.0, 0, 1.0, 0.0, 5);
        let logits = [f32::NAN, f32::NEG_INFINITY, 2.0, f32::NAN];
        for _ in 0..100 {
            assert_eq!(sampler.pick(&logits).0, 2);
        }
        let mut truncating = NativeSampler::new(1.0, 2, 0.5, 0.05, 5);
        for _ in 0..100 {
            assert_eq!(truncating.pick(&logits).0, 2);
        }
        assert_eq!(sampler.pick(&[]).0, 0);
        assert_eq!(sampler.pick(&[f32::NAN; 3]).0, 0);
    }
}
