//! The prefix-cache hash chain: a full block's hash covers its parent's hash and its own tokens,
//! so equal hashes mean equal prefixes (the tokens are compared as well, so a hash collision can
//! never serve a wrong prefix). A salt mixes in the model and KV type.

use std::hash::{DefaultHasher, Hash, Hasher};

/// Hash of a full block given its parent's hash (`None` for the first block).
pub(crate) fn block_hash(salt: u64, parent: Option<u64>, tokens: &[i32]) -> u64 {
    let mut h = DefaultHasher::new();
    salt.hash(&mut h);
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// Hashes of every full block of `tokens`, in order.
pub(crate) fn chain(salt: u64, tokens: &[i32], block_size: usize) -> Vec<u64> {
    let mut parent = None;
    tokens
        .chunks_exact(block_size)
        .map(|block| {
            let h = block_hash(salt, parent, block);
            parent = Some(h);
            h
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_prefix_same_chain() {
        let a = chain(1, &[1, 2, 3, 4, 5, 6, 7], 2);
        let b = chain(1, &[1, 2, 3, 4, 9, 9], 2);
        assert_eq!(a.len(), 3);
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);
    }

    #[test]
    fn parent_matters() {
        assert_ne!(chain(1, &[1, 2, 3, 4], 2)[1], chain(1, &[9, 9, 3, 4], 2)[1]);
    }

    #[test]
    fn salt_separates_models() {
        assert_ne!(chain(1, &[1, 2], 2), chain(2, &[1, 2], 2));
    }
}
