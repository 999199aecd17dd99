//! The shape of a step's work: what each sequence computes (`step_work`), where a prompt's
//! prefill stops so that a cached copy of it computes the same tail (`prefill_chunk`,
//! `tail_start`), and how a step's plan becomes llama.cpp batches (`batches`). Pure functions,
//! used by the [`Scheduler`](super::policy::Scheduler) to plan and by the engine thread to run
//! the plan.

use crate::kv::SeqKey;
use crate::BatchMixing;

/// One sequence's share of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Work {
    pub key: SeqKey,
    /// Position of the first token to compute.
    pub start: usize,
    /// Tokens to compute from `start`.
    pub take: usize,
    pub part: Part,
}

/// Which llama.cpp batch of a split step a piece of work goes to, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    /// One token of a running sequence.
    Decode,
    /// Prompt tokens up to the prompt's last full block.
    Chunk,
    /// A prompt's tokens after its last full block: what a cached copy of it computes.
    Tail,
}

/// Query rows from which llama.cpp's CPU flash attention computes a batch in dense tiles
/// (`GGML_FA_TILE_Q`); below it each row skips the cells it may not see.
const FA_TILE_ROWS: usize = 64;

/// The llama.cpp batches of one step's plan (grouped by part): all of it (`Mixed`), or one batch
/// per part (`Split`): decode tokens, prefill chunks, prompt tails. A split step's decode tokens
/// and chunks still go together while they are fewer than [`FA_TILE_ROWS`]: there the kernel
/// has no tiles to make dense, and a few paced prefill tokens are not worth a graph computation of
/// their own. Tails always go alone, as a cached copy computes them.
pub(crate) fn batches(planned: &[Work], mixing: BatchMixing) -> Vec<&[Work]> {
    match mixing {
        BatchMixing::Split => {
            let mut parts: Vec<&[Work]> = planned.chunk_by(|a, b| a.part == b.part).collect();
            if let [decode, chunk, ..] = parts[..] {
                if decode[0].part == Part::Decode && chunk[0].part == Part::Chunk && tokens(decode) + tokens(chunk) < FA_TILE_ROWS {
                    parts.splice(..2, [&planned[..decode.len() + chunk.len()]]);
                }
            }
            parts
        }
        BatchMixing::Auto | BatchMixing::Mixed => [planned].into_iter().filter(|p| !p.is_empty()).collect(),
    }
}

/// Tokens a batch of `work` computes.
pub(crate) fn tokens(work: &[Work]) -> usize {
    work.iter().map(|w| w.take).sum()
}

/// How many ubatches llama.cpp's decode cuts a batch into with one KV stream per sequence
/// (`split_equal` with sequential ids, llama-batch.cpp): each ubatch takes the same number of
/// tokens from each of a run of sequences whose ids are consecutive in batch order, at most
/// `n_ubatch` tokens in all. `pieces`: each sequence's `(llama id, tokens)` in batch order, one
/// entry per sequence. Decode tokens of ids 0..63 are one ubatch; a prompt beside them adds one for
/// its rest, and each gap in the ids or change of length another.
pub(crate) fn per_sequence_ubatches(pieces: &[(i32, usize)], n_ubatch: usize) -> usize {
    let mut left: Vec<usize> = pieces.iter().map(|&(_, take)| take).collect();
    let mut ubatches = 0;
    while left.iter().any(|&n| n > 0) {
        // The run: the first sequence with tokens left, then each next one whose id follows.
        let mut run: Vec<usize> = Vec::new();
        for (i, &(id, _)) in pieces.iter().enumerate() {
            if left[i] == 0 {
                continue;
            }
            match run.last() {
                None => run.push(i),
                Some(&last) if id == pieces[last].0 + 1 && run.len() < n_ubatch.max(1) => run.push(i),
                Some(_) => {}
            }
        }
        let fewest = run.iter().map(|&i| left[i]).min().unwrap_or(0);
        let take = fewest.min((n_ubatch / run.len().max(1)).max(1));
        for &i in &run {
            left[i] -= take;
        }
        ubatches += 1;
    }
    ubatches
}

/// How a step cuts prompts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub block_size: usize,
    pub caching: bool,
    /// A prompt's tail may follow its last chunk in the same step (as its own batch).
    pub same_step_tails: bool,
}

/// What a sequence with `n_past` of its `len` tokens computed does this step, within `budget`:
/// `(tokens, part)` pieces. A cold prompt's prefill stops at its last full block
/// ([`prefill_chunk`]); its tail follows in the same step when the step is split and the budget
/// allows, else in the next step.
pub(crate) fn step_work(n_past: usize, len: usize, budget: usize, shape: Shape) -> Vec<(usize, Part)> {
    let remaining = len.saturating_sub(n_past);
    if remaining <= 1 {
        return vec![(remaining, Part::Decode)];
    }
    let tail_start = tail_start(len, shape.block_size);
    if shape.caching && n_past >= tail_start {
        return vec![(remaining.min(budget), Part::Tail)];
    }
    let take = prefill_chunk(n_past, len, budget, shape.block_size, shape.caching);
    let tail = len - tail_start;
    if shape.caching && shape.same_step_tails && n_past + take == tail_start && take + tail <= budget {
        vec![(take, Part::Chunk), (tail, Part::Tail)]
    } else {
        vec![(take, Part::Chunk)]
    }
}

/// Where the tail of `len` tokens starts: the end of its last full block that leaves at least one
/// token after it, which is where a cached copy of the same tokens resumes.
pub(crate) fn tail_start(len: usize, block_size: usize) -> usize {
    let block_size = block_size.max(1);
    len.saturating_sub(1) / block_size * block_size
}

/// Tokens of a sequence to compute this step: all that remain, within the step's budget, except
/// that with prefix caching a prefill chunk stops at the last full block of the token list. A
/// later request with the same tokens resumes from exactly there (its cached prefix), so the cold
/// and the cached request compute their tail in the same shape and give the same output: llama.cpp
/// picks kernels by batch size, and their results may differ in the last bits.
pub(crate) fn prefill_chunk(n_past: usize, len: usize, budget: usize, block_size: usize, caching: bool) -> usize {
    let take = len.saturating_sub(n_past).min(budget);
    let resume_at = tail_start(len, block_size);
    if caching && n_past < resume_at && n_past + take > resume_at {
        resume_at - n_past
    } else {
        take
    }
}

#[cfg(test)]
mod tests {
    use super::{batches, per_sequence_ubatches, prefill_chunk, step_work, BatchMixing, Part, Shape, Work};

    #[test]
    fn per_sequence_ubatches_follow_llama_cpps_equal_split() {
        let decode: Vec<(i32, usize)> = (0..64).map(|id| (id, 1)).collect();
        assert_eq!(per_sequence_ubatches(&decode, 512), 1);
        // A gap in the ids: two runs.
        let gap: Vec<(i32, usize)> = (0..65).filter(|&id| id != 17).map(|id| (id, 1)).collect();
        assert_eq!(per_sequence_ubatches(&gap, 512), 2);
        // Prompts beside decode tokens: one token of each, then the prompts' rest, one ubatch for
        // each run of consecutive ids with the same length left.
        let mut mixed = decode.clone();
        for id in [5, 6, 7] {
            mixed[id as usize].1 = 33;
        }
        assert_eq!(per_sequence_ubatches(&mixed, 512), 2, "ids 5..=7 share their rest");
        mixed[30].1 = 33;
        assert_eq!(per_sequence_ubatches(&mixed, 512), 3, "id 30 is not next to them");
        // A run longer than n_ubatch allows at once is cut into several.
        let prompts: Vec<(i32, usize)> = (0..8).map(|id| (id, 128)).collect();
        assert_eq!(per_sequence_ubatches(&prompts, 512), 2, "8 x 128 tokens in ubatches of 8 x 64");
        assert_eq!(per_sequence_ubatches(&[], 512), 0);
    }

    #[test]
    fn a_split_step_runs_decode_tokens_chunks_and_tails_as_separate_batches() {
        let w = |key, take, part| Work { key, start: 0, take, part };
        let planned = [w(1, 1, Part::Decode), w(2, 1, Part::Decode), w(3, 112, Part::Chunk), w(3, 16, Part::Tail), w(4, 16, Part::Tail)];
        assert_eq!(batches(&planned, BatchMixing::Split), vec![&planned[..2], &planned[2..3], &planned[3..]]);
        assert_eq!(batches(&planned, BatchMixing::Mixed), vec![&planned[..]]);
        assert_eq!(batches(&planned[..2], BatchMixing::Split), vec![&planned[..2]]);
        assert!(batches(&[], BatchMixing::Split).is_empty());
        assert!(batches(&[], BatchMixing::Mixed).is_empty());
    }

    #[test]
    fn a_split_step_keeps_decode_tokens_and_a_small_chunk_together() {
        let w = |key, take, part| Work { key, start: 0, take, part };
        // 2 decode tokens and a 40-token chunk: below the kernel's tile, one batch; the tail alone.
        let small = [w(1, 1, Part::Decode), w(2, 1, Part::Decode), w(3, 40, Part::Chunk), w(3, 16, Part::Tail)];
        assert_eq!(batches(&small, BatchMixing::Split), vec![&small[..3], &small[3..]]);
        // 2 + 62 tokens reach the tile: apart.
        let large = [w(1, 1, Part::Decode), w(2, 1, Part::Decode), w(3, 62, Part::Chunk)];
        assert_eq!(batches(&large, BatchMixing::Split), vec![&large[..2], &large[2..]]);
        // Decode tokens and a tail are never merged.
        let tail = [w(1, 1, Part::Decode), w(3, 16, Part::Tail)];
        assert_eq!(batches(&tail, BatchMixing::Split), vec![&tail[..1], &tail[1..]]);
    }

    #[test]
    fn a_cold_prompts_tail_follows_its_chunk_in_the_same_step_when_split() {
        let split = Shape { block_size: 16, caching: true, same_step_tails: true };
        let mixed = Shape { same_step_tails: false, ..split };
        // 128 tokens: 112 up to the last full block, then the 16 a cached copy would compute.
        assert_eq!(step_work(0, 128, 512, split), vec![(112, Part::Chunk), (16, Part::Tail)]);
        assert_eq!(step_work(0, 128, 512, mixed), vec![(112, Part::Chunk)]);
        assert_eq!(step_work(112, 128, 512, mixed), vec![(16, Part::Tail)]);
        // A cached copy resumes at the tail: the same piece, in the same part.
        assert_eq!(step_work(112, 128, 512, split), vec![(16, Part::Tail)]);
        // No room for the tail: next step.
        assert_eq!(step_work(0, 128, 120, split), vec![(112, Part::Chunk)]);
        // Decoding, and prompts without caching.
        assert_eq!(step_work(128, 129, 512, split), vec![(1, Part::Decode)]);
        let uncached = Shape { caching: false, ..split };
        assert_eq!(step_work(0, 128, 512, uncached), vec![(128, Part::Chunk)]);
    }

    #[test]
    fn a_prefill_chunk_stops_where_a_cached_copy_would_resume() {
        // 176 tokens, blocks of 16: a later identical prompt reuses 160 and computes 16.
        assert_eq!(prefill_chunk(0, 176, 512, 16, true), 160);
        assert_eq!(prefill_chunk(160, 176, 512, 16, true), 16);
        // Without caching, or when the budget ends first, nothing changes.
        assert_eq!(prefill_chunk(0, 176, 512, 16, false), 176);
        assert_eq!(prefill_chunk(0, 176, 100, 16, true), 100);
        assert_eq!(prefill_chunk(100, 176, 512, 16, true), 60);
        // Shorter than a block plus one token: computed at once; decode takes one token.
        assert_eq!(prefill_chunk(0, 16, 512, 16, true), 16);
        assert_eq!(prefill_chunk(0, 17, 512, 16, true), 16);
        assert_eq!(prefill_chunk(176, 177, 512, 16, true), 1);
        assert_eq!(prefill_chunk(5, 5, 512, 16, true), 0);
    }
}
