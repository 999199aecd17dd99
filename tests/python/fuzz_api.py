"""schemathesis against a live hearth, from the daemon's own /openapi.json.

Either drives a running daemon (--url, as tests/tests/openapi.rs does with the harness's server) or
starts one from --binary on 127.0.0.1:0 with a temporary state directory (make fuzz-api).

Pass criteria, checked here and not left to schemathesis's exit code alone:
  - schemathesis reports no failure of the checks it runs (not_a_server_error: no 5xx;
    status_code_conformance and content_type_conformance: answers match the document;
    response_schema_conformance where a response schema is declared);
  - the daemon is alive and /health answers 200 afterwards;
  - hearth's own counters say how many requests were answered and how many were 5xx (must be 0).
The document schemathesis reads is the daemon's own, narrowed in one way (--shallow turns it off):
`model` fields name the models the daemon serves (from /v1/models) and generation lengths are
required and at most MAX_GENERATED tokens. Without it nearly every generated chat, completion,
embedding and response request names an unknown model and stops at the 400, so the engines, the
sampler settings and the streams would go untested; with it they run, and stay short.

Prints one summary line: `fuzz-api: N requests, S server errors, schemathesis exit E, daemon alive`.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def get(url, key=None, timeout=10):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


MAX_GENERATED = 16


def served_models(base, key):
    """{"chat": [names], "embedding": [names]} of the daemon's local and remote models."""
    _, text = get(f"{base}/v1/models", key)
    kinds = {"chat": [], "embedding": []}
    for model in json.loads(text)["data"]:
        kinds.setdefault(model.get("meta", {}).get("kind", "chat"), []).append(model["id"])
    return kinds


def narrowed(base, key, workdir):
    """The daemon's document with served model names and short generations (see the header)."""
    _, text = get(f"{base}/openapi.json", key)
    doc = json.loads(text)
    kinds = served_models(base, key)
    schemas = doc["components"]["schemas"]

    def names(field, schema, models):
        assert field in schema["properties"], f"{field} not in the document's {schema}"
        schema["properties"][field] = {"type": "string", "enum": models}

    def short(field, schema, least=1):
        assert field in schema["properties"], f"{field} not in the document's {schema}"
        schema["properties"][field] = {"type": "integer", "minimum": least, "maximum": max(least, MAX_GENERATED)}
        schema.setdefault("required", []).append(field)

    names("model", schemas["GenerationParams"], kinds["chat"])
    short("max_tokens", schemas["GenerationParams"])
    schemas["GenerationParams"]["properties"].pop("max_completion_tokens", None)
    names("model", schemas["CreateResponse"], kinds["chat"])
    short("max_output_tokens", schemas["CreateResponse"], least=16)
    names("model", schemas["EmbeddingsRequest"], kinds["embedding"])
    names("model", schemas["TokenizeRequest"], kinds["chat"] + kinds["embedding"])
    names("embedding_model", schemas["CreateVectorStore"], kinds["embedding"])
    path = os.path.join(workdir, "openapi.narrowed.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def counters(base, key):
    """(requests answered, of which 5xx) from hearth_http_requests_total."""
    _, text = get(f"{base}/metrics", key)
    total = errors = 0
    for line in text.splitlines():
        m = re.match(r'hearth_http_requests_total\{(.*)\} (\d+(?:\.\d+)?)', line)
        if not m:
            continue
        n = int(float(m.group(2)))
        total += n
        if re.search(r'status="5\d\d"', m.group(1)):
            errors += n
    return total, errors


def start(binary, key):
    state = tempfile.mkdtemp(prefix="hearth-fuzz-api-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH__")}
    env.update({
        "HEARTH__SERVER__LISTEN": "127.0.0.1:0",
        "HEARTH__SERVER__STATE_DIR": os.path.join(state, "state"),
        "HEARTH__SERVER__API_KEYS": key,
    })
    config = os.path.join(state, "hearth.toml")
    with open(config, "w") as f:
        f.write("[ingest]\nwatch = []\n")
    log = open(os.path.join(state, "hearth.log"), "w")
    proc = subprocess.Popen([binary, "--config", config, "serve"], stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    for line in proc.stdout:
        if line.startswith("hearth listening on "):
            base = line.split(" on ", 1)[1].strip()
            break
    else:
        sys.exit(f"hearth exited before listening; log in {log.name}")
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if get(f"{base}/ready")[0] == 200:
                return proc, base, log.name
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"hearth not ready in 120 s; log in {log.name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", help="base URL of a running daemon")
    ap.add_argument("--binary", help="start this hearth binary instead")
    ap.add_argument("--api-key", default="fuzz-api-admin-key", help="an admin key (started daemons get it)")
    ap.add_argument("--max-examples", type=int, default=20, help="cases per operation")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", default="1")
    ap.add_argument("--shallow", action="store_true", help="the daemon's document as it is (see the header)")
    ap.add_argument("--exclude-path-regex", default="", help="operations left out (regex on the path)")
    args = ap.parse_args()

    proc = None
    if args.binary:
        proc, base, log = start(args.binary, args.api_key)
    elif args.url:
        base, log = args.url.rstrip("/"), None
    else:
        sys.exit("give --url or --binary")
    try:
        before = counters(base, args.api_key)
        spec = f"{base}/openapi.json" if args.shallow else narrowed(base, args.api_key, tempfile.mkdtemp(prefix="hearth-fuzz-api-doc-"))
        cmd = [
            os.path.join(os.path.dirname(sys.executable), "schemathesis"), "run", spec,
            "--url", base, "-H", f"Authorization: Bearer {args.api_key}",
            "--checks", CHECKS, "-n", str(args.max_examples), "--seed", str(args.seed),
            "--workers", args.workers, "--request-timeout", "60", "--no-color",
            "--suppress-health-check", "all", "--generation-database", "none",
        ]
        if args.exclude_path_regex:
            cmd += ["--exclude-path-regex", args.exclude_path_regex]
        print("running:", " ".join(cmd), flush=True)
        code = subprocess.run(cmd).returncode
        status, _ = get(f"{base}/health")
        after = counters(base, args.api_key)
        requests, server_errors = after[0] - before[0], after[1] - before[1]
        alive = status == 200 and (proc is None or proc.poll() is None)
        print(f"fuzz-api: {requests} requests, {server_errors} server errors, schemathesis exit {code}, daemon {'alive' if alive else 'DEAD'}")
        if log:
            print(f"daemon log: {log}")
        ok = code == 0 and server_errors == 0 and alive
        print("fuzz-api passed" if ok else "fuzz-api FAILED")
        sys.exit(0 if ok else 1)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
