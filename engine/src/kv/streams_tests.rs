//! Tests of the per-sequence bookkeeping without a model.

use super::*;

const BS: usize = 4;

/// 3 streams of 4 blocks (16 tokens each), caching on.
fn streams() -> StreamManager {
    StreamManager::new(3, 4, BS, true)
}

fn tokens(first: i32, len: usize) -> Vec<i32> {
    (first..first + len as i32).collect()
}

/// Run `key` on `id` over `prompt` and compute all of it (registered whole blocks).
fn run(m: &mut StreamManager, key: SeqKey, id: i32, prompt: &[i32]) -> Vec<KvOp> {
    let prefix = m.match_prefix(prompt, Some(id));
    let ops = m.allocate(key, id, prompt.len(), &prefix).unwrap_or_else(|_| panic!("no space"));
    m.register(key, prompt, prompt.len());
    ops
}

#[test]
fn a_finished_prompt_stays_in_its_stream_and_a_repeat_there_keeps_it_without_a_copy() {
    let mut m = streams();
    let p = tokens(0, 10);
    assert!(run(&mut m, 1, 0, &p).is_empty(), "an empty stream needs no op");
    assert_eq!(m.registered_tokens(1), 8, "two whole blocks");
    assert_eq!(m.release(1), vec![KvOp::Untag { seq: 0, p0: 8, p1: 16 }]);
    assert!(m.is_holding(0));
    assert_eq!((m.active_blocks(), m.cached_blocks(), m.free_blocks()), (0, 2, 10));
    // The same prompt on the same id: its own cells up to the match (8: the last token is computed).
    let found = m.match_prefix(&p, Some(0));
    assert_eq!((found.tokens, found.source), (8, Some(0)));
    assert_eq!(m.allocate(2, 0, 11, &found), Ok(vec![KvOp::Untag { seq: 0, p0: 8, p1: 16 }]));
    assert_eq!(m.registered_tokens(2), 8);
}

#[test]
fn a_prefix_in_another_stream_is_copied_whole_then_cut() {
    let mut m = streams();
    let p = tokens(0, 13);
    run(&mut m, 1, 0, &p); // still running: a copy source all the same
    let mut q = tokens(0, 8);
    q.extend(tokens(100, 5));
    let found = m.match_prefix(&q, Some(1));
    assert_eq!((found.tokens, found.source), (8, Some(0)));
    assert_eq!(m.allocate(2, 1, q.len(), &found), Ok(vec![KvOp::CopyStream { from: 0, to: 1, keep: 8 }]));
    assert_eq!(m.registered_tokens(2), 8, "the copy is registered as the new stream's prefix");
    m.register(2, &q, q.len());
    assert_eq!(m.registered_tokens(2), 12);
}

#[test]
fn the_longest_match_wins_and_the_target_wins_a_tie() {
    let mut m = streams();
    let long = tokens(0, 14);
    run(&mut m, 1, 0, &long[..9]);
    run(&mut m, 2, 1, &long);
    m.release(1);
    m.release(2);
    assert_eq!(m.match_prefix(&long, Some(0)).source, Some(1), "12 tokens in stream 1 beat 8 in stream 0");
    let short = tokens(0, 9);
    assert_eq!(m.match_prefix(&short, Some(0)).source, Some(0), "8 each: the target's own, no copy");
    assert_eq!(m.match_prefix(&short, Some(2)).source, Some(0), "8 each, the target has none: the lowest id");
}

#[test]
fn a_match_leaves_the_last_token_to_compute_and_whole_blocks_only() {
    let mut m = streams();
    let p = tokens(0, 12);
    run(&mut m, 1, 0, &p);
    m.release(1);
    assert_eq!(m.match_prefix(&p, None).tokens, 8, "12 cached, but the 12th token must be computed for its logits");
    let mut q = tokens(0, 6);
    q.extend(tokens(50, 6));
    assert_eq!(m.match_prefix(&q, None).tokens, 4, "6 common tokens: one whole block");
    assert_eq!(m.match_prefix(&tokens(1, 12), None), PrefixMatch::default());
    assert_eq!(m.match_prefix(&[], None), PrefixMatch::default());
}

#[test]
fn a_stream_taken_for_another_prompt_drops_its_cells() {
    let mut m = streams();
    run(&mut m, 1, 0, &tokens(0, 9));
    m.release(1);
    let other = tokens(500, 9);
    let found = m.match_prefix(&other, Some(0));
    assert_eq!(found, PrefixMatch::default());
    assert_eq!(m.allocate(2, 0, 9, &found), Ok(vec![KvOp::Untag { seq: 0, p0: 0, p1: 16 }]));
    assert_eq!(m.registered_tokens(2), 0);
}

#[test]
fn a_sequence_grows_within_its_stream_and_never_past_it() {
    let mut m = streams();
    run(&mut m, 1, 0, &tokens(0, 5));
    assert_eq!(m.grow(1, 16), Ok(Vec::new()));
    assert_eq!(m.active_blocks(), 4);
    assert_eq!(m.grow(1, 17), Err(NoSpace), "one stream is the most a sequence gets");
    assert_eq!(m.allocate(2, 1, 17, &PrefixMatch::default()), Err(NoSpace));
    assert_eq!(m.allocate(2, 0, 4, &PrefixMatch::default()), Err(NoSpace), "stream 0 runs a sequence");
    assert!(m.fits(16) && !m.fits(17));
}

#[test]
fn without_caching_nothing_is_registered_and_a_release_drops_the_stream() {
    let mut m = StreamManager::new(2, 4, BS, false);
    let p = tokens(0, 10);
    run(&mut m, 1, 0, &p);
    assert_eq!(m.registered_tokens(1), 0);
    assert_eq!(m.release(1), vec![KvOp::Untag { seq: 0, p0: 0, p1: 16 }]);
    assert!(!m.is_holding(0));
    assert_eq!(m.match_prefix(&p, Some(0)), PrefixMatch::default());
}

#[test]
fn an_idle_stream_can_be_emptied_but_not_a_running_one() {
    let mut m = streams();
    run(&mut m, 1, 0, &tokens(0, 9));
    assert_eq!(m.evict_holder(0), None);
    m.release(1);
    assert_eq!(m.evict_holder(0), Some(vec![KvOp::Untag { seq: 0, p0: 0, p1: 16 }]));
    assert!(!m.is_holding(0));
    assert_eq!(m.evict_holder(0), Some(Vec::new()));
    assert_eq!(m.evict_holder(7), None, "no such stream");
}
