#!/bin/sh
# Stage this checkout's release build for `--build-arg HEARTH_BUILD=prebuilt` (packaging/Containerfile):
# the binary and llama.cpp's libraries and CPU backends, stripped, in the layout the `build` stage
# produces and the RPM installs (/usr/bin/hearth finds /usr/lib64/hearth through its run path and
# loads the backends from /usr/lib64/hearth/backends).
#
#   cargo build --release --bin hearth && packaging/container/stage_prebuilt.sh
#   buildah bud --format docker --build-arg HEARTH_BUILD=prebuilt -f packaging/Containerfile -t hearth:cpu .
set -eu
cd "$(dirname "$0")/../.."
release=target/release
out=target/container/prebuilt
for f in "$release/hearth" "$release"/lib/*.so* "$release"/backends/libggml-cpu-*.so; do
  [ -f "$f" ] || { echo "missing $f: run cargo build --release --bin hearth first" >&2; exit 1; }
done
rm -rf "$out"
install -d "$out/usr/bin" "$out/usr/lib64/hearth/backends"
strip -o "$out/usr/bin/hearth" "$release/hearth"
for f in "$release"/lib/*.so*; do strip --strip-debug -o "$out/usr/lib64/hearth/$(basename "$f")" "$f"; done
for f in "$release"/backends/libggml-cpu-*.so; do strip --strip-debug -o "$out/usr/lib64/hearth/backends/$(basename "$f")" "$f"; done
echo "staged $(find "$out" -type f | wc -l) files in $out"
