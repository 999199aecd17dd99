#!/bin/sh
# Print the directory of the llama.cpp source that hearth is built from: the tree vendored by the
# llama-cpp-sys-2 version pinned in Cargo.lock, as cargo unpacked it in its registry. A CUDA backend
# must be built from exactly this tree: ggml loads a backend only if its API version matches, and
# skips it silently otherwise.
#
#   packaging/cuda/llama_source.sh            # from the repository root
#
# Runs `cargo fetch --locked` if the crate is not unpacked yet.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
version=$(awk '/^name = "llama-cpp-sys-2"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$root/Cargo.lock")
[ -n "$version" ] || { echo "llama-cpp-sys-2 is not in $root/Cargo.lock" >&2; exit 1; }
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
find_src() { find "$registry" -maxdepth 2 -type d -name "llama-cpp-sys-2-$version" 2>/dev/null | head -n1; }
src=$(find_src)
if [ -z "$src" ]; then
    (cd "$root" && cargo fetch --locked >&2)
    src=$(find_src)
fi
[ -n "$src" ] && [ -f "$src/llama.cpp/CMakeLists.txt" ] || { echo "llama-cpp-sys-2-$version/llama.cpp not found under $registry" >&2; exit 1; }
echo "$src/llama.cpp"
