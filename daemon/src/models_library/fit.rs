//! The numbers for a model's fit before load ([`engine::fit`]): its layers, weights and KV
//! shape from the GGUF header, the KV cells its `[[models]]` entry asks for, the GPU's free memory
//! and the RAM available now. Used before every load (a model that cannot fit is refused with the
//! numbers instead of failing inside llama.cpp, or being killed for memory), by `hearth info` and by
//! `hearth models show`.

use engine::fit::{Fit, FitInput};

use super::gguf;

/// What a model's context asks of the KV cache (from its `[[models]]` entry: `models::kv_ask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvAsk {
    /// A chat model (an embedding model's cache is one context).
    pub chat: bool,
    /// `max_model_len` (0: the model's training context).
    pub max_model_len: u32,
    pub max_num_seqs: u32,
    /// `kv_cache_tokens` (0: automatic).
    pub kv_cache_tokens: u32,
    pub q8_0: bool,
    pub n_gpu_layers: u32,
    /// `kv_layout = "per_sequence"` set explicitly: the engine then makes a stream of
    /// `max_model_len` cells (rounded up to 256) for each of `max_num_seqs` sequences.
    pub per_sequence: bool,
}

impl KvAsk {
    /// KV cells the engine creates, and how that came about (for the message). A chat model's
    /// cache is `kv_cache_tokens` (at least `max_model_len`); with `0` it is `max_model_len` on
    /// the CPU, and on a GPU at least that (the engine then gives it what
    /// `gpu_memory_utilization` leaves, checked by the engine).
    fn tokens(&self, n_ctx_train: u32) -> (u64, String) {
        let len = match (self.max_model_len, n_ctx_train) {
            (0, train) => train,
            (n, 0) => n,
            (n, train) => n.min(train),
        };
        match (self.chat, self.kv_cache_tokens) {
            (true, _) if self.per_sequence => {
                let cells = len.max(1).div_ceil(256) * 256;
                let seqs = self.max_num_seqs.max(1);
                (u64::from(seqs) * u64::from(cells), format!("kv_layout per_sequence: max_num_seqs {seqs} streams of max_model_len {len} ({cells} cells each)"))
            }
            (true, k) if k > 0 => {
                let k = k.max(len);
                (u64::from(k), format!("kv_cache_tokens {k} (max_model_len {len}, max_num_seqs {})", self.max_num_seqs))
            }
            _ => (u64::from(len), format!("max_model_len {len}")),
        }
    }
}

/// Where the model `path` would go now, or why it cannot; `Ok(None)` when its header lacks the
/// numbers (an unknown architecture: llama.cpp decides alone).
pub fn plan(path: &std::path::Path, ask: KvAsk) -> Result<Option<Fit>, String> {
    let header = gguf::read(path).map_err(|e| e.to_string())?;
    let Some(arch) = header.architecture().map(str::to_owned) else { return Ok(None) };
    let key = |k: &str| header.uint(&format!("{arch}.{k}"));
    let (Some(n_layer), Some(n_embd), Some(n_head)) = (key("block_count"), key("embedding_length"), key("attention.head_count")) else {
        return Ok(None);
    };
    let n_head_kv = key("attention.head_count_kv").unwrap_or(n_head);
    let weights = model_bytes(path);
    let (kv_tokens, kv_reason) = ask.tokens(header.context_length().and_then(|c| u32::try_from(c).ok()).unwrap_or(0));
    let input = FitInput {
        n_layers: u32::try_from(n_layer).unwrap_or(u32::MAX),
        weights_bytes: weights,
        kv_bytes_per_token: engine::fit::kv_bytes_per_token(n_layer, n_embd, n_head, n_head_kv, ask.q8_0),
        kv_tokens,
        requested_gpu_layers: ask.n_gpu_layers,
        gpu_free: gpu_free(),
        gpu_reserve_bytes: engine::COMPUTE_RESERVE_BYTES,
        ram_available: mem_available(),
        kv_reason,
    };
    engine::fit::fit(&input).map(Some).map_err(|e| e.to_string())
}

/// The model's bytes: the file, plus the other shards of a split model beside it.
fn model_bytes(path: &std::path::Path) -> u64 {
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // `name-00001-of-00003.gguf`: sum the siblings of the same split.
    match (name.find("-00001-of-"), path.parent()) {
        (Some(at), Some(dir)) => std::fs::read_dir(dir).map_or(size(path), |entries| {
            let stem = &name[..at];
            entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{stem}-0"))).map(|e| size(&e.path())).sum()
        }),
        _ => size(path),
    }
}

/// Free memory of the GPUs llama.cpp found, summed, and their names (`CUDA0`); `None` without one.
fn gpu_free() -> Option<(u64, String)> {
    let gpus: Vec<_> = engine::devices().into_iter().filter(|d| d.kind.is_gpu()).collect();
    if !gpus.is_empty() {
        let names = gpus.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join("+");
        return Some((gpus.iter().map(|d| d.memory_free).sum(), names));
    }
    engine::cuda_memory().map(|(free, _)| (free, "the GPU".to_owned()))
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(chat: bool, max_model_len: u32, kv_cache_tokens: u32) -> KvAsk {
        KvAsk { chat, max_model_len, max_num_seqs: 4, kv_cache_tokens, q8_0: false, n_gpu_layers: 999, per_sequence: false }
    }

    #[test]
    fn the_kv_ask_follows_the_engine() {
        assert_eq!(ask(true, 0, 0).tokens(8192).0, 8192, "0: the training context");
        assert_eq!(ask(true, 100_000, 0).tokens(8192).0, 8192, "clamped to it");
        assert_eq!(ask(true, 2048, 32_768).tokens(8192), (32_768, "kv_cache_tokens 32768 (max_model_len 2048, max_num_seqs 4)".into()));
        assert_eq!(ask(true, 2048, 1024).tokens(8192).0, 2048, "at least max_model_len");
        assert_eq!(ask(false, 512, 0).tokens(0), (512, "max_model_len 512".into()));
        let streams = KvAsk { per_sequence: true, ..ask(true, 2000, 0) };
        assert_eq!(streams.tokens(8192), (4 * 2048, "kv_layout per_sequence: max_num_seqs 4 streams of max_model_len 2000 (2048 cells each)".into()));
        assert_eq!(KvAsk { per_sequence: true, ..ask(false, 512, 0) }.tokens(0).0, 512, "an embedding model has one context");
    }

    #[test]
    fn the_real_chat_model_fits_and_an_absurd_kv_cache_does_not() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(path.is_file(), "{} is missing: `make setup` fetches it", path.display());
        let fit = plan(&path, ask(true, 2048, 0)).unwrap_or_else(|e| panic!("{e}"));
        assert!(fit.is_some_and(|f| f.to_string().starts_with("fits: ")));
        let err = plan(&path, ask(true, 2048, 4_000_000_000)).err().unwrap_or_default();
        assert!(err.starts_with("does not fit: needs ") && err.contains("for KV at kv_cache_tokens 4000000000"), "{err}");
    }
}
