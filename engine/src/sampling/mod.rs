//! Turns OpenAI sampling parameters into the sampler of one sequence, picked by what the request
//! needs: an argmax for plain greedy decoding, hearth's own [`NativeSampler`] for temperature with
//! top-k/top-p/min-p (the common case, and the one paid for every token), and llama.cpp's sampler
//! chain for grammars, logit biases and penalties. The chain's order follows llama.cpp's server:
//! grammar, biases and penalties first, then the truncations, then temperature and the final draw;
//! the native sampler draws from the same distribution. [`logprobs`] reports, when a request asks,
//! the log-probabilities of the row of logits a sampler was given. [`SamplingParams`]
//! (`params.rs`) is the request's side: the fields as the API reads them, their ranges, and the
//! defaults the samplers below take for what a request left out.

mod logprobs;
mod native;
mod params;

pub(crate) use logprobs::{rank, Ranked};
pub use params::{SamplingError, SamplingParams, MAX_TOP_LOGPROBS};

use std::cell::RefCell;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;

use native::NativeSampler;

/// How one sequence picks its next token.
pub(crate) enum Sampler {
    /// Temperature 0 and nothing else: the best logit.
    Greedy,
    /// Temperature with any of top-k, top-p, min-p: computed from the logits in Rust.
    Native(NativeSampler),
    /// Grammar, logit biases or penalties: llama.cpp's sampler chain.
    Chain(LlamaSampler),
}

impl Sampler {
    /// Pick the next token from one row of logits (one entry per vocabulary token). Runs on a
    /// sampling thread.
    pub(crate) fn pick(&mut self, logits: &[f32]) -> LlamaToken {
        match self {
            Sampler::Greedy => argmax(logits),
            Sampler::Native(sampler) => sampler.pick(logits),
            Sampler::Chain(chain) => pick_with_chain(chain, logits),
        }
    }
}

/// The sampler for one request.
pub(crate) fn build_sampler(params: &SamplingParams, model: &LlamaModel) -> Result<Sampler, String> {
    let biases = params.biases().map_err(|e| e.to_string())?;
    let plain = params.grammar.is_none()
        && biases.is_empty()
        && params.presence_penalty() == 0.0
        && params.frequency_penalty() == 0.0
        && params.repetition_penalty() == 1.0;
    if !plain {
        return build_chain(params, &biases, model).map(Sampler::Chain);
    }
    if params.temperature() <= 0.0 {
        return Ok(Sampler::Greedy);
    }
    let seed = params.seed().unwrap_or_else(random_seed);
    Ok(Sampler::Native(NativeSampler::new(params.temperature(), params.top_k(), params.top_p(), params.min_p(), seed)))
}

/// How many recent tokens the presence, frequency and repetition penalties look at.
const PENALTY_LAST_N: i32 = 256;

/// A fresh llama.cpp sampler chain for one sequence (`biases`: the request's, as token ids). A
/// grammar, when there is one, goes first: it removes every token that would break it before
/// anything else looks at the candidates.
fn build_chain(params: &SamplingParams, biases: &[(u32, f64)], model: &LlamaModel) -> Result<LlamaSampler, String> {
    let n_vocab = model.n_vocab();
    let mut chain = Vec::with_capacity(8);
    if let Some(grammar) = &params.grammar {
        chain.push(LlamaSampler::grammar(model, grammar, "root").map_err(|e| format!("the output grammar was refused: {e}"))?);
    }
    if !biases.is_empty() {
        let biases: Vec<LlamaLogitBias> = biases.iter().map(|&(token, bias)| LlamaLogitBias::new(LlamaToken::new(token as i32), bias as f32)).collect();
        chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    let (presence, frequency, repetition) = (params.presence_penalty(), params.frequency_penalty(), params.repetition_penalty());
    if presence != 0.0 || frequency != 0.0 || repetition != 1.0 {
        chain.push(LlamaSampler::penalties(n_vocab, PENALTY_LAST_N, repetition, frequency, presence));
    }
    chain.extend(draw_stages(params));
    Ok(LlamaSampler::chain_simple(chain))
}

/// The chain's last stages, which the native sampler reproduces: the truncations on untempered
/// probabilities, then temperature and the draw (or greedy at temperature 0).
fn draw_stages(params: &SamplingParams) -> Vec<LlamaSampler> {
    let temperature = params.temperature();
    if temperature <= 0.0 {
        return vec![LlamaSampler::greedy()];
    }
    let mut stages = Vec::with_capacity(5);
    if params.top_k() > 0 {
        stages.push(LlamaSampler::top_k(params.top_k()));
    }
    if params.top_p() < 1.0 {
        stages.push(LlamaSampler::top_p(params.top_p(), 1));
    }
    if params.min_p() > 0.0 {
        stages.push(LlamaSampler::min_p(params.min_p(), 1));
    }
    stages.push(LlamaSampler::temp(temperature));
    stages.push(LlamaSampler::dist(params.seed().unwrap_or_else(random_seed)));
    stages
}

/// Run the chain over a candidate array of the whole vocabulary (the array is reused per thread).
fn pick_with_chain(chain: &mut LlamaSampler, logits: &[f32]) -> LlamaToken {
    thread_local! {
        static CANDIDATES: RefCell<Vec<LlamaTokenData>> = const { RefCell::new(Vec::new()) };
    }
    CANDIDATES.with(|buffer| {
        let mut data = buffer.take();
        data.clear();
        data.extend(logits.iter().enumerate().map(|(id, &logit)| LlamaTokenData::new(LlamaToken(id as i32), logit, 0.0)));
        let mut candidates = LlamaTokenDataArray::new(data, false);
        chain.apply(&mut candidates);
        let token = candidates.selected_token().unwrap_or_else(|| argmax(logits));
        chain.accept(token);
        buffer.replace(candidates.data);
        token
    })
}

/// The first token with the highest logit, as llama.cpp's greedy sampler picks it (NaN never wins):
/// a vectorized maximum, then a scan for its first occurrence.
fn argmax(logits: &[f32]) -> LlamaToken {
    let best = native::max_logit(logits).unwrap_or(f32::NEG_INFINITY);
    LlamaToken(logits.iter().position(|&logit| logit == best).unwrap_or(0) as i32)
}

/// A seed from the standard library's per-process random keys.
fn random_seed() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum_and_skips_nan() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), LlamaToken(1));
        assert_eq!(argmax(&[f32::NAN, -5.0, f32::NAN]), LlamaToken(1));
        assert_eq!(argmax(&[]), LlamaToken(0));
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), LlamaToken(0));
        // Longer than the vector lanes, the maximum twice, once in the tail the lanes do not cover.
        let mut logits: Vec<f32> = (0..21).map(|i| i as f32 * 0.1).collect();
        logits[13] = 9.0;
        logits[20] = 9.0;
        assert_eq!(argmax(&logits), LlamaToken(13));
        logits[13] = 0.0;
        assert_eq!(argmax(&logits), LlamaToken(20));
    }

    /// The tokens llama.cpp's chain leaves as candidates after its truncations (every one of them
    /// can be drawn), for one row of logits.
    fn chain_support(params: &SamplingParams, logits: &[f32]) -> Vec<i32> {
        let mut chain = LlamaSampler::chain_simple(draw_stages(params));
        let data = logits.iter().enumerate().map(|(id, &l)| LlamaTokenData::new(LlamaToken(id as i32), l, 0.0)).collect();
        let mut candidates = LlamaTokenDataArray::new(data, false);
        chain.apply(&mut candidates);
        let mut support: Vec<i32> = candidates.data.iter().filter(|d| d.p() > 0.0).map(|d| d.id().0).collect();
        support.sort_unstable();
        support
    }

    /// The tokens the native sampler draws over many tries (its support, when the tries are enough
    /// to see every token of probability above about 1/1,000).
    fn native_support(params: &SamplingParams, logits: &[f32]) -> Vec<i32> {
        let mut sampler = NativeSampler::new(params.temperature(), params.top_k(), params.top_p(), params.min_p(), 11);
        let mut seen: Vec<i32> = (0..20_000).map(|_| sampler.pick(logits).0).collect();
        seen.sort_unstable();
        seen.dedup();
        seen
    }

    /// The native sampler cuts where llama.cpp's chain cuts, for every combination of the
    /// truncations, on logits with a realistic spread (a few likely tokens, a long tail). The
    /// temperature is high so that every kept token is drawn often enough to be seen.
    #[test]
    fn native_truncations_keep_the_tokens_the_llama_cpp_chain_keeps() {
        let mut rng = fastrand::Rng::with_seed(42);
        let mut compared = 0;
        for case in 0..24 {
            let logits: Vec<f32> = (0..1000).map(|_| rng.f32() * 4.0 - 0.25 * (rng.f32() * 60.0)).collect();
            let params = SamplingParams {
                temperature: Some(8.0),
                top_k: Some([0, 5, 20][case % 3]),
                top_p: Some([1.0, 0.3, 0.6, 0.9][case / 3 % 4]),
                min_p: Some([0.0, 0.5][case / 12 % 2]),
                seed: Some(case as i64),
                ..SamplingParams::default()
            };
            let expected = chain_support(&params, &logits);
            if expected.len() > 40 {
                continue; // too many tokens to see them all drawn
            }
            assert_eq!(native_support(&params, &logits), expected, "case {case}: {params:?}");
            compared += 1;
        }
        assert!(compared >= 16, "only {compared} cases had a support small enough to compare");
    }
}
