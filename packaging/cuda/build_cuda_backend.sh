#!/bin/sh
# Build libggml-cuda.so, the CUDA compute backend that hearth loads at start-up, from exactly the
# llama.cpp source hearth is built with, and check that it loads (its ggml backend API version
# matches that tree's). Used by packaging/Containerfile.cuda and for the RPM's CUDA subpackage.
#
#   packaging/cuda/build_cuda_backend.sh [--src DIR | --bundle FILE.tar.xz] [--archs "80;86;89;90"]
#       [--out DIR] [--build-dir DIR] [--jobs N] [--toolkit DIR]
#
# --src       the llama.cpp tree (default: packaging/cuda/llama_source.sh, the cargo registry copy)
# --bundle    a tarball from make_source_bundle.sh instead (machines without cargo)
# --archs     CMAKE_CUDA_ARCHITECTURES (default 80;86;89;90: A100, A10/RTX 30, L4/RTX 40, H100)
# --out       where libggml-cuda.so goes (default ./backends), next to hearth's CPU backends
# --toolkit   a CUDA toolkit root to build with (default: nvcc on PATH, else /usr/local/cuda), e.g.
#             the one toolkit_wheels.sh unpacks from PyPI; one without the driver's libcuda builds
#             with GGML_CUDA_NO_VMM=ON (ggml's legacy memory pool)
#
# Needs nvcc (CUDA 12 or 13), cmake >= 3.18, ninja and a C compiler. The result needs at run time
# libcudart, libcublas, libcublasLt of the CUDA major version it was built with, the driver's
# libcuda.so.1, and libgomp.so.1. The check runs without a GPU: the driver stub stands in for
# libcuda.so.1 where there is no driver, and the backend then reports 0 devices.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="" bundle="" archs="80;86;89;90" out="backends" build="" jobs="" toolkit=""
while [ $# -gt 0 ]; do
    case "$1" in
        --src) src=$2; shift 2 ;;
        --bundle) bundle=$2; shift 2 ;;
        --archs) archs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --build-dir) build=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --toolkit) toolkit=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "$bundle" ]; then
    tar -C "$work" -xJf "$bundle"
    src="$work/llama.cpp"
elif [ -z "$src" ]; then
    src=$("$here/llama_source.sh")
fi
[ -f "$src/ggml/src/ggml-cuda/CMakeLists.txt" ] || { echo "$src has no ggml CUDA backend" >&2; exit 1; }
build=${build:-$work/build}
if [ -n "$toolkit" ]; then
    [ -x "$toolkit/bin/nvcc" ] || { echo "$toolkit/bin/nvcc not found" >&2; exit 1; }
    PATH=$toolkit/bin:$PATH
else
    command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] || { echo "nvcc not found (install the CUDA toolkit, or: make cuda)" >&2; exit 1; }
    command -v nvcc >/dev/null 2>&1 || PATH=/usr/local/cuda/bin:$PATH
    toolkit=$(cd "$(dirname "$(command -v nvcc)")/.." && pwd)
fi
toolkit_args="-DCUDAToolkit_ROOT=$toolkit -DCMAKE_CUDA_COMPILER=$toolkit/bin/nvcc"
# ggml's virtual-memory pool links the driver library; a toolkit without it (PyPI wheels, or a
# machine with no driver and no stubs) builds the legacy pool instead.
if ! find "$toolkit" -name 'libcuda.so*' 2>/dev/null | grep -q . && ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so '; then
    echo "no libcuda.so in $toolkit: building with GGML_CUDA_NO_VMM=ON" >&2
    toolkit_args="$toolkit_args -DGGML_CUDA_NO_VMM=ON"
fi

# GGML_BACKEND_DL: a loadable module with ggml_backend_init; GGML_NATIVE must be off with it.
# The CPU flags only affect the ggml-base/ggml-cpu built alongside, which are not shipped: hearth's
# own libggml-base is the one the process has loaded.
# The run path lets the backend find the CUDA runtime where NVIDIA's packages put it, when the
# linker's cache does not list it; none points into the build tree (a module, hence both flags).
# shellcheck disable=SC2086
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release $toolkit_args \
    -DCMAKE_SKIP_BUILD_RPATH=ON \
    "-DCMAKE_MODULE_LINKER_FLAGS=-Wl,-rpath,/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib" \
    "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,-rpath,/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib" \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$archs" -DGGML_CUDA_NCCL=OFF \
    -DGGML_BACKEND_DL=ON -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF \
    -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >"$build.cmake.log" 2>&1 \
    || { cat "$build.cmake.log" >&2; exit 1; }
ninja -C "$build" ${jobs:+-j "$jobs"} ggml-cuda
lib=$(find "$build" -name libggml-cuda.so -type f | head -n1)
[ -n "$lib" ] || { echo "libggml-cuda.so was not built" >&2; exit 1; }

# The check: load it into this tree's ggml-base and compare API versions.
cc -O1 -I "$src/ggml/include" -I "$src/ggml/src" "$here/check_backend.c" -ldl -o "$work/check_backend"
libdirs=$(dirname "$lib"):$(dirname "$(find "$build" -name 'libggml-base.so*' | head -n1)"):$toolkit/lib:$toolkit/lib64
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1 '; then
    stub=$(find /usr/local/cuda/lib64/stubs /usr/local/cuda/targets/*/lib/stubs -name libcuda.so 2>/dev/null | head -n1 || true)
    if [ -n "$stub" ]; then
        mkdir -p "$work/stub" && ln -s "$stub" "$work/stub/libcuda.so.1" && libdirs="$libdirs:$work/stub"
    fi
fi
LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/check_backend" "$lib"

mkdir -p "$out"
install -m 0755 "$lib" "$out/libggml-cuda.so"
echo "installed $out/libggml-cuda.so (CUDA architectures $archs)"
