//! The vector index of one collection: a usearch HNSW graph (cosine), derived from sled.
//!
//! Invariants and rules (usearch 2.26: no auto-grow, `reserve` not beside `add`, thread slots):
//! - vectors are normalised before they enter the index or a query, so cosine is an inner
//!   product;
//! - with i8 quantization the store makes the codes itself ([`i8_codes`]: each vector scaled so
//!   that its largest component is ±127, rounded) and usearch compares them with its cosine
//!   kernel, which is blind to each vector's scale. usearch's own f32-to-i8 cast scales by the
//!   vector's length and truncates, so a 384-d unit vector, whose components are about 0.05,
//!   kept only a few levels of 127 and recall@10 stopped near 0.95 (BENCHMARKS.md, Store);
//! - `reserve` runs under the write lock, never beside `add`; capacity grows by doubling before an
//!   add would pass it (usearch does not grow by itself);
//! - usearch serves at most `threads` concurrent callers; a counting semaphore makes the rest wait
//!   instead of failing;
//! - the file is `[magic 8][format u32][seq u64][payload length u64][crc32 u32][usearch bytes]`,
//!   written to a temp file, fsynced, renamed over the old one and the directory fsynced; a file
//!   whose magic, length or checksum is wrong is reported damaged and the caller rebuilds.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Condvar, Mutex, RwLock};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{Result, StoreError};
use crate::model::{Quantization, VectorIndexConfig};

const MAGIC: &[u8; 8] = b"HRTHVEC\0";
/// Version of the vector index file this build writes and reads.
pub const VECTOR_FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 4;

/// A counting semaphore for usearch's thread slots.
#[derive(Debug)]
struct Slots {
    /// Free slots.
    free: Mutex<usize>,
    /// Signalled when a slot is returned.
    returned: Condvar,
}

/// A held slot; returned on drop.
struct Slot<'a>(&'a Slots);

impl Slots {
    fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.returned.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.returned.notify_one();
    }
}

/// Why a saved index could not be loaded.
#[derive(Debug)]
pub enum LoadOutcome {
    /// Loaded; it reflects sled up to this sequence number.
    Loaded(VectorIndex, u64),
    /// No file.
    Missing,
    /// The file is damaged or of another format; the reason says how.
    Damaged(String),
}

/// A thread-safe HNSW index over normalised vectors.
pub struct VectorIndex {
    /// The usearch index; write-locked only for reserve, save and load.
    index: RwLock<Index>,
    /// Thread slots.
    slots: Slots,
    /// Number of thread slots reserved in usearch.
    threads: usize,
    /// Vector dimension.
    dimension: usize,
    /// Element type of the stored vectors; i8 codes are made here, not by usearch.
    quantization: Quantization,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex").field("dimension", &self.dimension).field("len", &self.len()).finish()
    }
}

fn vector_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Vector(e.to_string())
}

/// Returns `v` as i8 codes for a cosine index: scaled so that its largest component is ±127,
/// rounded to nearest. Cosine ignores the scale, so each vector gets the whole code range.
pub fn i8_codes(v: &[f32]) -> Vec<i8> {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs())); // f32::max skips NaN
    if max == 0.0 {
        return vec![0; v.len()];
    }
    let scale = 127.0 / max;
    v.iter().map(|x| (x * scale).round().clamp(-127.0, 127.0) as i8).collect()
}

/// Returns `v` scaled to unit length (the caller has rejected zero vectors).
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

impl VectorIndex {
    /// An empty index. `threads` is the number of concurrent callers usearch gets slots for.
    pub fn new(dimension: usize, config: &VectorIndexConfig, threads: usize) -> Result<Self> {
        let options = IndexOptions {
            dimensions: dimension,
            // Vectors arrive normalised, so cosine equals the inner product, which costs one dot
            // product instead of three; i8 codes are not unit vectors and keep the cosine kernel.
            metric: match config.quantization {
                Quantization::I8 => MetricKind::Cos,
                Quantization::F32 | Quantization::F16 => MetricKind::IP,
            },
            quantization: match config.quantization {
                Quantization::F32 => ScalarKind::F32,
                Quantization::F16 => ScalarKind::F16,
                Quantization::I8 => ScalarKind::I8,
            },
            connectivity: config.connectivity,
            expansion_add: config.expansion_add,
            expansion_search: config.expansion_search,
            multi: false,
        };
        let index = Index::new(&options).map_err(vector_err)?;
        let threads = threads.max(1);
        index.reserve_capacity_and_threads(64, threads).map_err(vector_err)?;
        Ok(VectorIndex {
            index: RwLock::new(index),
            slots: Slots { free: Mutex::new(threads), returned: Condvar::new() },
            threads,
            dimension,
            quantization: config.quantization,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of live vectors.
    pub fn len(&self) -> usize {
        self.read().size()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: u64) -> bool {
        self.read().contains(key)
    }

    /// Changes the search expansion (`ef`) at run time.
    pub fn set_expansion_search(&self, ef: usize) {
        self.read().change_expansion_search(ef);
    }

    /// Makes room for `extra` more vectors, doubling capacity.
    fn ensure_capacity(&self, extra: usize) -> Result<()> {
        let (size, capacity) = {
            let i = self.read();
            (i.size(), i.capacity())
        };
        if size + extra > capacity {
            let target = (size + extra).max(capacity * 2);
            self.write().reserve_capacity_and_threads(target, self.threads).map_err(vector_err)?;
        }
        Ok(())
    }

    /// Adds vectors (idempotent: a key already present is left alone), using up to `threads`
    /// threads for a large batch.
    pub fn add_many(&self, items: &[(u64, &[f32])], threads: usize) -> Result<()> {
        self.ensure_capacity(items.len())?;
        let guard = self.read();
        let add_one = |key: u64, v: &[f32]| -> Result<()> {
            if v.len() != self.dimension {
                return Err(StoreError::Invalid(format!("vector of dimension {} for an index of {}", v.len(), self.dimension)));
            }
            if guard.contains(key) {
                return Ok(());
            }
            let _slot = self.slots.acquire();
            match self.quantization {
                Quantization::I8 => guard.add(key, &i8_codes(v)),
                Quantization::F32 | Quantization::F16 => guard.add(key, &normalized(v)),
            }
            .map_err(vector_err)
        };
        let threads = threads.clamp(1, self.threads);
        if threads == 1 || items.len() < 256 {
            return items.iter().try_for_each(|(k, v)| add_one(*k, v));
        }
        let per = items.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = items.chunks(per).map(|part| s.spawn(|| part.iter().try_for_each(|(k, v)| add_one(*k, v)))).collect();
            handles.into_iter().try_for_each(|h| h.join().map_err(|_| StoreError::Vector("an insert thread panicked".into()))?)
        })
    }

    /// Removes a key; removing an absent key is not an error.
    pub fn remove(&self, key: u64) -> Result<()> {
        let guard = self.read();
        let _slot = self.slots.acquire();
        guard.remove(key).map(|_| ()).map_err(vector_err)
    }

    /// The `k` nearest keys to `query` with their cosine similarity, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>> {
        if query.len() != self.dimension {
            return Err(StoreError::Invalid(format!("query has dimension {}, the index {}", query.len(), self.dimension)));
        }
        let guard = self.read();
        let _slot = self.slots.acquire();
        let m = match self.quantization {
            Quantization::I8 => guard.search(&i8_codes(query), k),
            Quantization::F32 | Quantization::F16 => guard.search(&normalized(query), k),
        }
        .map_err(vector_err)?;
        Ok(m.keys.into_iter().zip(m.distances).map(|(k, d)| (k, 1.0 - d)).collect())
    }

    /// Searches many queries on up to `threads` threads; results in query order.
    pub fn search_batch(&self, queries: &[Vec<f32>], k: usize, threads: usize) -> Result<Vec<Vec<(u64, f32)>>> {
        let threads = threads.clamp(1, self.threads);
        if threads == 1 || queries.len() < 2 {
            return queries.iter().map(|q| self.search(q, k)).collect();
        }
        let per = queries.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> =
                queries.chunks(per).map(|part| s.spawn(move || part.iter().map(|q| self.search(q, k)).collect::<Result<Vec<_>>>())).collect();
            let mut out = Vec::with_capacity(queries.len());
            for h in handles {
                out.extend(h.join().map_err(|_| StoreError::Vector("a search thread panicked".into()))??);
            }
            Ok(out)
        })
    }

    /// Serialized size in bytes.
    pub fn serialized_len(&self) -> usize {
        self.read().serialized_length()
    }

    /// Bytes of memory the index holds (vectors, graph and reserved capacity), as usearch counts it.
    pub fn memory_usage(&self) -> usize {
        self.read().memory_usage()
    }

    /// Saves atomically to `path`, recording that the index reflects sled up to `seq`.
    pub fn save(&self, path: &Path, seq: u64) -> Result<()> {
        let payload = {
            let guard = self.write();
            let mut buf = vec![0u8; guard.serialized_length()];
            guard.save_to_buffer(&mut buf).map_err(vector_err)?;
            buf
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VECTOR_FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&seq.to_le_bytes());
        header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        header.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        write_file_atomic(path, &[&header, &payload])
    }

    /// Loads a file written by [`VectorIndex::save`]; damage is an outcome, not an error.
    pub fn load(path: &Path, dimension: usize, config: &VectorIndexConfig, threads: usize) -> Result<LoadOutcome> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LoadOutcome::Missing),
            Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
        let damaged = |why: &str| Ok(LoadOutcome::Damaged(format!("{}: {why}", path.display())));
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return damaged("not a hearth vector index (bad magic or short file)");
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| (u32_at(o) as u64) | ((u32_at(o + 4) as u64) << 32);
        let version = u32_at(8);
        if version != VECTOR_FORMAT_VERSION {
            return damaged(&format!("format version {version}, this build reads {VECTOR_FORMAT_VERSION}"));
        }
        let seq = u64_at(12);
        let len = u64_at(20) as usize;
        let crc = u32_at(28);
        let payload = &bytes[HEADER_LEN..];
        if payload.len() != len {
            return damaged(&format!("truncated: {} of {len} payload bytes", payload.len()));
        }
        if crc32fast::hash(payload) != crc {
            return damaged("checksum mismatch");
        }
        let index = VectorIndex::new(dimension, config, threads)?;
        {
            let guard = index.write();
            if let Err(e) = guard.load_from_buffer(payload) {
                return damaged(&format!("usearch refused it: {e}"));
            }
            if guard.dimensions() != dimension {
                return damaged(&format!("dimension {} instead of {dimension}", guard.dimensions()));
            }
            // Loading resets the search settings and thread slots to the file's; restore ours.
            guard.change_expansion_search(config.expansion_search);
            guard.change_expansion_add(config.expansion_add);
            let capacity = guard.capacity().max(guard.size()).max(64);
            guard.reserve_capacity_and_threads(capacity, index.threads).map_err(vector_err)?;
        }
        Ok(LoadOutcome::Loaded(index, seq))
    }
}

/// Removes leftovers of interrupted saves in `dir`: ours (`*.tmp`) and tantivy's atomic writes
/// (`.tmp*`); never fails start-up. Called before any writer works in `dir`.
pub(crate) fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.ends_with(".tmp") || name.starts_with(".tmp")) && entry.file_type().is_ok_and(|t| t.is_file()) {
            match fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(path = %entry.path().display(), "Removed stale temp file."),
                Err(e) => tracing::warn!(path = %entry.path().display(), error = %e, "Could not remove stale temp file."),
            }
        }
    }
}

/// Writes `parts` to `path` atomically: temp file, fsync, rename, fsync directory. A failed
/// write (a full disk) removes its temp file, so it gives back the space it took, and leaves the
/// old file in place.
pub(crate) fn write_file_atomic(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let written = (|| {
        let mut f = File::create(&tmp).map_err(|e| StoreError::io(ctx("creating"), e))?;
        for p in parts {
            f.write_all(p).map_err(|e| StoreError::io(ctx("writing"), e))?;
        }
        f.sync_all().map_err(|e| StoreError::io(ctx("fsyncing"), e))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| StoreError::io(format!("renaming {} to {}", tmp.display(), path.display()), e))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(format!("fsyncing {}", dir.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    fn config(q: Quantization) -> VectorIndexConfig {
        VectorIndexConfig { quantization: q, ..VectorIndexConfig::default() }
    }

    fn vectors(n: usize, dim: usize) -> Vec<(u64, Vec<f32>)> {
        let mut rng = fastrand::Rng::with_seed(7);
        (0..n).map(|i| (i as u64 + 1, (0..dim).map(|_| rng.f32() - 0.5).collect())).collect()
    }

    #[test]
    fn finds_itself_grows_past_capacity_and_removes() {
        for q in [Quantization::F32, Quantization::F16, Quantization::I8] {
            let idx = VectorIndex::new(8, &config(q), 2).unwrap();
            let data = vectors(500, 8);
            let items: Vec<_> = data.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            idx.add_many(&items, 2).unwrap();
            idx.add_many(&items[..10], 1).unwrap(); // idempotent
            assert_eq!(idx.len(), 500);
            // HNSW is approximate: built by two threads, the graph once hid item 43 from a search
            // at the default expansion (64) under a loaded `make test`. An expansion past the
            // index size makes this exact; recall at the defaults is measured in BENCHMARKS.md.
            idx.set_expansion_search(512);
            let hits = idx.search(&data[42].1, 3).unwrap();
            assert_eq!(hits[0].0, 43, "{q:?}");
            assert!(hits[0].1 > 0.95, "{q:?}: similarity {}", hits[0].1);
            idx.remove(43).unwrap();
            idx.remove(43).unwrap();
            assert!(!idx.contains(43));
            assert_eq!(idx.len(), 499);
            assert_ne!(idx.search(&data[42].1, 1).unwrap()[0].0, 43);
        }
    }

    #[test]
    fn i8_codes_use_the_whole_range_and_keep_cosine() {
        assert_eq!(i8_codes(&[0.04, -0.1, 0.02]), vec![51, -127, 25]);
        assert_eq!(i8_codes(&[0.0; 4]), vec![0; 4]);
        let cos = |a: &[f32], b: &[f32]| {
            let dot = a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
            dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
        };
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..50 {
            // Unit vectors of 384 dimensions, pairs of every similarity: components about 0.05.
            let a = normalized(&(0..384).map(|_| rng.f32() - 0.5).collect::<Vec<_>>());
            let mix = rng.f32();
            let b = normalized(&a.iter().map(|x| x * mix + (rng.f32() - 0.5) * 0.05).collect::<Vec<_>>());
            let (ca, cb) = (i8_codes(&a), i8_codes(&b));
            assert_eq!(ca.iter().map(|c| c.unsigned_abs()).max(), Some(127));
            let fa: Vec<f32> = ca.iter().map(|&c| c as f32).collect();
            let fb: Vec<f32> = cb.iter().map(|&c| c as f32).collect();
            assert!((cos(&fa, &fb) - cos(&a, &b)).abs() < 0.005, "codes {} vs exact {}", cos(&fa, &fb), cos(&a, &b));
        }
    }

    #[test]
    fn batch_search_matches_single_search() {
        let idx = VectorIndex::new(8, &config(Quantization::F32), 2).unwrap();
        let data = vectors(300, 8);
        let items: Vec<_> = data.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        idx.add_many(&items, 1).unwrap();
        let queries: Vec<Vec<f32>> = data.iter().take(20).map(|(_, v)| v.clone()).collect();
        let batch = idx.search_batch(&queries, 5, 2).unwrap();
        for (q, b) in queries.iter().zip(&batch) {
            assert_eq!(&idx.search(q, 5).unwrap(), b);
        }
        assert!(idx.search(&[1.0; 3], 1).is_err());
    }

    #[test]
    fn save_load_round_trip_and_damage_detection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.hnsw");
        let cfg = config(Quantization::F16);
        assert!(matches!(VectorIndex::load(&path, 8, &cfg, 2).unwrap(), LoadOutcome::Missing));
        let idx = VectorIndex::new(8, &cfg, 2).unwrap();
        let data = vectors(100, 8);
        let items: Vec<_> = data.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        idx.add_many(&items, 1).unwrap();
        idx.save(&path, 77).unwrap();
        assert!(!path.with_extension("tmp").exists());
        match VectorIndex::load(&path, 8, &cfg, 2).unwrap() {
            LoadOutcome::Loaded(loaded, seq) => {
                assert_eq!(seq, 77);
                assert_eq!(loaded.len(), 100);
                assert_eq!(loaded.search(&data[5].1, 1).unwrap()[0].0, 6);
                // The loaded index accepts more vectors past its loaded capacity.
                let more = vectors(200, 8);
                let extra: Vec<_> = more.iter().map(|(k, v)| (*k + 1000, v.as_slice())).collect();
                loaded.add_many(&extra, 2).unwrap();
                assert_eq!(loaded.len(), 300);
            }
            other => panic!("expected a loaded index, got {other:?}"),
        }
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(VectorIndex::load(&path, 8, &cfg, 2).unwrap(), LoadOutcome::Damaged(_)));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        fs::write(&path, &flipped).unwrap();
        assert!(matches!(VectorIndex::load(&path, 8, &cfg, 2).unwrap(), LoadOutcome::Damaged(_)));
        fs::write(&path, b"garbage").unwrap();
        assert!(matches!(VectorIndex::load(&path, 8, &cfg, 2).unwrap(), LoadOutcome::Damaged(_)));
    }

    #[test]
    fn stale_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("v.tmp"), b"half").unwrap();
        fs::write(dir.path().join(".tmpA1b2C3"), b"tantivy's half").unwrap();
        fs::write(dir.path().join("v.hnsw"), b"keep").unwrap();
        fs::write(dir.path().join("meta.json"), b"keep").unwrap();
        remove_stale_temp_files(dir.path());
        assert!(!dir.path().join("v.tmp").exists());
        assert!(!dir.path().join(".tmpA1b2C3").exists());
        assert!(dir.path().join("v.hnsw").exists());
        assert!(dir.path().join("meta.json").exists());
    }
}
