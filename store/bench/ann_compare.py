#!/usr/bin/env python3
"""Side by side: hearth's store (`ann_bench`) and faiss-cpu's HNSW (`faiss_hnsw.py`) on the same
data directory, in interleaved rounds so that a busy machine's swings land on both alike.

Each round runs both programs one after the other (the order alternates between rounds); each
builds its index and measures every setting with --repeats timed windows. The summary takes, per
setting, the median over all windows of all rounds, and compares the engines at equal recall:
each engine's QPS is interpolated (log-linear in QPS, between neighbouring ef values) at a few
recall levels, so that a graph that needs a larger ef for the same recall is charged for it.

  store/bench/ann_compare.py DATA_DIR --ann-bench PATH [--rounds 3] [--m 16]
      [--ef-construction 128] [--ef 16,32,64,128] [--threads 1,2] [--quant f16]
      [--repeats 3] [--min-secs 1] [--build-threads 1] [--out DIR]

Writes the raw JSON lines and rounds.json (load average around each program) into --out
(default DATA_DIR/compare-<time>) and prints markdown tables.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def interpolate(curve, recall):
    """QPS at `recall` on a curve of (recall, qps) points sorted by ef, or None outside it."""
    for (r1, q1), (r2, q2) in zip(curve, curve[1:]):
        if r1 <= recall <= r2 and r2 > r1:
            return math.exp(math.log(q1) + (recall - r1) / (r2 - r1) * (math.log(q2) - math.log(q1)))
    return next((q for r, q in curve if r == recall), None)


def summarize(out_dir, targets):
    builds, searches = {}, {}
    for name in sorted(os.listdir(out_dir)):
        if not name.endswith(".jsonl"):
            continue
        for line in open(os.path.join(out_dir, name)):
            rec = json.loads(line)
            if rec["kind"] == "build":
                builds.setdefault((rec["engine"], rec["quant"]), []).append(rec)
            else:
                s = searches.setdefault((rec["engine"], rec["quant"], rec["threads"], rec["ef"]), {"recall": [], "qps": [], "cpu_qps": []})
                s["recall"].append(rec["recall"])
                s["qps"] += rec["qps"]
                s["cpu_qps"] += rec["cpu_qps"]
    med = statistics.median

    print("\n| engine | vectors | build (threads) | index serialized | RSS growth during build |")
    print("|---|---|---|---|---|")
    for (engine, quant), recs in sorted(builds.items()):
        print(f"| {engine} | {quant} | {med(r['build_s'] for r in recs):.1f} s ({recs[0].get('build_threads', 1)}) | {med(r['index_bytes'] for r in recs) / 2**20:.1f} MiB "
              f"| {med(r['rss_bytes'] for r in recs) / 2**20:.1f} MiB |")

    print("\n| engine | vectors | threads | ef | recall@10 | QPS (median) | QPS min–max | queries per CPU-second |")
    print("|---|---|---|---|---|---|---|---|")
    curves = {}
    for key in sorted(searches, key=lambda k: (k[2], k[0], k[1], k[3])):
        engine, quant, threads, ef = key
        s = searches[key]
        recall, qps, cpu = med(s["recall"]), med(s["qps"]), med(s["cpu_qps"])
        curves.setdefault((engine, quant, threads), []).append((recall, qps, cpu))
        print(f"| {engine} | {quant} | {threads} | {ef} | {recall:.4f} | {qps:,.0f} | {min(s['qps']):,.0f}–{max(s['qps']):,.0f} | {cpu:,.0f} |")

    columns = sorted({(e, q) for (e, q, t) in curves}, key=lambda c: (c[0] != "faiss", c[0], c[1] != "f32", c[1]))
    for column, label in ((1, "QPS (wall)"), (2, "queries per CPU-second")):
        print(f"\nAt equal recall, {label} interpolated between ef values (in brackets: against faiss f32):\n")
        print("| threads | recall@10 | " + " | ".join(f"{e} {q}" for e, q in columns) + " |")
        print("|---|---|" + "---|" * len(columns))
        for threads in sorted({t for (_, _, t) in curves}):
            for target in targets:
                ref = interpolate([(p[0], p[column]) for p in curves.get(("faiss", "f32", threads), [])], target)
                cells = []
                for engine, quant in columns:
                    v = interpolate([(p[0], p[column]) for p in curves.get((engine, quant, threads), [])], target)
                    same = (engine, quant) == ("faiss", "f32")
                    cells.append("–" if v is None else f"{v:,.0f}" + (f" ({v / ref:.0%})" if ref and not same else ""))
                print(f"| {threads} | {target} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--ann-bench", required=True, help="path of the built ann_bench example")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=128)
    ap.add_argument("--ef", default="16,32,64,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quant", default="f16", help="hearth's quantizations")
    ap.add_argument("--faiss-quant", default="f32", help="faiss's: f32 (HNSWFlat), f16, i8 (HNSWSQ)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-secs", type=float, default=1.0)
    ap.add_argument("--build-threads", type=int, default=1, help="threads that build each index (both engines)")
    ap.add_argument("--targets", default="0.9,0.95,0.97,0.99")
    ap.add_argument("--out")
    ap.add_argument("--summarize-only", action="store_true", help="only print the tables of an earlier --out")
    args = ap.parse_args()
    targets = [float(x) for x in args.targets.split(",")]
    out = args.out or os.path.join(args.data_dir, time.strftime("compare-%Y%m%dT%H%M%S"))
    if args.summarize_only:
        summarize(out, targets)
        return
    os.makedirs(out, exist_ok=True)
    common = ["--m", str(args.m), "--ef-construction", str(args.ef_construction), "--ef", args.ef, "--threads", args.threads,
              "--repeats", str(args.repeats), "--min-secs", str(args.min_secs),
              "--build-threads", str(args.build_threads)]
    programs = {
        "faiss": lambda r: [sys.executable, os.path.join(HERE, "faiss_hnsw.py"), args.data_dir, *common, "--quant", args.faiss_quant, "--json", f"{out}/round{r}-faiss.jsonl"],
        "hearth": lambda r: [args.ann_bench, args.data_dir, *common, "--quant", args.quant, "--store-docs", "0",
                             "--json", f"{out}/round{r}-hearth.jsonl"],
    }
    rounds = []
    for r in range(args.rounds):
        for engine in (["faiss", "hearth"] if r % 2 == 0 else ["hearth", "faiss"]):
            before, t = loadavg(), time.time()
            print(f"# round {r + 1}/{args.rounds}: {engine}, load {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}", flush=True)
            subprocess.run(programs[engine](r), check=True)
            rounds.append({"round": r, "engine": engine, "start": t, "seconds": time.time() - t, "load_before": before, "load_after": loadavg()})
    with open(os.path.join(out, "rounds.json"), "w") as f:
        json.dump(rounds, f, indent=1)
    loads = [x["load_before"][0] for x in rounds] + [x["load_after"][0] for x in rounds]
    print(f"\n# {len(rounds)} runs, 1-minute load average {min(loads):.2f}–{max(loads):.2f} (median {statistics.median(loads):.2f}); raw data in {out}")
    summarize(out, targets)


if __name__ == "__main__":
    main()
