#!/bin/sh
# Stage the CUDA backend and the CUDA libraries it links for `--build-arg CUDA_BUILD=cuda-prebuilt`
# (packaging/Containerfile.cuda), in the layout the image installs under /usr/lib64/hearth:
#   backends/libggml-cuda.so           `make cuda`'s build (target/release/backends)
#   cuda/libcudart.so.13, libcublas.so.13, libcublasLt.so.13
#                                      NVIDIA's CUDA 13.0 runtime and cuBLAS, from the PyPI wheels
#                                      pinned by sha256 in packaging/cuda/toolkit-wheels.txt
# The driver (libcuda.so.1) is not staged: it comes from the host through the NVIDIA container
# toolkit, and must be a CUDA 13 driver (580 or newer).
#
#   make cuda && packaging/container/stage_cuda.sh
set -eu
cd "$(dirname "$0")/../.."
backend=target/release/backends/libggml-cuda.so
out=target/container/cuda
[ -f "$backend" ] || { echo "missing $backend: run make cuda first" >&2; exit 1; }
python=.venv/bin/python
[ -x "$python" ] || python=python3
toolkit=$(PYTHON=$python packaging/cuda/toolkit_wheels.sh target/cuda-toolkit)
rm -rf "$out"
install -d "$out/backends" "$out/cuda"
strip --strip-debug -o "$out/backends/libggml-cuda.so" "$backend"
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13; do
  cp "$toolkit/lib/$lib" "$out/cuda/$lib"
done
# Every library the backend needs, other than the driver, is now in the image or in Debian's base.
missing=$(LD_LIBRARY_PATH="$out/cuda:target/release/lib" ldd "$out/backends/libggml-cuda.so" | grep 'not found' | grep -v libcuda.so.1 || true)
[ -z "$missing" ] || { echo "libggml-cuda.so still lacks: $missing" >&2; exit 1; }
echo "staged $(du -sh "$out" | cut -f1) in $out"
