"""Drive hearth's Ollama API with the official `ollama` package. Usage: ollama_check.py BASE_URL

BASE_URL is the server's root (http://127.0.0.1:PORT); the package adds /api/... itself."""
import math
import sys

import ollama

from checks import check

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
GREEDY = {"temperature": 0, "num_predict": 24}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current local time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 40}}, "required": ["zone"]}}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def get_weather(city: str, unit: str) -> str:
    """Current weather in a city.

    Args:
      city: The city, like Paris
      unit: celsius or fahrenheit
    """
    return f"Sunny, 21 degrees {unit} in {city}."


def first_call(client, messages, tools):
    """Ollama has no tool_choice (it is always auto) and SmolLM2-135M answers in text more often
    than it calls: sample with seeds until an answer calls the Python function get_weather (at
    most 8 tries; failing that, the check fails). Returns the options and the answer."""
    for seed in (5, 31, 11, 17, 23, 29, 37, 41):
        options = {"temperature": 1.0, "seed": seed, "num_predict": 120}
        r = client.chat(model=CHAT, messages=messages, tools=tools, options=options)
        names = [c.function.name for c in r.message.tool_calls or []]
        if "get_weather" in names:
            check(r.done_reason == "stop", f"a call ends with done_reason stop: {r.done_reason}")
            return options, r
        print(f"seed {seed}: no call to get_weather: {names} {r.message.content[:60]!r}")
    check(False, "no answer in 8 seeds called get_weather")


def tools_round_trip(client):
    """tools on /api/chat: a Python function (the package builds its schema from the signature
    and docstring) beside a schema given as a dict; calls with dict arguments, whole and streamed,
    the tool results answered in text."""
    options, r = first_call(client, ASK_WEATHER, [get_weather, TIME])
    calls = r.message.tool_calls
    for c in calls:
        args = c.function.arguments
        check(isinstance(args, dict), f"arguments are an object: {c}")
        if c.function.name == "get_weather":
            check(set(args) == {"city", "unit"} and get_weather(**args).startswith("Sunny"), f"get_weather's arguments fit the Python function's signature: {args}")
        else:
            check(c.function.name == "get_time" and set(args) == {"zone"} and isinstance(args["zone"], str), f"get_time's arguments follow its schema: {args}")

    parts = list(client.chat(model=CHAT, messages=ASK_WEATHER, tools=[get_weather, TIME], options=options, stream=True))
    with_calls = [p for p in parts if p.message.tool_calls]
    check(len(with_calls) == 1 and parts[-1].done and parts[-1].done_reason == "stop", f"streamed: the calls come in one part of {len(parts)}")
    # Sampled at temperature 1, the streamed answer (its prompt now cached: another batch shape)
    # may differ from the whole one; each of its calls must still be well-formed.
    streamed = with_calls[0].message.tool_calls
    check(all(c.function.name in ("get_weather", "get_time") and isinstance(c.function.arguments, dict) for c in streamed), f"streamed calls {streamed}")
    check(all(not p.message.tool_calls for p in parts[:-1] if p is not with_calls[0]) and not parts[-1].message.content, "the other parts carry no calls")

    results = [{"role": "tool", "content": get_weather(**c.function.arguments) if c.function.name == "get_weather" else "12:00",
                "tool_name": c.function.name} for c in calls]
    answer = client.chat(model=CHAT, messages=ASK_WEATHER + [r.message] + results, options={"temperature": 0, "num_predict": 30})
    check(not answer.message.tool_calls and answer.message.content.strip(), f"the tool results are answered in text: {answer.message.content!r}")


def main():
    client = ollama.Client(host=sys.argv[1])

    listed = client.list()
    names = [m.model for m in listed.models]
    check(names == [f"{CHAT}:latest", f"{EMBED}:latest"], f"list -> {names}")
    chat_entry = listed.models[0]
    check(chat_entry.size > 10_000_000 and chat_entry.details.format == "gguf", f"list entry {chat_entry}")
    check(chat_entry.details.parameter_size.endswith("M"), f"parameter_size {chat_entry.details.parameter_size}")
    check(chat_entry.modified_at is not None, "modified_at parses as a date")

    r = client.chat(model=CHAT, messages=QUESTION, options=GREEDY)
    text = r.message.content
    check("Paris" in text, f"chat answers: {text!r}")
    check(r.done and r.done_reason in ("stop", "length"), f"done {r.done} done_reason {r.done_reason}")
    check(r.eval_count >= 1 and r.prompt_eval_count > 5, f"counts {r.prompt_eval_count} {r.eval_count}")
    check(r.total_duration >= r.prompt_eval_duration + r.eval_duration > 0, f"durations {r.total_duration} {r.prompt_eval_duration} {r.eval_duration}")
    check(r.load_duration == 0, f"load_duration {r.load_duration}")

    parts = list(client.chat(model=f"{CHAT}:latest", messages=QUESTION, options=GREEDY, stream=True))
    check(len(parts) >= 2 and all(not p.done for p in parts[:-1]) and parts[-1].done, f"{len(parts)} streamed parts, only the last done")
    streamed = "".join(p.message.content for p in parts)
    check(streamed == text, f"streamed {streamed!r} equals the whole answer {text!r} (greedy)")
    check(parts[-1].eval_count == r.eval_count and parts[-1].done_reason == r.done_reason, "the last part carries the counts")

    g = client.generate(model=CHAT, prompt="What is the capital of France? Answer in one word.", options=GREEDY)
    check(g.response == text, f"generate (templated) {g.response!r} equals chat's {text!r}")
    raw = client.generate(model=CHAT, prompt="The capital of France is", raw=True, options={"temperature": 0, "num_predict": 8}, stream=False)
    check(raw.eval_count <= 8 and len(raw.response) > 0, f"raw generate {raw.response!r} ({raw.eval_count} tokens)")
    capped = client.generate(model=CHAT, prompt="Count from one to fifty in words.", options={"temperature": 0, "num_predict": 5})
    check(capped.eval_count == 5 and capped.done_reason == "length", f"num_predict 5 -> {capped.eval_count} tokens, {capped.done_reason}")
    stopped = client.generate(model=CHAT, prompt="The capital of France is", raw=True, options={"temperature": 0, "num_predict": 8, "stop": ["."]})
    check(stopped.response == raw.response.split(".")[0] and stopped.done_reason == "stop", f"stop ['.'] -> {stopped.response!r}")

    schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
    structured = client.chat(model=CHAT, messages=[{"role": "user", "content": "Capital of France, as JSON."}], format=schema, options={"temperature": 0, "num_predict": 120})
    import json
    obj = json.loads(structured.message.content)
    check(isinstance(obj, dict) and isinstance(obj.get("capital"), str), f"format=schema -> {structured.message.content!r}")

    e = client.embed(model=EMBED, input=["The sky is blue.", "Grass is green."])
    check(len(e.embeddings) == 2 and len(e.embeddings[0]) == 384, f"embed -> {len(e.embeddings)} x {len(e.embeddings[0])}")
    norm = math.sqrt(sum(x * x for x in e.embeddings[0]))
    check(abs(norm - 1) < 1e-3, f"embeddings are normalised ({norm})")
    check(e.prompt_eval_count > 4, f"embed prompt_eval_count {e.prompt_eval_count}")
    legacy = client.embeddings(model=EMBED, prompt="The sky is blue.")
    check(max(abs(a - b) for a, b in zip(legacy.embedding, e.embeddings[0])) < 1e-5, "/api/embeddings equals /api/embed's first vector")

    shown = client.show(CHAT)
    check(shown.capabilities == ["completion"], f"show capabilities {shown.capabilities}")
    lengths = [v for k, v in shown.modelinfo.items() if k.endswith(".context_length")]
    check(lengths and lengths[0] > 0, f"show model_info {shown.modelinfo}")
    check(client.show(EMBED).capabilities == ["embedding"], "the embedding model's capabilities")

    running = client.ps()
    check([m.model for m in running.models] == names, f"ps -> {running.models}")
    check(running.models[0].context_length > 0, "ps context_length")

    try:
        client.chat(model="no-such-model", messages=QUESTION)
        check(False, "an unknown model must fail")
    except ollama.ResponseError as err:
        check(err.status_code == 404 and err.error == "model 'no-such-model' not found", f"unknown model -> {err.status_code} {err.error!r}")
    try:
        client.chat(model=CHAT, messages=QUESTION, options={"num_ctx": 10_000_000})
        check(False, "a num_ctx beyond the model's context must fail")
    except ollama.ResponseError as err:
        check(err.status_code == 400 and "num_ctx" in err.error, f"num_ctx -> {err.status_code} {err.error!r}")

    tools_round_trip(client)

    print("all ollama checks passed")


if __name__ == "__main__":
    main()
