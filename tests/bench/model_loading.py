#!/usr/bin/env python3
"""Model loading benchmark (BENCHMARKS.md, "Model loading"): starts the release binary with two
on-demand chat models (the same SmolLM2 GGUF as `a` and `b`, prefix caching off so that a warm request
recomputes its prompt as a cold one does) under [engine] max_loaded_models = 1
and measures, over N rounds: POST /v1/models/a/load on an unloaded model (load time), POST
/v1/models/a/unload (unload time), a chat request to an unloaded model (first-request latency,
load included) against the same request to the loaded model (warm), and a request that swaps
models under the budget (unload b + load a + answer). After each unload it reads the process's
RSS and its threads, to show that the engine thread joined and its memory went back.

usage: tests/bench/model_loading.py [ROUNDS]   (from the repository root, after cargo build --release)
"""
import json, os, re, statistics, subprocess, sys, tempfile, time, urllib.request

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"


def config(state):
    model = lambda n: (f'[[models]]\nname = "{n}"\nkind = "chat"\npath = "{MODEL}"\nmax_model_len = 2048\n'
                       f'kv_cache_tokens = 8192\nmax_num_seqs = 4\nenable_prefix_caching = false\nload = "on_demand"\ntemperature = 0.0\n')
    return ("replace_default_models = true\n[engine]\nmax_loaded_models = 1\nthreads = 2\n"
            "prefix_cache_ram_bytes = 0\nprefix_cache_disk_bytes = 0\n" + model("a") + model("b"))


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        answer = json.loads(r.read())
    return time.perf_counter() - started, answer


def chat(base, model):
    return call(base, "POST", "/v1/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8})[0]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def engine_threads(pid):
    names = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return sorted(n for n in names if n.startswith("engine-"))


def main():
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, "hearth.toml")
    with open(cfg, "w") as f:
        f.write(config(d))
    env = dict(os.environ, HEARTH__SERVER__LISTEN="127.0.0.1:0", HEARTH__SERVER__STATE_DIR=os.path.join(d, "state"))
    p = subprocess.Popen(["target/release/hearth", "--config", cfg, "serve"], stdout=subprocess.PIPE,
                         stderr=open(os.path.join(d, "log"), "w"), env=env, text=True)
    base = None
    for line in p.stdout:
        if line.startswith("hearth listening on "):
            base = line.split()[-1]
            break
    try:
        while True:
            try:
                call(base, "GET", "/ready")
                break
            except Exception:
                time.sleep(0.05)
        rss0 = rss_mib(p.pid)
        load, unload, cold, warm, swap, rss_loaded, rss_unloaded, threads_loaded, threads_unloaded = ([] for _ in range(9))
        for _ in range(ROUNDS):
            t, _ = call(base, "POST", "/v1/models/a/load")
            load.append(t)
            rss_loaded.append(rss_mib(p.pid))
            threads_loaded.append(engine_threads(p.pid))
            t, _ = call(base, "POST", "/v1/models/a/unload")
            unload.append(t)
            rss_unloaded.append(rss_mib(p.pid))
            threads_unloaded.append(engine_threads(p.pid))
            cold.append(chat(base, "a"))          # a unloaded: load + answer
            warm.append(statistics.median(chat(base, "a") for _ in range(3)))
            swap.append(chat(base, "b"))          # budget 1: unload a, load b, answer
            call(base, "POST", "/v1/models/b/unload")
        ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"
        print(f"rounds: {ROUNDS}; RSS at start (nothing loaded) {rss0:.0f} MiB")
        print(f"load (POST /v1/models/a/load, unloaded -> loaded): {ms(load)}")
        print(f"unload (POST /v1/models/a/unload, thread joined): {ms(unload)}")
        print(f"first request after an unload (load + 8 tokens): {ms(cold)}")
        print(f"warm request (8 tokens, model loaded): {ms(warm)}")
        print(f"request that swaps models under max_loaded_models = 1 (unload a, load b, 8 tokens): {ms(swap)}")
        print(f"RSS loaded: {statistics.median(rss_loaded):.0f} MiB; after unload: {statistics.median(rss_unloaded):.0f} MiB "
              f"(max {max(rss_unloaded):.0f})")
        print(f"engine threads loaded: {threads_loaded[-1]}; after unload: {threads_unloaded[-1]}")
    finally:
        p.terminate()
        p.wait(timeout=30)


if __name__ == "__main__":
    main()
