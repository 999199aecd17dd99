"""Log-probabilities through the official openai package. Usage: logprobs_check.py BASE_URL

Checks chat (whole and streamed) and legacy completions: the alternatives are sorted and at most
0, the chosen token at temperature 0 is the top-1 with the same value, the probabilities of the
listed alternatives sum to at most 1, and the tokens spell the answer."""
import math
import sys

from openai import OpenAI

from checks import check

CHAT = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]
# The probabilities of disjoint tokens cannot sum past 1; allow float rounding of 20 terms.
ROUNDING = 1e-5


def check_token(where, logprob, top, n):
    check(len(top) == n, f"{where}: {len(top)} alternatives, asked {n}")
    values = [t[1] for t in top]
    check(all(v <= 0 for v in values) and logprob <= 0, f"{where}: log-probabilities are at most 0 ({logprob}, {values})")
    check(values == sorted(values, reverse=True), f"{where}: alternatives sorted, most likely first ({values})")
    check(sum(math.exp(v) for v in values) <= 1 + ROUNDING, f"{where}: probabilities sum to at most 1")
    # Greedy: the chosen token is the most likely one, with the same log-probability.
    check(abs(top[0][1] - logprob) < 1e-6, f"{where}: chosen {logprob} is the top-1 {top[0]}")


# The default model answers with repeat_penalty 1.1 (config/hearth.toml); a penalty may move a greedy
# choice off the raw distribution's top-1, so the greedy checks turn it off.
NO_PENALTY = {"repetition_penalty": 1.0}


def main():
    client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)

    r = client.chat.completions.create(model=CHAT, messages=QUESTION, temperature=0, max_tokens=16, logprobs=True, top_logprobs=5, extra_body=NO_PENALTY)
    content = r.choices[0].logprobs.content
    check(len(content) == r.usage.completion_tokens or r.choices[0].finish_reason == "stop", f"{len(content)} tokens for {r.usage.completion_tokens} generated")
    check("".join(t.token for t in content) == r.choices[0].message.content, "the tokens spell the answer")
    for i, t in enumerate(content):
        check(bytes(t.bytes).decode("utf-8", "replace") == t.token, f"chat token {i}: bytes match the token")
        check_token(f"chat token {i}", t.logprob, [(a.token, a.logprob) for a in t.top_logprobs], 5)
        check(t.top_logprobs[0].token == t.token, f"chat token {i}: the greedy choice {t.token!r} is the top-1 {t.top_logprobs[0].token!r}")

    stream = client.chat.completions.create(model=CHAT, messages=QUESTION, temperature=0, max_tokens=16, logprobs=True, top_logprobs=5, stream=True, extra_body=NO_PENALTY)
    streamed = []
    for chunk in stream:
        for choice in chunk.choices:
            if choice.logprobs and choice.logprobs.content:
                streamed.extend(choice.logprobs.content)
    check([(t.token, round(t.logprob, 4)) for t in streamed] == [(t.token, round(t.logprob, 4)) for t in content],
          "streamed log-probabilities equal the whole answer's")

    plain = client.chat.completions.create(model=CHAT, messages=QUESTION, temperature=0, max_tokens=4)
    check(plain.choices[0].logprobs is None, "no logprobs unless asked")
    sampled = client.chat.completions.create(model=CHAT, messages=QUESTION, temperature=1.5, seed=7, max_tokens=16, logprobs=True, top_logprobs=3, extra_body={"top_k": 40})
    for t in sampled.choices[0].logprobs.content:
        values = [a.logprob for a in t.top_logprobs]
        check(values == sorted(values, reverse=True) and t.logprob <= values[0] + 1e-6, f"sampled token {t.token!r}: at most the top-1")

    c = client.completions.create(model=CHAT, prompt="The capital of France is", temperature=0, max_tokens=8, logprobs=3, extra_body=NO_PENALTY)
    lp = c.choices[0].logprobs
    check(len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) >= 1, f"completions logprobs lists {lp}")
    check("".join(lp.tokens) == c.choices[0].text, "completion tokens spell the text")
    check(lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))], f"text_offset {lp.text_offset}")
    for i, (tok, value, top) in enumerate(zip(lp.tokens, lp.token_logprobs, lp.top_logprobs)):
        ranked = sorted(top.items(), key=lambda kv: -kv[1])
        check_token(f"completion token {i}", value, ranked, len(top))
        check(len(top) >= 1 and ranked[0][0] == tok, f"completion token {i}: {tok!r} is the top-1 of {top}")

    cs = client.completions.create(model=CHAT, prompt="The capital of France is", temperature=0, max_tokens=8, logprobs=3, stream=True, extra_body=NO_PENALTY)
    tokens, offsets = [], []
    for chunk in cs:
        if chunk.choices and chunk.choices[0].logprobs:
            tokens.extend(chunk.choices[0].logprobs.tokens)
            offsets.extend(chunk.choices[0].logprobs.text_offset)
    check(tokens == lp.tokens and offsets == lp.text_offset, "streamed completion tokens and offsets equal the whole answer's")

    for bad, field in (({"logprobs": True, "top_logprobs": 21}, "top_logprobs"), ({"top_logprobs": 2}, "top_logprobs")):
        try:
            client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=2, **bad)
            check(False, f"{bad} must be refused")
        except Exception as err:  # openai.BadRequestError
            check(getattr(err, "status_code", 0) == 400 and field in str(err), f"{bad} -> 400 naming {field}")

    print("all logprobs checks passed")


if __name__ == "__main__":
    main()
