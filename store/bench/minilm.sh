#!/usr/bin/env bash
# The 384-d ANN benchmark with hearth's own embedding model (all-MiniLM-L6-v2): hearth's store
# (usearch HNSW) against faiss-cpu's HNSW on the same vectors, in interleaved rounds.
# Usage, from the repo root, with target/release/hearth built and the models in models/:
#   store/bench/minilm.sh [WORK_DIR]       (default /tmp/hearth-store-bench)
# The first run starts hearth (no watched folder, state under WORK_DIR) to embed the corpus
# (store/bench/minilm_corpus.py), then stops it; later runs reuse WORK_DIR/minilm.
# Environment: BASE (20000), QUERIES (1000), PORT (18099), M (16), EFC (128),
# EF (16,24,32,48,64,96,128), THREADS (1,2), QUANT (hearth's: f32,f16,i8), FAISS_QUANT (f32,f16,i8:
# HNSWFlat and HNSWSQ), ROUNDS (3), REPEATS (3), MIN_SECS (1: each timed window), BUILD_THREADS (1: threads
# that build each index), STORE_DOCS (200 documents of 100 chunks through the whole store), MAN_PAGES (2000
# sampled), PYTHON_TREES (space-separated folders whose Python docstrings join the corpus), CONCURRENCY (1
# embedding request in flight), PYTHON (.venv/bin/python; faiss-cpu and numpy are installed into it when missing).
set -euo pipefail
work=${1:-/tmp/hearth-store-bench}
BASE=${BASE:-20000} QUERIES=${QUERIES:-1000} PORT=${PORT:-18099}
M=${M:-16} EFC=${EFC:-128} EF=${EF:-16,24,32,48,64,96,128} THREADS=${THREADS:-1,2}
QUANT=${QUANT:-f32,f16,i8} FAISS_QUANT=${FAISS_QUANT:-f32,f16,i8} ROUNDS=${ROUNDS:-3} REPEATS=${REPEATS:-3}
STORE_DOCS=${STORE_DOCS:-200} MIN_SECS=${MIN_SECS:-1} BUILD_THREADS=${BUILD_THREADS:-1}
MAN_PAGES=${MAN_PAGES:-2000} PYTHON_TREES=${PYTHON_TREES:-} CONCURRENCY=${CONCURRENCY:-1}
trees=()
for t in $PYTHON_TREES; do trees+=(--python-tree "$t"); done
py=${PYTHON:-.venv/bin/python}
mkdir -p "$work"
"$py" -c 'import faiss, numpy' 2>/dev/null || "$py" -m pip install -q faiss-cpu==1.15.1 numpy

if [ ! -f "$work/minilm/meta.json" ]; then
  printf '[ingest]\nwatch = []\n' >"$work/hearth.toml"
  HEARTH__SERVER__LISTEN=127.0.0.1:$PORT HEARTH__SERVER__STATE_DIR=$work/state \
    target/release/hearth serve --config "$work/hearth.toml" >"$work/hearth.log" 2>&1 &
  hearth=$!
  trap 'kill $hearth 2>/dev/null' EXIT
  until curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null; do
    kill -0 $hearth || { tail "$work/hearth.log"; exit 1; }
    sleep 1
  done
  "$py" store/bench/minilm_corpus.py "$work/minilm" --base "$BASE" --queries "$QUERIES" --url "http://127.0.0.1:$PORT" \
    --man-pages "$MAN_PAGES" "${trees[@]}" --concurrency "$CONCURRENCY"
  kill $hearth
  wait $hearth || true
  trap - EXIT
fi

nice -n 10 cargo build --release -q -p hearth-store --example ann_bench
echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(lscpu | grep 'Model name' | sed 's/ \+/ /g')"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" store/bench/ann_compare.py "$work/minilm" --ann-bench "${CARGO_TARGET_DIR:-target}/release/examples/ann_bench" \
  --rounds "$ROUNDS" --m "$M" --ef-construction "$EFC" --ef "$EF" --threads "$THREADS" --quant "$QUANT" \
  --faiss-quant "$FAISS_QUANT" --repeats "$REPEATS" --min-secs "$MIN_SECS" --build-threads "$BUILD_THREADS"
if [ "$STORE_DOCS" -gt 0 ]; then
  "${CARGO_TARGET_DIR:-target}/release/examples/ann_bench" "$work/minilm" --m "$M" --ef-construction "$EFC" --ef 64 \
    --threads 1 --quant f16 --repeats 1 --store-docs "$STORE_DOCS" --build-threads "$BUILD_THREADS"
fi
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
