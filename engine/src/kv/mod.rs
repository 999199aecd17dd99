//! KV cache bookkeeping, in pure Rust so it can be proven without a model.
//!
//! llama.cpp's unified KV cache stores the cells; a cell belongs to every llama.cpp sequence id it
//! is tagged with. hearth decides admission, sharing and eviction itself, in fixed-size blocks of
//! token positions, and turns its decisions into llama.cpp sequence operations ([`KvOp`]): tag a
//! cached prefix into a new sequence instead of recomputing it, untag, or drop cells.

mod block_manager;
mod hash;

pub(crate) use block_manager::{BlockManager, KvOp, SeqKey};
