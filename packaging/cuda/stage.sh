#!/bin/sh
# Stage what a GPU machine without a Rust toolchain needs to build the CUDA backend there and
# benchmark hearth: the stripped release binaries (hearth, the raw_bench and quantize examples),
# llama.cpp's shared libraries (lib/), the CPU backends (backends/), the trimmed llama.cpp source
# bundle with this folder's scripts, and bench_gpu.sh. About 20 MB.
#
#   cargo build --release --bin hearth --example raw_bench --example quantize
#   packaging/cuda/stage.sh DEST
set -eu
dest=${1:?usage: stage.sh DEST}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rel=$root/target/release
mkdir -p "$dest/lib" "$dest/backends" "$dest/examples"
strip --strip-debug -o "$dest/hearth" "$rel/hearth"
for ex in raw_bench quantize; do strip --strip-debug -o "$dest/examples/$ex" "$rel/examples/$ex"; done
for f in "$rel"/lib/*; do strip --strip-debug -o "$dest/lib/$(basename "$f")" "$f"; done
for f in "$rel"/backends/libggml-*.so; do strip --strip-debug -o "$dest/backends/$(basename "$f")" "$f"; done
"$here/make_source_bundle.sh" "$dest/llama-src.tar.xz" >/dev/null
cp "$here/bench_gpu.sh" "$dest/"
du -sh "$dest"
