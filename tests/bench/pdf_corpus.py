#!/usr/bin/env python3
"""The PDF corpus benchmark: robustness, speed and fidelity of hearth's PDF parser against pypdf, with
poppler's `pdftotext -layout` as the fidelity reference, on real PDFs from installed distribution packages.

    pdf_corpus.py select [--max 330] [--max-pages 100] [--pypdf-sdist DIR] > corpus.txt
    pdf_corpus.py run [--worker target/release/hearth-parse-worker] [--out DIR] [--only N] < corpus.txt
    pdf_corpus.py tables [--worker ...] [--show N] FILE.pdf...

`select` lists candidates: every `*.pdf` under / (one file system, /proc, /tmp and /work left out; the
distribution's docs, TeX Live's documentation, crates' test data) plus, with --pypdf-sdist, the `resources/`
of pypdf's source distribution (Word, LibreOffice, Google Docs, scanner and OCR output). It keeps documents:
1..=max-pages pages by `pdfinfo`, no user password, not a byte-for-byte duplicate, and either some text by
`pdftotext` (at least 100 visible characters) or no text and an embedded image (a scan, which OCR must read).
Vector drawings with no text (figures a document includes) are left out: no tool can yield text from them.
Files are then taken round-robin over producer families (`pdfinfo`'s Producer without versions), each family
in a stable hashed order, until --max: every family is represented, and the large LaTeX families fill the rest.
Each output line is `path<TAB>pages<TAB>family`.

`run` parses every listed file with, in turn (interleaved per file, so load changes hit all alike):
- hearth as shipped (`--pdf-engine auto`), pdf-extract alone and PDFium alone, each through the real sandboxed
  worker binary with the daemon's default limits (1 GiB address space, 60 s CPU, 120 s wall; the file on stdin,
  OCR available with its 120 s budget to the shipped path), one child per file as ingestion runs it;
- pypdf (in this process: `PdfReader`, `decrypt("")` where encrypted, `extract_text()` per page; a 120 s alarm);
- `pdftotext -layout` and plain `pdftotext` (reading order), 120 s each.
A file *yields text* when the tool succeeds and its pages hold at least one visible character.
*Fidelity* is the character-level similarity to `pdftotext -layout`'s text: rapidfuzz's normalized Indel
similarity (difflib's ratio without its junk heuristic) of the two texts with every whitespace run turned into
one space, page by page when both have the same page count (else the whole document), the pages weighted by
the reference's length; a failed file scores 0. It is averaged over files where the reference has text.
The same is given against plain `pdftotext`, whose reading order does not lay columns side by side.
pages/s counts the pages of files a tool read, over the wall time of all files; CPU seconds are the children's
(`RUSAGE_CHILDREN`) for the worker and `time.process_time()` for pypdf (no interpreter start-up).
Writes DIR/results.jsonl (one line per file) and prints the summary as a Markdown table.

`tables` parses table-heavy files with hearth as shipped and prints, per file, its pages, the
Markdown tables in its text, the pages that have one, and the first N tables' first rows, to check
by eye that they are tables.
"""

import argparse
import hashlib
import json
import logging
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

WALL_S = 120
MEMORY_BYTES = 1 << 30
CPU_S = 60
EXCLUDED_ROOTS = ("/proc", "/sys", "/tmp", "/work", "/dev", "/run")


def pdfinfo(path):
    try:
        out = subprocess.run(["pdfinfo", path], capture_output=True, timeout=30, text=True, errors="replace")
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        return None
    info = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def family(producer):
    """`pdfTeX-1.40.21` → `pdftex`, `GPL Ghostscript 9.50` → `gpl ghostscript`: the producer without versions."""
    text = re.sub(r"[-\s]v?\d[\w.]*|\d[\w.]*", " ", producer.lower())
    words = [w.strip("-:") for w in re.split(r"[\s()/,;]+", text)]
    kept = [w for w in words if w and w not in ("version", "by", "copyright", "build")]
    return " ".join(kept[:2]) or "(none)"


def visible_chars(text):
    return sum(1 for c in text if not c.isspace())


def has_image(path):
    try:
        out = subprocess.run(["pdfimages", "-list", "-l", "3", path], capture_output=True, timeout=30, text=True)
    except subprocess.TimeoutExpired:
        return False
    return len(out.stdout.splitlines()) > 2


def select(args):
    paths = []
    for root, dirs, files in os.walk("/"):
        if root == "/":
            dirs[:] = [d for d in dirs if "/" + d not in EXCLUDED_ROOTS]
        for name in files:
            if name.lower().endswith(".pdf"):
                paths.append(os.path.join(root, name))
    if args.pypdf_sdist:
        paths += [str(p) for p in Path(args.pypdf_sdist).glob("resources/*.pdf")]
    by_family, seen = {}, set()
    for path in sorted(paths):
        try:
            digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
        except OSError:
            continue
        if digest in seen:
            continue
        info = pdfinfo(path)
        if not info or not info.get("Pages", "").isdigit():
            continue  # a user password, or not readable as a PDF at all
        pages = int(info["Pages"])
        if not 1 <= pages <= args.max_pages:
            continue
        try:
            text = subprocess.run(["pdftotext", "-q", path, "-"], capture_output=True, timeout=60).stdout
        except subprocess.TimeoutExpired:
            continue
        if visible_chars(text.decode("utf-8", "replace")) < 100 and not (
            visible_chars(text.decode("utf-8", "replace")) == 0 and has_image(path)
        ):
            continue
        seen.add(digest)
        fam = family(info.get("Producer", ""))
        by_family.setdefault(fam, []).append((hashlib.sha1(path.encode()).hexdigest(), path, pages))
    queues = {f: sorted(v) for f, v in by_family.items()}
    chosen = []
    while len(chosen) < args.max and any(queues.values()):
        for fam in sorted(queues):
            if queues[fam] and len(chosen) < args.max:
                _, path, pages = queues[fam].pop(0)
                chosen.append((path, pages, fam))
    for path, pages, fam in chosen:
        print(f"{path}\t{pages}\t{fam}")
    counts = {}
    for _, _, fam in chosen:
        counts[fam] = counts.get(fam, 0) + 1
    print(f"# {len(chosen)} files, {sum(p for _, p, _ in chosen)} pages; by family: "
          + ", ".join(f"{f} {n}" for f, n in sorted(counts.items(), key=lambda x: -x[1])), file=sys.stderr)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def hearth(worker, path, engine):
    cmd = [worker, "--format", "pdf", "--memory-bytes", str(MEMORY_BYTES), "--cpu-seconds", str(CPU_S),
           "--pdf-engine", engine]
    cpu0, t0 = children_cpu(), time.perf_counter()
    try:
        with open(path, "rb") as stdin:
            out = subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=WALL_S)
        reply = json.loads(out.stdout) if out.returncode == 0 else {"crash": f"exit {out.returncode}: "
                                                                    + out.stderr.decode(errors="replace")[-200:]}
    except subprocess.TimeoutExpired:
        reply = {"crash": f"killed after {WALL_S} s"}
    except ValueError as e:
        reply = {"crash": f"bad reply: {e}"}
    seconds, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if "ok" in reply:
        doc = reply["ok"]
        return {"pages": [p["text"] for p in doc["pages"]], "parser": doc.get("parser"), "error": None,
                "seconds": seconds, "cpu": cpu,
                "tables": sum(p["text"].count("\n| --- |") for p in doc["pages"]),
                "sections": sum(len(p.get("sections", [])) for p in doc["pages"])}
    error = reply.get("error") or reply.get("crash")
    return {"pages": [], "error": json.dumps(error)[:200], "seconds": seconds, "cpu": cpu}


class Timeout(Exception):
    pass


def on_alarm(_signum, _frame):
    raise Timeout()


def pypdf_text(path):
    import pypdf  # noqa: PLC0415 - only `run` needs it

    pages, error = [], None
    cpu0, t0 = time.process_time(), time.perf_counter()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(WALL_S)
    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted:
            reader.decrypt("")
        for page in reader.pages:
            pages.append(page.extract_text() or "")
    except Timeout:
        error = f"timed out after {WALL_S} s"
    except Exception as e:  # noqa: BLE001 - a benchmark records every failure and goes on
        error = f"{type(e).__name__}: {e}"[:200]
    finally:
        signal.alarm(0)
    return {"pages": pages if error is None else [], "error": error, "seconds": time.perf_counter() - t0,
            "cpu": time.process_time() - cpu0}


def pdftotext(path, layout):
    cmd = ["pdftotext", "-q"] + (["-layout"] if layout else []) + [path, "-"]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=WALL_S)
        pages = out.stdout.decode("utf-8", "replace").split("\f")
        if pages and not pages[-1].strip():
            pages.pop()
        error = None if out.returncode == 0 else f"exit {out.returncode}"
    except subprocess.TimeoutExpired:
        pages, error = [], f"timed out after {WALL_S} s"
    return {"pages": pages if error is None else [], "error": error, "seconds": time.perf_counter() - t0}


def norm(text):
    return " ".join(text.split())


def similarity(pages, reference):
    """Character-level similarity (0..1) of `pages` to `reference`, page by page when the counts agree."""
    from rapidfuzz.distance import Indel  # noqa: PLC0415

    if not pages:
        return 0.0
    if len(pages) != len(reference):
        pages, reference = [" ".join(pages)], [" ".join(reference)]
    total = weight = 0.0
    for mine, ref in zip(pages, reference):
        a, b = norm(mine), norm(ref)
        w = max(len(b), 1) if b else 0
        if w == 0:
            continue
        total += w * Indel.normalized_similarity(a, b)
        weight += w
    return total / weight if weight else 0.0


def yields_text(result):
    return result["error"] is None and any(visible_chars(p) for p in result["pages"])


TOOLS = ["hearth", "pdf-extract", "pdfium", "pypdf", "pdftotext -layout", "pdftotext"]


def run(args):
    import pypdf  # noqa: PLC0415

    logging.disable(logging.CRITICAL)  # pypdf's warnings about odd fonts, one per file

    files = [line.split("\t")[0] for line in sys.stdin if line.strip() and not line.startswith("#")]
    if args.only:
        files = files[: args.only]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    totals = {t: {"files": 0, "yield": 0, "pages": 0, "seconds": 0.0, "cpu": 0.0, "sim": [], "sim_plain": []}
              for t in TOOLS}
    tables = sections = 0
    with open(out_dir / "results.jsonl", "w") as log:
        for i, path in enumerate(files):
            results = {
                "hearth": hearth(args.worker, path, "auto"),
                "pdf-extract": hearth(args.worker, path, "pdf-extract"),
                "pdfium": hearth(args.worker, path, "pdfium"),
                "pypdf": pypdf_text(path),
                "pdftotext -layout": pdftotext(path, True),
                "pdftotext": pdftotext(path, False),
            }
            ref, plain = results["pdftotext -layout"], results["pdftotext"]
            has_ref = any(visible_chars(p) for p in ref["pages"])
            record = {"file": path}
            for tool, r in results.items():
                t = totals[tool]
                t["files"] += 1
                ok = yields_text(r)
                t["yield"] += ok
                t["pages"] += len(r["pages"]) if r["error"] is None else 0
                t["seconds"] += r["seconds"]
                t["cpu"] += r.get("cpu", 0.0)
                rec = {"yields": ok, "pages": len(r["pages"]), "chars": sum(len(p) for p in r["pages"]),
                       "seconds": round(r["seconds"], 4), "error": r["error"]}
                if has_ref:
                    rec["sim"] = round(similarity(r["pages"], ref["pages"]), 4)
                    rec["sim_plain"] = round(similarity(r["pages"], plain["pages"]), 4)
                    t["sim"].append(rec["sim"])
                    t["sim_plain"].append(rec["sim_plain"])
                if tool == "hearth":
                    rec["parser"] = r.get("parser")
                    rec["tables"] = r.get("tables", 0)
                    rec["sections"] = r.get("sections", 0)
                    tables += r.get("tables", 0)
                    sections += r.get("sections", 0)
                record[tool] = rec
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(f"[{i + 1}/{len(files)}] {path}: " + ", ".join(
                f"{t}={'ok' if record[t]['yields'] else 'NO'}" for t in TOOLS), file=sys.stderr)
    n = len(files)
    print(f"{n} files; pypdf {pypdf.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| tool | files yielding text | % | pages read | wall s | pages/s | CPU s | pages per CPU-s "
          "| similarity to pdftotext -layout | to plain pdftotext |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tool in TOOLS:
        t = totals[tool]
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
        cpu = f"{t['cpu']:.1f}" if t["cpu"] else "-"
        per_cpu = f"{t['pages'] / t['cpu']:.1f}" if t["cpu"] else "-"
        print(f"| {tool} | {t['yield']}/{n} | {100 * t['yield'] / n:.1f} | {t['pages']} | {t['seconds']:.1f} "
              f"| {t['pages'] / t['seconds']:.1f} | {cpu} | {per_cpu} | {mean(t['sim']):.3f} "
              f"({len(t['sim'])} files) | {mean(t['sim_plain']):.3f} |")
    print(f"\nhearth as shipped: {tables} Markdown tables, {sections} headings (sections) over the corpus")


def tables(args):
    print("| file | pages | Markdown tables | pages with a table | seconds |")
    print("|---|---|---|---|---|")
    shown = []
    for path in args.files:
        r = hearth(args.worker, path, "auto")
        found = [t for p in r["pages"] for t in re.findall(r"(?:^\|.*\|\n?)+", p, re.M) if "| --- |" in t]
        with_table = sum(1 for p in r["pages"] if "| --- |" in p)
        print(f"| {Path(path).name} | {len(r['pages'])} | {len(found)} | {with_table} | {r['seconds']:.2f} |"
              + (f" error: {r['error']}" if r["error"] else ""))
        shown += [(Path(path).name, t) for t in found[: args.show]]
    for name, table in shown:
        print(f"\n{name}:\n" + "\n".join(table.splitlines()[:4]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("select")
    s.add_argument("--max", type=int, default=330)
    s.add_argument("--max-pages", type=int, default=100)
    s.add_argument("--pypdf-sdist", help="an unpacked pypdf source distribution (its resources/*.pdf)")
    r = sub.add_parser("run")
    r.add_argument("--worker", default="target/release/hearth-parse-worker")
    r.add_argument("--out", default="/tmp/pdf-corpus")
    r.add_argument("--only", type=int, default=0, help="the first N files only")
    t = sub.add_parser("tables")
    t.add_argument("--worker", default="target/release/hearth-parse-worker")
    t.add_argument("--show", type=int, default=1, help="tables shown per file")
    t.add_argument("files", nargs="+")
    args = parser.parse_args()
    {"select": select, "run": run, "tables": tables}[args.command](args)


if __name__ == "__main__":
    main()
