#!/usr/bin/env python3
"""Measures faiss-cpu's HNSW (inner product on unit vectors = cosine) on the files
`ann_bench` reads (base.f32, queries.f32, gt.u32, meta.json in DATA_DIR), the same way `ann_bench`
measures hearth's store: build time and memory, then recall@10 and queries per second per thread
count and ef, each speed the median of --repeats timed windows, a window being the whole query
set searched again and again until --min-secs have passed. --json FILE appends one JSON line per
build and per search setting, for ann_compare.py. --quant picks the stored vectors: f32 is
IndexHNSWFlat, f16 and i8 are IndexHNSWSQ with faiss's fp16 and (trained, per-dimension) 8-bit
scalar quantizers, the counterparts of the store's quantizations.

  store/bench/faiss_hnsw.py DATA_DIR [--m 16] [--ef-construction 128] [--ef 32,64,128]
      [--threads 1,2] [--quant f32] [--repeats 3] [--min-secs 1] [--build-threads 1] [--json FILE]

--build-threads N builds on N OpenMP threads (default 1, the single-threaded build timed before).

Requires numpy and faiss-cpu (PyPI).
"""
import argparse
import json
import os
import statistics
import time

import faiss
import numpy as np


def load(data_dir):
    with open(os.path.join(data_dir, "meta.json")) as f:
        meta = json.load(f)
    n, q, d = meta["n"], meta["q"], meta["d"]
    base = np.fromfile(os.path.join(data_dir, "base.f32"), dtype=np.float32).reshape(n, d)
    queries = np.fromfile(os.path.join(data_dir, "queries.f32"), dtype=np.float32).reshape(q, d)
    gt = np.fromfile(os.path.join(data_dir, "gt.u32"), dtype=np.uint32).reshape(q, 10)
    return base, queries, gt


def window(index, queries, min_secs):
    """Searches the query set until min_secs have passed: (wall QPS, QPS per CPU-second, ids)."""
    t, c, done = time.perf_counter(), time.process_time(), 0
    while True:
        _, ids = index.search(queries, 10)
        done += len(queries)
        wall = time.perf_counter() - t
        if wall >= min_secs:
            return done / wall, done / max(time.process_time() - c, 1e-9), ids


def emit(path, record):
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def build(base, quant, m, ef_construction, threads=1):
    """Builds the index on `threads` threads: (index, seconds, RSS growth in bytes)."""
    faiss.omp_set_num_threads(threads)
    d, ip = base.shape[1], faiss.METRIC_INNER_PRODUCT
    if quant == "f32":
        index = faiss.IndexHNSWFlat(d, m, ip)
    else:
        kind = {"f16": faiss.ScalarQuantizer.QT_fp16, "i8": faiss.ScalarQuantizer.QT_8bit}[quant]
        index = faiss.IndexHNSWSQ(d, kind, m, ip)
    index.hnsw.efConstruction = ef_construction
    rss_before = faiss.get_mem_usage_kb() * 1024
    t = time.perf_counter()
    if not index.is_trained:
        index.train(base)
    index.add(base)
    return index, time.perf_counter() - t, faiss.get_mem_usage_kb() * 1024 - rss_before


def measure(base, queries, gt, m=16, ef_construction=128, efs=(32, 64, 128), threads=(1, 2), repeats=3, min_secs=1.0,
            json_path=None, quants=("f32",), build_threads=1):
    print(f"faiss {faiss.__version__} ({faiss.get_compile_options().strip()}), {base.shape[0]} x {base.shape[1]}d, {len(queries)} queries")
    for quant in quants:
        index, seconds, rss = build(base, quant, m, ef_construction, build_threads)
        size = faiss.serialize_index(index).nbytes
        print(f"faiss   quant={quant} HNSW M={m} efC={ef_construction}: build {seconds:.1f} s ({base.shape[0] / seconds:.0f} vectors/s, "
              f"{build_threads} thread(s)), index {size / 2**20:.1f} MiB serialized, RSS +{rss / 2**20:.1f} MiB")
        emit(json_path, {"kind": "build", "engine": "faiss", "quant": quant, "n": int(base.shape[0]), "d": int(base.shape[1]),
                         "m": m, "ef_construction": ef_construction, "build_s": seconds, "build_threads": build_threads, "index_bytes": int(size), "rss_bytes": int(rss)})
        for th in threads:
            faiss.omp_set_num_threads(th)
            for ef in efs:
                index.hnsw.efSearch = ef
                index.search(queries[:200], 10)  # warm-up
                qps, cpu_qps = [], []
                for _ in range(repeats):
                    w, c, ids = window(index, queries, min_secs)
                    qps.append(w)
                    cpu_qps.append(c)
                recall = float(np.mean([len(set(ids[i]) & set(gt[i])) / 10 for i in range(len(queries))]))
                print(f"faiss   quant={quant} threads={th} ef={ef:<4} recall@10={recall:.4f} QPS={statistics.median(qps):.0f} "
                      f"(min {min(qps):.0f}, max {max(qps):.0f}) per-CPU-second={statistics.median(cpu_qps):.0f}")
                emit(json_path, {"kind": "search", "engine": "faiss", "quant": quant, "threads": th, "ef": ef,
                                 "recall": recall, "qps": qps, "cpu_qps": cpu_qps})
        del index


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=128)
    ap.add_argument("--ef", default="32,64,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quant", default="f32", help="comma-separated: f32, f16, i8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-secs", type=float, default=1.0)
    ap.add_argument("--build-threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    base, queries, gt = load(args.data_dir)
    measure(base, queries, gt, args.m, args.ef_construction, [int(x) for x in args.ef.split(",")],
            [int(x) for x in args.threads.split(",")], args.repeats, args.min_secs, args.json, args.quant.split(","),
            max(1, args.build_threads))


if __name__ == "__main__":
    main()
