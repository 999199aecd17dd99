"""Drive hearth with the official openai package. Usage: sdk_check.py BASE_URL REFERENCE_JSON"""
import json
import math
import sys

import openai
from openai import OpenAI

from checks import check

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


def main():
    base, ref_path = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base, api_key="unused", max_retries=0)

    ids = [m.id for m in client.models.list()]
    check(ids == [CHAT, EMBED], f"models.list -> {ids}")

    r = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
                                       temperature=0, max_tokens=24)
    text = r.choices[0].message.content
    check("Paris" in text, f"chat.completions.create answers: {text!r}")
    check(r.usage.completion_tokens >= 1 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
          f"usage {r.usage}")

    stream = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
                                            temperature=0, max_tokens=24, stream=True, stream_options={"include_usage": True})
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    check("".join(pieces) == text, "streamed text equals the non-streamed text (greedy)")
    check(finish in ("stop", "length") and usage is not None and usage.completion_tokens == r.usage.completion_tokens,
          f"stream finish_reason {finish} and usage {usage}")

    c = client.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=5, temperature=0,
                                  extra_body={"ignore_eos": True})
    check(c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 5, f"completions.create {c.choices[0]}")

    refs = json.load(open(ref_path))["references"]
    e = client.embeddings.create(model=EMBED, input=[x["text"] for x in refs])  # the SDK asks for base64
    for got, ref in zip(e.data, refs):
        a, b = got.embedding, ref["embedding"]
        cos = sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))
        check(len(a) == 384 and cos >= 0.99, f"embedding of {ref['text']!r}: cosine {cos:.6f}")

    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        check(False, "unknown model raises")
    except openai.NotFoundError as err:
        check("no-such-model" in str(err) and err.code == "model_not_found", f"unknown model raises NotFoundError: {err}")

    try:
        client.chat.completions.create(model=CHAT, messages=[])
        check(False, "empty messages raise")
    except openai.BadRequestError as err:
        check("at least one message" in str(err), "empty messages raise BadRequestError")

    print("all openai SDK checks passed")


if __name__ == "__main__":
    main()
