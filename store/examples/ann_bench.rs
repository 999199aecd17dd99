//! ANN benchmark of the store's vector index against exact ground truth, on data prepared by
//! `store/bench/glove_faiss.py` (GloVe 50-d) or `store/bench/minilm_corpus.py` (hearth's own
//! embeddings, 384-d); `store/bench/faiss_hnsw.py` measures faiss's HNSW on the same files and
//! `store/bench/ann_compare.py` interleaves the two. Reports build time, memory, recall@10 and
//! queries per second per quantization, `ef` and thread count; then insert throughput and bytes
//! on disk per chunk through the whole store (sled + HNSW + BM25), with the first quantization
//! of `--quant`.
//!
//! Each speed is the median of `--repeats` timed windows; a window searches the whole query set
//! again and again until `--min-secs` have passed, so that short runs are not lost in the 10 ms
//! resolution of the CPU clock. `--json FILE` appends one JSON line per build and per search
//! setting, for `ann_compare.py`.
//!
//! `cargo run --release -p hearth-store --example ann_bench -- DATA_DIR [--m 16]
//! [--ef-construction 128] [--ef 32,64,128,256] [--threads 1,2] [--quant f32,f16,i8]
//! [--repeats 3] [--min-secs 1] [--build-threads 1] [--json FILE] [--store-docs 1000]`
//!
//! `--build-threads N` builds each index on N threads (usearch's concurrent add); the default, 1,
//! is the single-threaded build the earlier runs timed.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use store::vector::VectorIndex;
use store::{
    Attributes, DocumentStatus, NewChunk, NewCollection, NewDocument, Quantization, SearchMode, SearchRequest, Store, StoreConfig,
    VectorIndexConfig,
};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    dir: PathBuf,
    m: usize,
    ef_construction: usize,
    efs: Vec<usize>,
    threads: Vec<usize>,
    quants: Vec<Quantization>,
    repeats: usize,
    min_secs: f64,
    json: Option<PathBuf>,
    store_docs: usize,
    build_threads: usize,
}

fn parse_list<T: std::str::FromStr>(s: &str) -> BoxResult<Vec<T>> {
    s.split(',').map(|x| x.trim().parse::<T>().map_err(|_| format!("bad list item {x:?}").into())).collect()
}

fn parse_args() -> BoxResult<Args> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        dir: PathBuf::new(),
        m: 16,
        ef_construction: 128,
        efs: vec![32, 64, 128, 256],
        threads: vec![1, 2],
        quants: vec![Quantization::F32, Quantization::F16, Quantization::I8],
        repeats: 3,
        min_secs: 1.0,
        json: None,
        store_docs: 1000,
        build_threads: 1,
    };
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--m" => a.m = value()?.parse()?,
            "--ef-construction" => a.ef_construction = value()?.parse()?,
            "--ef" => a.efs = parse_list(&value()?)?,
            "--threads" => a.threads = parse_list(&value()?)?,
            "--store-docs" => a.store_docs = value()?.parse()?,
            "--repeats" => a.repeats = value()?.parse::<usize>()?.max(1),
            "--min-secs" => a.min_secs = value()?.parse()?,
            "--build-threads" => a.build_threads = value()?.parse::<usize>()?.max(1),
            "--json" => a.json = Some(PathBuf::from(value()?)),
            "--quant" => {
                a.quants = value()?
                    .split(',')
                    .map(|q| serde_json::from_value(serde_json::Value::String(q.to_string())))
                    .collect::<Result<_, _>>()?
            }
            _ if a.dir.as_os_str().is_empty() => a.dir = PathBuf::from(arg),
            _ => return Err(format!("unknown argument {arg}").into()),
        }
    }
    if a.dir.as_os_str().is_empty() {
        return Err("usage: ann_bench DATA_DIR [options]".into());
    }
    Ok(a)
}

fn read_f32(path: &Path) -> BoxResult<Vec<f32>> {
    let bytes = std::fs::read(path)?;
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn read_u32(path: &Path) -> BoxResult<Vec<u32>> {
    let bytes = std::fs::read(path)?;
    Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// CPU time of this process in nanoseconds (all threads, exited ones included), from
/// /proc/self/stat at clock-tick resolution (10 ms): unlike wall time it does not count time
/// other processes take from us, so it stays comparable on a busy machine.
fn cpu_ns() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    fields.iter().sum::<u64>() * 10_000_000
}

/// Resident memory of this process in bytes (VmRSS).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// What one timed window measured.
struct Window {
    /// Queries per second of wall time.
    qps: f64,
    /// Queries per CPU-second of this process.
    cpu_qps: f64,
    /// The last pass's results, for recall.
    results: Vec<Vec<(u64, f32)>>,
}

/// One timed window: the whole query set, searched again and again until `min_secs` have passed.
fn window(index: &VectorIndex, queries: &[Vec<f32>], threads: usize, min_secs: f64) -> BoxResult<Window> {
    let (t, c) = (Instant::now(), cpu_ns());
    let mut done = 0usize;
    loop {
        let results = index.search_batch(queries, 10, threads)?;
        done += queries.len();
        let wall = t.elapsed().as_secs_f64();
        if wall >= min_secs {
            let cpu = (cpu_ns() - c).max(1) as f64 / 1e9;
            return Ok(Window { qps: done as f64 / wall, cpu_qps: done as f64 / cpu, results });
        }
    }
}

/// Appends one JSON line to `--json`'s file, when given.
fn emit(path: Option<&Path>, line: serde_json::Value) -> BoxResult<()> {
    if let Some(path) = path {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

fn recall_at_10(results: &[Vec<(u64, f32)>], gt: &[u32]) -> f64 {
    let mut hit = 0usize;
    for (i, r) in results.iter().enumerate() {
        let truth: HashSet<u64> = gt[i * 10..i * 10 + 10].iter().map(|&k| k as u64).collect();
        hit += r.iter().take(10).filter(|(k, _)| truth.contains(k)).count();
    }
    hit as f64 / (results.len() * 10) as f64
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> BoxResult<()> {
    let args = parse_args()?;
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(args.dir.join("meta.json"))?)?;
    let (n, q, d) = (meta["n"].as_u64().unwrap_or(0) as usize, meta["q"].as_u64().unwrap_or(0) as usize, meta["d"].as_u64().unwrap_or(0) as usize);
    let base = read_f32(&args.dir.join("base.f32"))?;
    let queries: Vec<Vec<f32>> = read_f32(&args.dir.join("queries.f32"))?.chunks_exact(d).map(<[f32]>::to_vec).collect();
    let gt = read_u32(&args.dir.join("gt.u32"))?;
    assert_eq!((base.len(), queries.len(), gt.len()), (n * d, q, q * 10), "data files disagree with meta.json");
    let max_threads = args.threads.iter().copied().max().unwrap_or(1);
    println!("hearth-store (usearch {}) HNSW cosine M={} efC={}, {n} x {d}d, {q} queries", usearch::version(), args.m, args.ef_construction);

    println!("usearch SIMD available: {}", usearch::hardware_acceleration_available());
    let json = args.json.as_deref();

    for &quant in &args.quants {
        let config = VectorIndexConfig { connectivity: args.m, expansion_add: args.ef_construction, expansion_search: 64, quantization: quant };
        let rss_before = rss_bytes();
        let index = VectorIndex::new(d, &config, max_threads.max(args.build_threads))?;
        let items: Vec<(u64, &[f32])> = base.chunks_exact(d).enumerate().map(|(i, v)| (i as u64, v)).collect();
        let t = Instant::now();
        index.add_many(&items, args.build_threads)?;
        let build = t.elapsed().as_secs_f64();
        let rss = rss_bytes().saturating_sub(rss_before);
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        println!(
            "hearth  quant={quant:?} build {build:.1} s ({:.0} vectors/s, {} thread(s)), index {:.1} MiB serialized, {:.1} MiB in memory (usearch), RSS +{:.1} MiB",
            n as f64 / build,
            args.build_threads,
            mib(index.serialized_len()),
            mib(index.memory_usage()),
            mib(rss as usize)
        );
        emit(
            json,
            serde_json::json!({"kind": "build", "engine": "hearth", "quant": quant, "n": n, "d": d, "m": args.m,
                "ef_construction": args.ef_construction, "build_s": build, "build_threads": args.build_threads, "index_bytes": index.serialized_len(),
                "memory_bytes": index.memory_usage(), "rss_bytes": rss}),
        )?;
        for &threads in &args.threads {
            for &ef in &args.efs {
                index.set_expansion_search(ef);
                index.search_batch(&queries[..queries.len().min(200)], 10, threads)?;
                let (mut qps, mut cpu_qps) = (Vec::new(), Vec::new());
                let mut results = Vec::new();
                for _ in 0..args.repeats {
                    let w = window(&index, &queries, threads, args.min_secs)?;
                    qps.push(w.qps);
                    cpu_qps.push(w.cpu_qps);
                    results = w.results;
                }
                let recall = recall_at_10(&results, &gt);
                println!(
                    "hearth  quant={quant:?} threads={threads} ef={ef:<4} recall@10={recall:.4} QPS={:.0} (min {:.0}, max {:.0}) per-CPU-second={:.0}",
                    median(&qps),
                    qps.iter().copied().fold(f64::INFINITY, f64::min),
                    qps.iter().copied().fold(0.0, f64::max),
                    median(&cpu_qps)
                );
                emit(
                    json,
                    serde_json::json!({"kind": "search", "engine": "hearth", "quant": quant, "threads": threads, "ef": ef,
                        "recall": recall, "qps": qps, "cpu_qps": cpu_qps}),
                )?;
            }
        }
    }

    // Through the whole store: insert throughput, search through Store::search, bytes per chunk.
    let docs = args.store_docs.min(n / 100);
    if docs == 0 {
        return Ok(());
    }
    // Real passages when the data set has them (minilm_corpus.py: base rows, then the queries).
    let texts: Vec<String> = match std::fs::read_to_string(args.dir.join("texts.jsonl")) {
        Ok(body) => body.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).map(|v| v["text"].as_str().unwrap_or("").to_string())).collect::<Result<_, _>>()?,
        Err(_) => Vec::new(),
    };
    let dir = args.dir.join("store-bench");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let store = Store::open(StoreConfig { search_threads: max_threads, ..StoreConfig::new(&dir) })?;
    // The whole store runs with the first quantization of --quant.
    let quantization = args.quants.first().copied().unwrap_or_default();
    let index = VectorIndexConfig { connectivity: args.m, expansion_add: args.ef_construction, expansion_search: 64, quantization };
    let model = meta["model"].as_str().unwrap_or("glove-6b-50d").to_string();
    let coll = store.create_collection(NewCollection { name: "bench".into(), embedding_model: model, dimension: d, metadata: Attributes::new(), index })?;
    let t = Instant::now();
    for doc in 0..docs {
        let chunks = (0..100)
            .map(|j| {
                let row = doc * 100 + j;
                NewChunk {
                    text: match texts.get(row) {
                        Some(t) => t.clone(),
                        None => format!("row {row} of document {doc}: a chunk of text the size of a short sentence or two, as RAG chunks are."),
                    },
                    embedding: base[row * d..(row + 1) * d].to_vec(),
                    page: Some(1 + j as u32 / 10),
                    char_start: j as u64 * 100,
                    char_end: j as u64 * 100 + 99,
                    attributes: Attributes::new(),
                }
            })
            .collect();
        let new = NewDocument { id: Some(format!("doc-{doc}")), name: format!("doc-{doc}.txt"), content_hash: format!("{doc:064x}"), size: 10_000, attributes: Attributes::new(), status: DocumentStatus::Completed };
        store.add_document(&coll.id, new, chunks)?;
    }
    let secs = t.elapsed().as_secs_f64();
    let chunks = docs * 100;
    store.checkpoint()?;
    println!("store   insert {chunks} chunks in {docs} documents of 100: {secs:.1} s = {:.0} chunks/s (sled flush + HNSW + BM25 commit per document)", chunks as f64 / secs);
    // Searches: the same 1,000 queries through Store::search and through a bare index of the same
    // vectors and settings, each the median of --repeats windows, so the difference is what the
    // store adds (reading and decoding the hits' records and documents, filters, fusion).
    let searches = 1000.min(q);
    let requests: Vec<SearchRequest> = queries[..searches].iter().map(|v| SearchRequest::new(SearchMode::Vector, "", Some(v.clone()))).collect();
    let hybrid: Vec<SearchRequest> = queries[..searches]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let text = match texts.get(n + i) {
                Some(t) => t.split_whitespace().take(12).collect::<Vec<_>>().join(" "),
                None => format!("row {} document", i * 7),
            };
            SearchRequest::new(SearchMode::Hybrid, text, Some(v.clone()))
        })
        .collect();
    let bare = VectorIndex::new(d, &index, args.build_threads)?;
    let items: Vec<(u64, &[f32])> = base[..chunks * d].chunks_exact(d).enumerate().map(|(i, v)| (i as u64, v)).collect();
    bare.add_many(&items, args.build_threads)?;
    bare.set_expansion_search(64);
    let timed = |run: &mut dyn FnMut() -> BoxResult<()>| -> BoxResult<(f64, f64)> {
        run()?;
        let (mut qps, mut cpu_qps) = (Vec::new(), Vec::new());
        for _ in 0..args.repeats {
            let (t, c, mut done) = (Instant::now(), cpu_ns(), 0usize);
            while t.elapsed().as_secs_f64() < args.min_secs {
                run()?;
                done += searches;
            }
            qps.push(done as f64 / t.elapsed().as_secs_f64());
            cpu_qps.push(done as f64 / ((cpu_ns() - c).max(1) as f64 / 1e9));
        }
        Ok((median(&qps), median(&cpu_qps)))
    };
    let (bare_qps, bare_cpu) = timed(&mut || {
        for v in &queries[..searches] {
            bare.search(v, 10)?;
        }
        Ok(())
    })?;
    let (store_qps, store_cpu) = timed(&mut || {
        for r in &requests {
            store.search(&coll.id, r)?;
        }
        Ok(())
    })?;
    let (hybrid_qps, hybrid_cpu) = timed(&mut || {
        for r in &hybrid {
            store.search(&coll.id, r)?;
        }
        Ok(())
    })?;
    // The cost of a hit's record, from the slope between 1 and 10 results (the HNSW work is the
    // same: ef=64 candidates either way).
    let top1: Vec<SearchRequest> = requests.iter().cloned().map(|mut r| { r.max_num_results = 1; r }).collect();
    let (_, top1_cpu) = timed(&mut || {
        for r in &top1 {
            store.search(&coll.id, r)?;
        }
        Ok(())
    })?;
    println!("store   bare index ({quantization:?}) ef=64 top-10: {bare_qps:.0} QPS ({bare_cpu:.0} per CPU-second), 1 thread");
    println!("store   Store::search vector top-1: {top1_cpu:.0} per CPU-second; each further hit's record costs {:.1} us", (1e6 / store_cpu - 1e6 / top1_cpu) / 9.0);
    println!(
        "store   Store::search vector ef=64 top-10 with records: {store_qps:.0} QPS ({store_cpu:.0} per CPU-second); records add {:.0} us per search (CPU)",
        1e6 / store_cpu - 1e6 / bare_cpu
    );
    println!("store   Store::search hybrid (RRF of 30+30): {hybrid_qps:.0} QPS ({hybrid_cpu:.0} per CPU-second)");
    drop(store);
    let total = dir_bytes(&dir);
    let sled = dir_bytes(&dir.join("sled"));
    println!(
        "store   on disk: {:.0} bytes/chunk in all (sled {:.0}, indexes {:.0}); raw f32 vector {} bytes",
        total as f64 / chunks as f64,
        sled as f64 / chunks as f64,
        (total - sled) as f64 / chunks as f64,
        d * 4
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
