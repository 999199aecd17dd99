#!/usr/bin/env python3
"""Write RAG-shaped prompts for `hearth bench --data FILE`: one shared ~1,570-token system prompt
(SmolLM2 tokenizer) followed by a distinct short question per line, 16 output tokens each.
Usage: rag_prompts.py OUT.jsonl [N]"""
import json
import sys

SYSTEM = ("You are hearth, a careful assistant for an engineering team. Answer only from the documents "
          "provided below, cite the page of every fact, and say plainly when the documents do not contain "
          "the answer. ") * 40


def main():
    out, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40
    with open(out, "w") as f:
        for i in range(n):
            q = f"Question {i}: what does section {i} of the maintenance manual say about the pump number {i * 7}?"
            f.write(json.dumps({"prompt": SYSTEM + "\n\n" + q + "\nAnswer:", "output_tokens": 16}) + "\n")


if __name__ == "__main__":
    main()
