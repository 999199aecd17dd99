#!/bin/sh
# `make cuda`: build libggml-cuda.so into OUT (default target/release/backends, where a build's
# hearth loads backends from) with the CUDA toolkit this machine has, or, where it has none, with
# NVIDIA's compiler and runtime from PyPI (toolkit_wheels.sh, into target/cuda-toolkit), so the
# backend also builds on a machine without a GPU or a CUDA install.
#
#   packaging/cuda/make_cuda.sh [OUT]
#
# CUDA_ARCHS: CMAKE_CUDA_ARCHITECTURES (default: this machine's GPUs from nvidia-smi, else
# "80;86;89;90"; each architecture adds about 35 CPU-minutes). JOBS: parallel compiles (nproc).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/target/release/backends}
archs=${CUDA_ARCHS:-}
if [ -z "$archs" ] && command -v nvidia-smi >/dev/null 2>&1; then
    archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d '.' | sort -u | paste -sd ';' || true)
fi
archs=${archs:-80;86;89;90}
if command -v nvcc >/dev/null 2>&1; then
    toolkit=$(cd "$(dirname "$(command -v nvcc)")/.." && pwd)
elif [ -x /usr/local/cuda/bin/nvcc ]; then
    toolkit=/usr/local/cuda
else
    echo "no CUDA toolkit here: using NVIDIA's CUDA 13.0 wheels from PyPI" >&2
    python=$root/.venv/bin/python
    [ -x "$python" ] || python=python3
    toolkit=$(PYTHON=$python "$here/toolkit_wheels.sh" "$root/target/cuda-toolkit")
fi
echo "CUDA toolkit: $toolkit ($("$toolkit/bin/nvcc" --version | tail -n1)); architectures: $archs" >&2
exec "$here/build_cuda_backend.sh" --toolkit "$toolkit" --archs "$archs" --out "$out" \
    --jobs "${JOBS:-$(nproc)}" --build-dir "$root/target/cuda-build"
