#!/usr/bin/env python3
"""The tiered prefix cache's goals, measured against a running hearth (standard library only).

rotate:  APPS apps, each with its own ~TOKENS-token system prompt, take turns (A, B, C, ... A, B, C,
         ...) for ROUNDS rounds, one request at a time, each with a new question. Prints each
         request's time to first token (streamed, first content chunk), its prompt and cached
         tokens, and per round the share of the prompt cached and TTFT / the app's cold TTFT.
restart: one RAG-shaped request (a system prompt, three numbered sources, a question); prints its
         TTFT, cached tokens and output (temperature 0). Run it before and after a restart and
         compare the outputs (--expect FILE checks the output against a saved one).

Usage: prefix_tiers_bench.py URL MODEL rotate [APPS ROUNDS TOKENS]
       prefix_tiers_bench.py URL MODEL restart [--save FILE | --expect FILE]
"""

import http.client
import json
import sys
import time
import urllib.parse

WORDS = ("policy employee handbook section benefit travel expense approval manager review quarter report "
         "customer support ticket escalation response deadline security password access device network").split()


def system_prompt(app, tokens):
    # ~1 token a word for SmolLM2's tokenizer on this vocabulary; the app's name comes first so
    # the apps differ from the first block on.
    words = [WORDS[(app * 7 + i * 13) % len(WORDS)] for i in range(int(tokens / 1.03))]
    return f"You are assistant {app} of the company. Rules:\n" + " ".join(words)


def stream_chat(url, model, messages, max_tokens=8):
    """(ttft seconds, total seconds, text, usage) of one streamed chat completion."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"HTTP {resp.status}: {resp.read()[:500]!r}")
    ttft, text, usage = None, "", {}
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        event = json.loads(data)
        for choice in event.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content") or ""
            if piece and ttft is None:
                ttft = time.perf_counter() - t0
            text += piece
        if event.get("usage"):
            usage = event["usage"]
    total = time.perf_counter() - t0
    conn.close()
    return (ttft if ttft is not None else total), total, text, usage


def cached_tokens(usage):
    return ((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0


def rotate(url, model, apps, rounds, tokens):
    cold = {}
    for r in range(rounds):
        shares, ratios = [], []
        for app in range(apps):
            messages = [{"role": "system", "content": system_prompt(app, tokens)},
                        {"role": "user", "content": f"Question {r}: what does the handbook say about item {r * apps + app}?"}]
            ttft, _, _, usage = stream_chat(url, model, messages)
            n, c = usage.get("prompt_tokens", 0), cached_tokens(usage)
            if r == 0:
                cold[app] = ttft
            share = c / n if n else 0.0
            ratio = ttft / cold[app]
            print(f"round {r} app {app}: prompt {n} cached {c} ({share:.0%}) ttft {ttft * 1000:.0f} ms ({ratio:.2f}x cold)")
            if r > 0:
                shares.append(share)
                ratios.append(ratio)
        if r > 0:
            print(f"round {r}: cached share min {min(shares):.1%}; ttft/cold max {max(ratios):.3f}, mean {sum(ratios) / len(ratios):.3f}")


def restart(url, model, args):
    sources = "\n\n".join(f"[{i}] handbook.pdf, page {i * 4}: " + system_prompt(10 + i, 300) for i in range(1, 4))
    messages = [{"role": "system", "content": "Answer from the numbered sources only and cite them like [1]."},
                {"role": "user", "content": f"Sources:\n{sources}\n\nQuestion: what is the approval rule for travel expenses?"}]
    ttft, total, text, usage = stream_chat(url, model, messages, max_tokens=32)
    print(f"prompt {usage.get('prompt_tokens')} cached {cached_tokens(usage)} ttft {ttft * 1000:.0f} ms total {total * 1000:.0f} ms")
    print(f"output: {text!r}")
    if len(args) == 2 and args[0] == "--save":
        open(args[1], "w").write(text)
    if len(args) == 2 and args[0] == "--expect":
        expected = open(args[1]).read()
        print("output identical" if expected == text else f"OUTPUT DIFFERS from {expected!r}")


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    url, model, what = sys.argv[1], sys.argv[2], sys.argv[3]
    if what == "rotate":
        apps, rounds, tokens = (int(x) for x in (sys.argv[4:7] + ["8", "3", "1500"][len(sys.argv[4:7]):]))
        rotate(url, model, apps, rounds, tokens)
    elif what == "restart":
        restart(url, model, sys.argv[4:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
