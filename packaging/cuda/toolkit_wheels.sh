#!/bin/sh
# A CUDA 13 toolkit from NVIDIA's PyPI wheels (toolkit-wheels.txt, pinned by sha256), for
# build_cuda_backend.sh on a machine with no CUDA install and no GPU. Downloads the wheels once,
# unpacks them into DEST and prints the toolkit root (DEST/nvidia/cu13: bin/nvcc, include, lib).
#
#   packaging/cuda/toolkit_wheels.sh DEST
#
# The wheels carry no driver library (libcuda.so): build with GGML_CUDA_NO_VMM=ON (ggml's legacy
# memory pool instead of the driver's virtual memory API), which build_cuda_backend.sh does when
# its toolkit has no libcuda. About 530 MB of wheels (cuBLAS is 420 MB of them).
set -eu
dest=${1:?usage: toolkit_wheels.sh DEST}
here=$(cd "$(dirname "$0")" && pwd)
root=$dest/nvidia/cu13
if [ ! -x "$root/bin/nvcc" ]; then
    mkdir -p "$dest/wheels"
    python=${PYTHON:-python3}
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
        --require-hashes -r "$here/toolkit-wheels.txt" -d "$dest/wheels" >&2
    for w in "$dest"/wheels/*.whl; do
        "$python" -m zipfile -e "$w" "$dest" >&2
    done
    chmod +x "$root"/bin/* "$root"/nvvm/bin/* 2>/dev/null || true
fi
# nvcc links from lib64; the wheels unpack into lib.
[ -e "$root/lib64" ] || ln -s lib "$root/lib64"
# CMake's FindCUDAToolkit and the linker look for the unversioned names.
for l in cudart cublas cublasLt; do
    [ -e "$root/lib/lib$l.so" ] || ln -s "lib$l.so.13" "$root/lib/lib$l.so"
done
echo "$root"
