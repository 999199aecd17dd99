#!/bin/bash
# hearth's GPU benchmark, run where stage.sh's folder was unpacked (the CUDA backend already in
# backends/): the in-process raw ceiling (examples/raw_bench) and hearth over HTTP driven by
# `hearth bench`, at the same concurrencies, prompt and output lengths, greedy sampling.
#
#   bench_gpu.sh MODEL.gguf OUTDIR [STREAMS (default 1,8,32,64,128)] [WAVES (default 4)]
#
# Each concurrency N runs N×WAVES requests, N at a time (raw_bench --waves, bench concurrent:N).
# Environment: HEARTH_BENCH_THREADS (llama.cpp CPU threads, default 4), HEARTH_BENCH_PORT (8090),
# HEARTH_BENCH_KV_LAYOUT (`[engine] kv_layout` and raw_bench's --kv-layout: auto, the default, is
# per_sequence on a GPU; or unified), HEARTH_BENCH_RAW=0 (skip the in-process ceiling),
# HEARTH_BENCH_SAMPLED_AT (see below).
#
# OUTDIR gets info.txt, raw.csv, http-N.json, the engine's step counters before/after each HTTP
# run (metrics-N-{before,after}.txt), per-thread CPU of the hearth process during the N=64 run
# (threads-64.txt), and the server's log.
set -euo pipefail
model=${1:?usage: bench_gpu.sh MODEL.gguf OUTDIR [STREAMS] [WAVES]}
out=${2:?usage: bench_gpu.sh MODEL.gguf OUTDIR [STREAMS] [WAVES]}
streams=${3:-1,8,32,64,128}
waves=${4:-4}
here=$(cd "$(dirname "$0")" && pwd)
threads=${HEARTH_BENCH_THREADS:-4}
max_streams=$(tr ',' '\n' <<<"$streams" | sort -n | tail -1)
port=${HEARTH_BENCH_PORT:-8090}
layout=${HEARTH_BENCH_KV_LAYOUT:-auto}
mkdir -p "$out"

"$here/hearth" info | tee "$out/info.txt"

if [ "${HEARTH_BENCH_RAW:-1}" != 0 ]; then
    echo "== raw ceiling (in-process), kv_layout $layout"
    "$here/examples/raw_bench" "$model" --streams "$streams" --prompt 128 --output 128 --rounds 2 --waves "$waves" \
        --threads "$threads" --max-batch 2048 --kv-tokens 0 --temperature 0 --kv-layout "$layout" --csv "$out/raw.csv" >"$out/raw.log" 2>&1 \
        || echo "raw_bench exited with $?"
    cat "$out/raw.csv"
fi

echo "== hearth over HTTP, kv_layout $layout"
state=$(mktemp -d)
cat >"$out/hearth-bench.toml" <<TOML
replace_default_models = true
[server]
listen = "127.0.0.1:$port"
state_dir = "$state"
[engine]
threads = $threads
gpu_memory_utilization = 0.9
kv_layout = "$layout"
[[models]]
name = "synthetic-1b"
kind = "chat"
path = "$model"
max_model_len = 2048
max_num_seqs = $max_streams
max_num_batched_tokens = 2048
kv_cache_tokens = 0
max_queue = 1024
TOML
"$here/hearth" --config "$out/hearth-bench.toml" serve >"$out/serve.stdout" 2>"$out/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || { cat "$out/serve.log"; exit 1; }
    sleep 0.2
done
curl -s "http://127.0.0.1:$port/v1/models" >"$out/models.json"
bench() { "$here/hearth" bench --target "http://127.0.0.1:$port" --endpoint completions \
    --data synthetic:prompt_tokens=128,output_tokens=128 "$@"; }
bench --temperature 0 --profile concurrent:8 --max-requests 16 >/dev/null 2>&1 || true  # warm-up
for n in ${streams//,/ }; do
    curl -s "http://127.0.0.1:$port/metrics" >"$out/metrics-$n-before.txt"
    spid=""
    if [ "$n" = 64 ]; then
        python3 - "$pid" >"$out/threads-64.txt" <<'PY' &
import os, sys, time
pid = sys.argv[1]
def sample():
    ticks = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                s = f.read()
            name = s[s.index("(") + 1:s.rindex(")")]
            fields = s[s.rindex(")") + 2:].split()
            ticks[t] = (name, int(fields[11]) + int(fields[12]))
        except (OSError, ValueError):
            pass
    return ticks
time.sleep(2)
a, t0 = sample(), time.time()
time.sleep(4)
b, t1 = sample(), time.time()
hz = os.sysconf("SC_CLK_TCK")
rows = sorted(((b[t][1] - a[t][1]) / hz / (t1 - t0), b[t][0], t) for t in b if t in a)
print(f"process CPU (cores) over {t1 - t0:.1f} s: {sum(r[0] for r in rows):.2f}")
for busy, name, tid in reversed(rows[-15:]):
    print(f"{busy * 100:6.1f} %  {name} ({tid})")
PY
        spid=$!
    fi
    bench --temperature 0 --profile "concurrent:$n" --max-requests $((n * waves)) --json "$out/http-$n.json" 2>&1 | tee "$out/http-$n.txt" | tail -4
    curl -s "http://127.0.0.1:$port/metrics" >"$out/metrics-$n-after.txt"
    [ -z "$spid" ] || wait "$spid" || true
done
# HEARTH_BENCH_SAMPLED_AT=N: one more run at N streams with the server's default sampling
# (temperature 1, the full sampler chain) instead of greedy.
if [ -n "${HEARTH_BENCH_SAMPLED_AT:-}" ]; then
    n=$HEARTH_BENCH_SAMPLED_AT
    curl -s "http://127.0.0.1:$port/metrics" >"$out/metrics-sampled-before.txt"
    bench --profile "concurrent:$n" --max-requests $((n * waves)) --json "$out/http-sampled-$n.json" 2>&1 | tee "$out/http-sampled-$n.txt" | tail -4
    curl -s "http://127.0.0.1:$port/metrics" >"$out/metrics-sampled-after.txt"
fi
# Step phases per concurrency, from the engine's counters.
for n in ${streams//,/ }; do
    python3 - "$out/metrics-$n-before.txt" "$out/metrics-$n-after.txt" "$n" <<'PY'
import re, sys
def read(path):
    values = {}
    for line in open(path):
        m = re.match(r'(hearth_engine_\w+)(\{[^}]*\})? ([0-9.e+-]+)$', line.strip())
        if m:
            phase = re.search(r'phase="(\w+)"', m.group(2) or "")
            values[m.group(1) + (":" + phase.group(1) if phase else "")] = float(m.group(3))
    return values
a, b = read(sys.argv[1]), read(sys.argv[2])
d = {k: b[k] - a.get(k, 0) for k in b}
steps = max(d.get("hearth_engine_steps_total", 0), 1)
ms = {p: 1000 * d.get(f"hearth_engine_step_seconds_total:{p}", 0) / steps for p in ("schedule", "decode", "sample", "emit")}
print(f"HTTP N={sys.argv[3]}: {steps:.0f} steps, {d.get('hearth_engine_batch_tokens_total', 0) / steps:.1f} tokens/step, ms/step "
      + ", ".join(f"{p} {v:.3f}" for p, v in ms.items()))
PY
done | tee "$out/http-phases.txt"
grep -E '^hearth_gpu_|^vllm:kv_cache_usage_perc' "$out/metrics-${max_streams}-after.txt" | tee "$out/gpu-metrics.txt" || true
kill $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
