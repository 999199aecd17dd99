"""Window re-scoring (BERT-MaxP) of hybrid candidates, as a reranker experiment against a running hearth.

For each question of tests/fixtures/retrieval/questions.jsonl: the top-5 of each search mode, and the hybrid
top-N re-ordered by the best cosine between the question and 100-word windows (stride 50) of each candidate,
embedded by the store's embedding model (`maxp100`), and that order fused with the hybrid one by reciprocal
rank (`hyb+maxp100`). Prints hit rate@5 and MRR per ordering and the re-scoring time per question.
Usage: window_rerank.py BASE_URL [N=20]   (vector store `inbox` holds the four PDFs of the fixture)
"""
import json, sys, urllib.request, math, time
base = sys.argv[1]; N = int(sys.argv[2]) if len(sys.argv) > 2 else 20
def post(path, body):
    r = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(r))
stores = json.load(urllib.request.urlopen(base + "/v1/vector_stores"))["data"]
vs = [s for s in stores if s["name"] == "inbox"][0]["id"]
qs = [json.loads(l) for l in open(__import__("pathlib").Path(__file__).resolve().parents[2] / "tests/fixtures/retrieval/questions.jsonl")]
def emb(texts):
    out = []
    for i in range(0, len(texts), 32):
        out += [d["embedding"] for d in post("/v1/embeddings", {"model": "all-minilm-l6-v2", "input": texts[i:i+32]})["data"]]
    return out
def cos(a, b): return sum(x*y for x, y in zip(a, b)) / (math.sqrt(sum(x*x for x in a)) * math.sqrt(sum(y*y for y in b)) + 1e-9)
def windows(text, size, stride):
    w = text.split()
    if len(w) <= size: return [" ".join(w)]
    return [" ".join(w[i:i+size]) for i in range(0, max(1, len(w) - size + stride), stride)]
def score(ranked, q, k=5):
    gold = set(q.get("pages") or [q["page"]])
    for i, (f, p) in enumerate(ranked[:k]):
        if f == q["file"] and p in gold: return 1.0, 1.0 / (i + 1)
    return 0.0, 0.0
res = {}
t_rr = 0
for q in qs:
    per = {}
    for mode in ["vector", "keyword", "hybrid"]:
        d = post(f"/v1/vector_stores/{vs}/search", {"query": q["question"], "max_num_results": 5, "search_mode": mode})["data"]
        per[mode] = [(h["filename"], h["page"]) for h in d]
    t0 = time.time()
    cand = post(f"/v1/vector_stores/{vs}/search", {"query": q["question"], "max_num_results": N, "search_mode": "hybrid"})["data"]
    qe = emb([q["question"]])[0]
    for size, stride in [(100, 50)]:
        allw, owner = [], []
        for i, h in enumerate(cand):
            for w in windows(h["content"][0]["text"], size, stride):
                allw.append(w); owner.append(i)
        es = emb(allw)
        best = [-1.0] * len(cand)
        for e, i in zip(es, owner): best[i] = max(best[i], cos(qe, e))
        order = sorted(range(len(cand)), key=lambda i: -best[i])
        per[f"maxp{size}"] = [(cand[i]["filename"], cand[i]["page"]) for i in order]
        rank_m = {i: r for r, i in enumerate(order)}
        fused = sorted(range(len(cand)), key=lambda i: -(1/(60+i+1) + 1/(60+rank_m[i]+1)))
        per[f"hyb+maxp{size}"] = [(cand[i]["filename"], cand[i]["page"]) for i in fused]
    t_rr += time.time() - t0
    print(len(res.get("vector", [])), round(time.time() - t0, 1), flush=True)
    for m, r in per.items():
        h, rr = score(r, q)
        res.setdefault(m, []).append((h, rr))
for m, v in res.items():
    print(f"{m:14} hit@5={sum(x for x,_ in v)/len(v):.3f} mrr={sum(y for _,y in v)/len(v):.3f} n={len(v)}")
print("re-scoring seconds per question:", round(t_rr / len(qs), 2))
