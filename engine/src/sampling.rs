//! Builds a llama.cpp sampler chain from OpenAI sampling parameters. Order follows llama.cpp's
//! server: biases and penalties first, then the truncations, then temperature and the final draw.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;

use crate::SamplingParams;

/// How many recent tokens the presence/frequency penalties look at.
const PENALTY_LAST_N: i32 = 256;

/// A fresh sampler chain for one sequence. A grammar, when there is one, goes first: it removes
/// every token that would break it before anything else looks at the candidates.
pub(crate) fn build_sampler(params: &SamplingParams, model: &LlamaModel) -> Result<LlamaSampler, String> {
    let n_vocab = model.n_vocab();
    let mut chain = Vec::with_capacity(8);
    if let Some(grammar) = &params.grammar {
        chain.push(LlamaSampler::grammar(model, grammar, "root").map_err(|e| format!("the output grammar was refused: {e}"))?);
    }
    if !params.logit_bias.is_empty() {
        let biases: Vec<LlamaLogitBias> = params
            .logit_bias
            .iter()
            .map(|&(token, bias)| LlamaLogitBias::new(LlamaToken::new(token), bias))
            .collect();
        chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    if params.presence_penalty != 0.0 || params.frequency_penalty != 0.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            PENALTY_LAST_N,
            1.0,
            params.frequency_penalty,
            params.presence_penalty,
        ));
    }
    if params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
        return Ok(LlamaSampler::chain_simple(chain));
    }
    if params.top_k > 0 {
        chain.push(LlamaSampler::top_k(params.top_k));
    }
    if params.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(params.top_p, 1));
    }
    if params.min_p > 0.0 {
        chain.push(LlamaSampler::min_p(params.min_p, 1));
    }
    chain.push(LlamaSampler::temp(params.temperature));
    chain.push(LlamaSampler::dist(params.seed.unwrap_or_else(random_seed)));
    Ok(LlamaSampler::chain_simple(chain))
}

/// A seed from the standard library's per-process random keys.
fn random_seed() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}
