"""Time from dropping a file into hearth's watched folder to it being searchable.

Usage: drop_to_searchable.py BASE_URL INBOX_DIR FILE [FILE ...]

For each file: copy it into the inbox (as a new name, so it is new content to hearth only if its
bytes are new), then poll the inbox vector store until the file's status is `completed`, and
report the seconds from the copy to that moment. The store is found by name (`inbox`).
Prints one line per file and a JSON summary.
"""
import json
import os
import shutil
import sys
import time
import urllib.request


def get(url):
    with urllib.request.urlopen(url) as r:
        return json.load(r)


def main():
    base, inbox, files = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3:]
    store = next(s for s in get(f"{base}/v1/vector_stores")["data"] if s["name"] == "inbox")["id"]
    results = []
    for path in files:
        name = f"bench-{time.time_ns()}-{os.path.basename(path)}"
        start = time.monotonic()
        shutil.copy(path, os.path.join(inbox, name))
        while True:
            files_now = get(f"{base}/v1/vector_stores/{store}/files?limit=10000")["data"]
            mine = [f for f in files_now if f.get("filename") == name]
            if mine and mine[0]["status"] != "in_progress":
                break
            time.sleep(0.05)
        seconds = time.monotonic() - start
        results.append({"file": os.path.basename(path), "status": mine[0]["status"], "chunks": mine[0].get("chunk_count"),
                        "bytes": os.path.getsize(path), "seconds": round(seconds, 2)})
        print(f"{os.path.basename(path)}: {mine[0]['status']} after {seconds:.2f} s ({mine[0].get('chunk_count')} chunks)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
