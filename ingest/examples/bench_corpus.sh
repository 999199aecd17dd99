#!/usr/bin/env bash
# Builds parse_bench's corpus of real PDFs nobody here wrote, in DIR (default /tmp/ingest-bench/corpus):
# the 54 top-level PDFs of pypdf 7.1.1's source distribution (resources/: LaTeX, LibreOffice,
# Acrobat forms, scans, encrypted files, broken files), two manuals Debian ships, and a truncated
# PDF from zlib-rs's test data, where present.
set -euo pipefail
dir=${1:-/tmp/ingest-bench/corpus}
python=${PYTHON:-.venv/bin/python}
work=$(dirname "$dir")
mkdir -p "$dir"
"$python" -m pip download --quiet --no-binary :all: --no-deps --dest "$work" pypdf==7.1.1
tar -xzf "$work/pypdf-7.1.1.tar.gz" -C "$work" --wildcards 'pypdf-7.1.1/resources/*.pdf'
cp "$work"/pypdf-7.1.1/resources/*.pdf "$dir"/
for f in /usr/share/doc/libtasn1-doc/libtasn1.pdf /usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf \
         "$HOME"/.cargo/registry/src/*/zlib-rs-0.6.8/src/deflate/test-data/paper-100k.pdf; do
    [ -f "$f" ] && cp "$f" "$dir"/
done
ls "$dir" | wc -l
