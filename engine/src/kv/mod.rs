//! KV cache bookkeeping, in pure Rust so it can be proven without a model.
//!
//! llama.cpp stores the cells; hearth decides admission, sharing and eviction itself, in
//! fixed-size blocks of token positions, and turns its decisions into llama.cpp sequence
//! operations ([`KvOp`]). In the unified layout (`block_manager.rs`) a cell belongs to every
//! sequence id it is tagged with: a cached prefix is tagged into a new sequence instead of being
//! recomputed. In the per-sequence layout (`streams.rs`) each id has its own stream of cells: a
//! cached prefix is the new id's own stream cut at the match, or a copy of another stream.
//! [`Blocks`] (`layout.rs`) is whichever of the two is in use.

mod block_manager;
mod evictable;
mod hash;
mod layout;
mod streams;
mod tiers;

pub(crate) use block_manager::{BlockManager, KvOp, PrefixMatch, SeqKey};
pub(crate) use layout::{stream_sizing, Blocks};
pub(crate) use streams::StreamManager;
pub(crate) use tiers::{fingerprint, Found, PrefixTiers, Tier};

/// Tokens at the start of `a` and `b` that are equal, in whole blocks of `block_size`: how much of
/// one token list a KV copy of the other can give it.
pub(crate) fn common_whole_blocks(a: &[i32], b: &[i32], block_size: usize) -> usize {
    let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    n / block_size * block_size
}

/// Merge runs of operations that llama.cpp can do in one call: consecutive `Untag`s of one
/// sequence, or `Share`s between the same two sequences, over touching position ranges (in
/// either direction: a release walks its blocks backwards). Each llama.cpp call scans every cell
/// of the cache, so on a GPU-sized cache (hundreds of thousands of cells) one call per block made
/// finishing a sequence cost milliseconds; merged, it is one scan. Order is kept, so the effect is
/// the same.
pub(crate) fn coalesce(ops: &[KvOp]) -> Vec<KvOp> {
    let mut out: Vec<KvOp> = Vec::with_capacity(ops.len());
    for &op in ops {
        let merged = match (out.last_mut(), op) {
            (Some(KvOp::Untag { seq, p0, p1 }), KvOp::Untag { seq: s, p0: q0, p1: q1 }) if *seq == s => join(p0, p1, q0, q1),
            (Some(KvOp::Share { from, to, p0, p1 }), KvOp::Share { from: f, to: t, p0: q0, p1: q1 }) if *from == f && *to == t => {
                join(p0, p1, q0, q1)
            }
            _ => false,
        };
        if !merged {
            out.push(op);
        }
    }
    out
}

/// Extend `p0..p1` by `q0..q1` when the two ranges touch or overlap.
fn join(p0: &mut usize, p1: &mut usize, q0: usize, q1: usize) -> bool {
    if q0 > *p1 || q1 < *p0 {
        return false;
    }
    *p0 = (*p0).min(q0);
    *p1 = (*p1).max(q1);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_sequence_is_one_untag() {
        let ops: Vec<KvOp> = (0..16).rev().map(|b| KvOp::Untag { seq: 3, p0: b * 16, p1: (b + 1) * 16 }).collect();
        assert_eq!(coalesce(&ops), vec![KvOp::Untag { seq: 3, p0: 0, p1: 256 }]);
    }

    #[test]
    fn different_sequences_gaps_and_kinds_stay_apart_in_order() {
        let ops = [
            KvOp::Share { from: 1, to: 2, p0: 0, p1: 16 },
            KvOp::Share { from: 1, to: 2, p0: 16, p1: 32 },
            KvOp::Share { from: 5, to: 2, p0: 32, p1: 48 },
            KvOp::Untag { seq: 7, p0: 0, p1: 16 },
            KvOp::Untag { seq: 7, p0: 32, p1: 48 },
            KvOp::Untag { seq: 8, p0: 48, p1: 64 },
            KvOp::Untag { seq: 7, p0: 16, p1: 32 },
        ];
        assert_eq!(
            coalesce(&ops),
            vec![
                KvOp::Share { from: 1, to: 2, p0: 0, p1: 32 },
                KvOp::Share { from: 5, to: 2, p0: 32, p1: 48 },
                KvOp::Untag { seq: 7, p0: 0, p1: 16 },
                KvOp::Untag { seq: 7, p0: 32, p1: 48 },
                KvOp::Untag { seq: 8, p0: 48, p1: 64 },
                KvOp::Untag { seq: 7, p0: 16, p1: 32 },
            ]
        );
        assert!(coalesce(&[]).is_empty());
    }
}
