#!/usr/bin/env python3
"""pypdf's side of parse_bench: text of every page of each file, timed per file.

    python pypdf_bench.py FILE...   ->  one JSON object per file on stdout:
    {"file", "pages", "chars", "seconds", "cpu_seconds", "error"}

Times cover opening the file, decrypting with the empty password where needed, and
`page.extract_text()` for every page; not the interpreter's start-up.
"""

import json
import logging
import sys
import time
import warnings

import pypdf

logging.disable(logging.CRITICAL)
warnings.filterwarnings("ignore")


def extract(path):
    pages = chars = 0
    error = None
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted:
            reader.decrypt("")
        for page in reader.pages:
            text = page.extract_text() or ""
            pages += 1
            chars += len(text)
    except Exception as e:  # noqa: BLE001 - a benchmark records every failure and goes on
        error = f"{type(e).__name__}: {e}"[:200]
    return {
        "file": path,
        "pages": pages,
        "chars": chars,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "error": error,
    }


def main():
    for path in sys.argv[1:]:
        print(json.dumps(extract(path)), flush=True)


if __name__ == "__main__":
    print(f"# pypdf {pypdf.__version__}", file=sys.stderr)
    main()
