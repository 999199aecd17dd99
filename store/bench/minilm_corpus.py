#!/usr/bin/env python3
"""Prepares the 384-d ANN benchmark data: real text found on this machine, embedded by hearth.

Passages of 50-150 words (at most 1,000 characters) are cut from text nobody in this project wrote:
rendered man pages (a seeded sample of --man-pages), the docstrings of Python's standard library,
the plain-text documentation in /usr/share/doc (READMEs, .txt, .md, .rst; changelogs skipped), the
READMEs and `///` / `//!` doc comments of the crates in the local cargo registry (the newest version
of each), the paragraphs of the Rust toolchain's HTML documentation (rustup's rust-docs: books,
reference, std/core/alloc), and the docstrings of the Python files under each --python-tree. They
are deduplicated (exact, case-insensitive), shuffled (seed 0) and embedded through a running
hearth's `POST /v1/embeddings` with its default embedding model (all-MiniLM-L6-v2, 384-d), --batch
passages a request and --concurrency requests in flight, cached under CACHE_DIR so an interrupted
run resumes. The first N passages are the base set, the next Q (held out, never in the base) the
queries. Writes, into OUT_DIR, the files `ann_bench` and `faiss_hnsw.py` read: base.f32 and
queries.f32 (unit vectors), gt.u32 (exact cosine top-10 by brute force), meta.json, and
texts.jsonl (the passages used, base rows first), which ann_bench's whole-store run indexes.
passages.jsonl (the whole corpus) is written first and reused when present, so the corpus can be
made on one machine (--corpus-only) and embedded on another.

  store/bench/minilm_corpus.py OUT_DIR [--base 20000] [--queries 1000] [--man-pages 2000]
      [--python-tree DIR ...] [--corpus-only] [--url http://127.0.0.1:18099]
      [--model all-minilm-l6-v2] [--cache-dir OUT_DIR/cache] [--batch 64] [--concurrency 1]

Requires numpy and, for the embedding step, man(1) and a running hearth.
"""
import argparse
import ast
import concurrent.futures
import glob
import gzip
import hashlib
import html.parser
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np

MIN_WORDS, MAX_WORDS = 50, 150
# Passages of long tokens (paths, URLs, code) can pass the model's 512-token context at 150 words.
MAX_CHARS = 1000
PY_LIB = os.path.dirname(os.__file__)


def paragraphs(text):
    """Blank-line separated paragraphs, whitespace collapsed, mostly-prose ones only."""
    for para in re.split(r"\n\s*\n", text):
        words = para.split()
        if len(words) < 8:
            continue
        alpha = sum(w.isalpha() for w in words) / len(words)
        if alpha < 0.6:  # tables, code, option lists
            continue
        yield " ".join(words)


def passages(text, max_per_doc=25):
    """Joins consecutive paragraphs into passages of MIN_WORDS..MAX_WORDS words; a paragraph
    longer than MAX_WORDS is cut, at a sentence end where there is one."""
    out, cur = [], []
    for para in paragraphs(text):
        words = para.split()
        if len(cur) + len(words) > MAX_WORDS:
            cur = []  # too short to stand alone, too long to join
        while len(words) > MAX_WORDS:
            ends = [i + 1 for i, w in enumerate(words[:MAX_WORDS]) if i + 1 >= MIN_WORDS and w.endswith((".", "?", "!"))]
            cut = ends[-1] if ends else MAX_WORDS
            out.append(words[:cut])
            words = words[cut:]
        cur = cur + words
        if len(cur) >= MIN_WORDS:
            out.append(cur)
            cur = []
    return [" ".join(p) for p in out][:max_per_doc]


def man_pages(rng, count):
    # The Google Cloud SDK's 17,000 templated gcloud pages would crowd out everything else.
    pages = sorted(p for s in "1345678" for p in glob.glob(f"/usr/share/man/man{s}/*") if "gcloud" not in os.path.basename(p))
    rng.shuffle(pages)
    env = dict(os.environ, MANWIDTH="2000", LC_ALL="C.UTF-8")
    for path in pages[:count]:
        try:
            text = subprocess.run(["man", "-l", "-P", "cat", path], capture_output=True, text=True, env=env, timeout=20).stdout
        except subprocess.TimeoutExpired:
            continue
        yield f"man:{os.path.basename(path)}", text


def python_docstrings():
    for path in sorted(glob.glob(f"{PY_LIB}/**/*.py", recursive=True)):
        if "site-packages" in path or "/test" in path or "/idlelib/" in path:
            continue
        try:
            tree = ast.parse(open(path, encoding="utf-8").read())
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield f"py:{os.path.relpath(path, PY_LIB)}:{getattr(node, 'name', '')}", doc


def share_doc():
    for path in sorted(glob.glob("/usr/share/doc/**/*", recursive=True)):
        name = os.path.basename(path).lower()
        if not os.path.isfile(path) or "changelog" in name or "copyright" in name:
            continue
        base = name[:-3] if name.endswith(".gz") else name
        if not (base.endswith((".txt", ".md", ".rst")) or base.startswith(("readme", "news", "faq"))):
            continue
        try:
            raw = gzip.open(path).read() if name.endswith(".gz") else open(path, "rb").read()
            yield f"doc:{path}", raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError):
            continue


FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_prose(text):
    """Markdown with fenced code blocks, HTML lines and headings dropped (the rest is left to
    `paragraphs`, which keeps mostly-prose paragraphs)."""
    out, in_code = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_code = not in_code
            out.append("")
            continue
        s = line.strip()
        if in_code or s.startswith(("<", "#", "|", "[!", "![")) or line.startswith("    "):
            out.append("")
            continue
        out.append(line)
    return "\n".join(out)


def newest_crates():
    """The newest version of each crate in the local cargo registry (one of several versions of the
    same crate would give near-duplicate passages), sorted by name."""
    def version_key(v):
        return [int(x) if x.isdigit() else -1 for x in re.split(r"[.+-]", v)]

    best = {}
    for d in sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/*"))):
        m = re.match(r"(.+?)-(\d+\.\d+\.\d+.*)$", os.path.basename(d))
        if m and (m[1] not in best or version_key(m[2]) > version_key(best[m[1]][0])):
            best[m[1]] = (m[2], d)
    return [best[k][1] for k in sorted(best)]


def crate_docs():
    """READMEs and the `///` / `//!` doc comments of the crates in the local cargo registry."""
    doc_line = re.compile(r"^\s*//[/!]( ?)(.*)$")
    for crate in newest_crates():
        name = os.path.basename(crate)
        for readme in sorted(glob.glob(f"{crate}/README*")):
            try:
                yield f"crate:{name}/{os.path.basename(readme)}", markdown_prose(open(readme, encoding="utf-8").read())
            except (OSError, UnicodeDecodeError):
                continue
        for path in sorted(glob.glob(f"{crate}/src/**/*.rs", recursive=True)):
            try:
                lines = open(path, encoding="utf-8").read().splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            blocks, cur = [], []
            for line in lines:
                m = doc_line.match(line)
                if m and not line.lstrip().startswith("////"):
                    cur.append(m[2])
                elif cur:
                    blocks.append("\n".join(cur))
                    cur = []
            if cur:
                blocks.append("\n".join(cur))
            if blocks:
                yield f"crate:{os.path.relpath(path, os.path.dirname(crate))}", markdown_prose("\n\n".join(blocks))


class _Paragraphs(html.parser.HTMLParser):
    """The text of each <p> element (and <li> outside one) of an HTML page, one paragraph each."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.cur, self.depth = [], None, 0

    def handle_starttag(self, tag, attrs):
        if tag in ("p", "li") and self.cur is None:
            self.cur, self.depth = [], 0
        elif tag in ("pre", "script", "style") and self.cur is not None:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in ("pre", "script", "style") and self.cur is not None and self.depth:
            self.depth -= 1
        elif tag in ("p", "li") and self.cur is not None:
            self.out.append("".join(self.cur))
            self.cur = None

    def handle_data(self, data):
        if self.cur is not None and not self.depth:
            self.cur.append(data)


def rust_html_docs():
    """The paragraphs of the Rust toolchain's HTML documentation (rustup's rust-docs component of
    the `stable` toolchain: the books, the reference and the std/core/alloc API docs; the rendered
    sources and the single-page print.html copies left out)."""
    roots = sorted(glob.glob(os.path.expanduser("~/.rustup/toolchains/stable-*/share/doc/rust/html")))
    if not roots:
        return
    root = roots[0]
    for path in sorted(glob.glob(f"{root}/**/*.html", recursive=True)):
        rel = os.path.relpath(path, root)
        if rel.startswith(("src/", "static.files/")) or os.path.basename(path) == "print.html":
            continue
        try:
            parser = _Paragraphs()
            parser.feed(open(path, encoding="utf-8").read())
        except (OSError, UnicodeDecodeError):
            continue
        if parser.out:
            yield f"rustdoc:{rel}", "\n\n".join(parser.out)


def site_package_docstrings(root):
    """Docstrings of the Python packages installed under ROOT (a virtual environment's site-packages)."""
    for path in sorted(glob.glob(f"{root}/**/*.py", recursive=True)):
        if "/test" in path or "/_vendor/" in path:
            continue
        try:
            tree = ast.parse(open(path, encoding="utf-8").read())
        except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield f"pypkg:{os.path.relpath(path, root)}:{getattr(node, 'name', '')}", doc


def collect(man_count, site_packages=()):
    rng = random.Random(0)
    seen, out = set(), []
    counts = {}
    sources = [man_pages(rng, man_count), python_docstrings(), share_doc(), crate_docs(), rust_html_docs()]
    sources += [site_package_docstrings(root) for root in site_packages]
    for source in sources:
        for origin, text in source:
            for p in passages(text):
                key = hashlib.sha1(p.lower().encode()).digest()
                if key not in seen:
                    seen.add(key)
                    out.append({"origin": origin, "text": p})
                    counts[origin.split(":")[0]] = counts.get(origin.split(":")[0], 0) + 1
    rng.shuffle(out)
    return out, counts


def post_embeddings(url, model, inputs):
    body = json.dumps({"model": model, "input": inputs}).encode()
    req = urllib.request.Request(f"{url}/v1/embeddings", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        reply = json.load(r)
    vecs = [d["embedding"] for d in sorted(reply["data"], key=lambda d: d["index"])]
    return vecs, reply["usage"]["prompt_tokens"]


def embed_one_fitting(url, model, text):
    """Embeds one passage, dropping words from its end while it is over the model's context."""
    words = text.split()
    while True:
        try:
            return post_embeddings(url, model, [" ".join(words)])
        except urllib.error.HTTPError as e:
            if e.code != 400 or b"context_length_exceeded" not in e.read():
                raise
            words = words[: int(len(words) * 0.9)]
            print(f"a passage was over the model's context: cut to {len(words)} words", file=sys.stderr)


def embed(texts, url, model, cache_dir, batch=64, concurrency=1):
    """Embeds through hearth, `concurrency` requests of `batch` passages in flight, caching each
    batch as .npy so an interrupted run resumes."""
    os.makedirs(cache_dir, exist_ok=True)
    t0, progress = time.perf_counter(), {"tokens": 0, "done": 0}
    lock = threading.Lock()

    def one(b, s):
        chunk = texts[s : s + batch]
        key = hashlib.sha1(("\0".join(chunk) + model).encode()).hexdigest()[:16]
        path = os.path.join(cache_dir, f"{b:05d}-{key}.npy")
        if os.path.exists(path):
            return np.load(path)
        try:
            vecs, used = post_embeddings(url, model, chunk)
        except urllib.error.HTTPError as e:
            if e.code != 400:
                raise
            # Some passage is over the model's context (the error does not say which): one by one.
            vecs, used = [], 0
            for text in chunk:
                v, u = embed_one_fitting(url, model, text)
                vecs += v
                used += u
        vecs = np.array(vecs, dtype=np.float32)
        np.save(path, vecs)
        with lock:
            progress["tokens"] += used
            progress["done"] += len(chunk)
            done, dt = progress["done"], time.perf_counter() - t0
            if done // batch % 50 == 0 or done == len(texts):
                print(f"embedded {done}/{len(texts)}: {done / dt:.1f} passages/s, {progress['tokens'] / dt:.0f} tokens/s",
                      file=sys.stderr, flush=True)
        return vecs

    with concurrent.futures.ThreadPoolExecutor(max(1, concurrency)) as pool:
        parts = list(pool.map(lambda bs: one(*bs), enumerate(range(0, len(texts), batch))))
    dt = time.perf_counter() - t0
    print(f"embedding: {progress['done']} passages, {progress['tokens']} tokens in {dt:.1f} s "
          f"({progress['done'] / dt:.1f} passages/s, {progress['tokens'] / dt:.0f} tokens/s; {batch} a request, "
          f"{concurrency} in flight)", file=sys.stderr, flush=True)
    return np.concatenate(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--base", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--man-pages", type=int, default=2_000, help="man pages sampled (seed 0)")
    ap.add_argument("--python-tree", action="append", default=[],
                    help="also the docstrings of the Python files under this folder, tests left out (repeatable)")
    ap.add_argument("--corpus-only", action="store_true", help="write passages.jsonl and texts.jsonl, embed nothing")
    ap.add_argument("--url", default="http://127.0.0.1:18099")
    ap.add_argument("--model", default="all-minilm-l6-v2")
    ap.add_argument("--cache-dir")
    ap.add_argument("--batch", type=int, default=64, help="passages per POST /v1/embeddings")
    ap.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    cache_dir = args.cache_dir or os.path.join(args.out_dir, "cache")

    corpus_path = os.path.join(args.out_dir, "passages.jsonl")
    if os.path.exists(corpus_path):
        corpus = [json.loads(line) for line in open(corpus_path)]
    else:
        corpus, counts = collect(args.man_pages, args.python_tree)
        with open(corpus_path, "w") as f:
            for p in corpus:
                f.write(json.dumps(p) + "\n")
        print(f"corpus: {len(corpus)} passages by source {counts}", file=sys.stderr)
    corpus = [p for p in corpus if len(p["text"]) <= MAX_CHARS]
    need = args.base + args.queries
    if len(corpus) < need:
        sys.exit(f"only {len(corpus)} passages, {need} needed: raise --man-pages")
    texts = [p["text"] for p in corpus[:need]]
    with open(os.path.join(args.out_dir, "texts.jsonl"), "w") as f:
        for p in corpus[:need]:
            f.write(json.dumps(p) + "\n")
    words = [len(t.split()) for t in texts]
    print(f"using {need} passages, {np.mean(words):.0f} words on average (min {min(words)}, max {max(words)})", file=sys.stderr)
    used = {}
    for p in corpus[: args.base]:
        used[p["origin"].split(":")[0]] = used.get(p["origin"].split(":")[0], 0) + 1
    print(f"base set by source: {used}", file=sys.stderr)
    if args.corpus_only:
        return

    emb = embed(texts, args.url, args.model, cache_dir, args.batch, args.concurrency)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
    base = np.ascontiguousarray(emb[: args.base])
    queries = np.ascontiguousarray(emb[args.base :])
    np.save(os.path.join(args.out_dir, "base.npy"), base)
    np.save(os.path.join(args.out_dir, "queries.npy"), queries)

    gt = np.empty((len(queries), 10), dtype=np.uint32)
    for s in range(0, len(queries), 500):
        sims = queries[s : s + 500] @ base.T
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        gt[s : s + 500] = np.take_along_axis(top, order, axis=1)
    base.tofile(os.path.join(args.out_dir, "base.f32"))
    queries.tofile(os.path.join(args.out_dir, "queries.f32"))
    gt.tofile(os.path.join(args.out_dir, "gt.u32"))
    with open(os.path.join(args.out_dir, "meta.json"), "w") as f:
        json.dump({"n": int(base.shape[0]), "q": int(queries.shape[0]), "d": int(base.shape[1]), "model": args.model}, f)
    print(f"data: {base.shape[0]} base x {base.shape[1]}d, {queries.shape[0]} queries, written to {args.out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
