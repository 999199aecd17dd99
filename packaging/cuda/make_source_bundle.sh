#!/bin/sh
# Write a trimmed copy of hearth's llama.cpp source (packaging/cuda/llama_source.sh) as a .tar.xz:
# the CMake project, ggml with only its CPU and CUDA backends, llama's src/include/vendor, and
# packaging/cuda itself, so that build_cuda_backend.sh can run where there is no Rust toolchain
# or cargo registry (a GPU build machine, a container stage). About 4 MB.
#
#   packaging/cuda/make_source_bundle.sh OUT.tar.xz
set -eu
out=${1:?usage: make_source_bundle.sh OUT.tar.xz}
here=$(cd "$(dirname "$0")" && pwd)
src=$("$here/llama_source.sh")
version=$(basename "$(dirname "$src")")
api=$(sed -n 's/^ *#define GGML_BACKEND_API_VERSION \([0-9]*\).*/\1/p' "$src/ggml/src/ggml-backend-impl.h")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/llama.cpp/ggml/src" "$tmp/packaging-cuda"
for d in CMakeLists.txt LICENSE cmake common include src vendor; do
    [ -e "$src/$d" ] && cp -a "$src/$d" "$tmp/llama.cpp/"
done
for d in CMakeLists.txt cmake include; do
    cp -a "$src/ggml/$d" "$tmp/llama.cpp/ggml/"
done
# ggml core sources (files directly in ggml/src) plus the CPU and CUDA backends.
find "$src/ggml/src" -maxdepth 1 -type f -exec cp -a {} "$tmp/llama.cpp/ggml/src/" \;
cp -a "$src/ggml/src/ggml-cpu" "$src/ggml/src/ggml-cuda" "$tmp/llama.cpp/ggml/src/"
cp -a "$here/build_cuda_backend.sh" "$here/check_backend.c" "$tmp/packaging-cuda/"
printf 'source=%s\nggml_backend_api_version=%s\n' "$version" "$api" > "$tmp/llama.cpp/HEARTH_SOURCE"
tar -C "$tmp" -cJf "$out" llama.cpp packaging-cuda
echo "wrote $out ($version, backend API version $api, $(du -h "$out" | cut -f1))"
