"""Tool calling, structured output and exact errors with the official openai package.
Usage: tools_check.py BASE_URL. Exits non-zero with a message on the first failed check."""
import datetime
import json
import sys
import uuid
from typing import Optional

import openai
from openai import OpenAI
from pydantic import BaseModel, conint, constr

from checks import check

CHAT = "smollm2-135m-instruct"


class Address(BaseModel):
    # Bounded strings bound the whole object, so even a temperature-1 sample ends within max_tokens
    # (an unbounded string let seed 3 ramble past 300 tokens: finish_reason "length", nothing to parse).
    city: constr(max_length=40)
    zip_code: constr(max_length=12)


class Visit(BaseModel):
    visitor_id: uuid.UUID
    when: datetime.datetime
    stars: conint(ge=1, le=5)
    home: Address
    work: Optional[Address] = None


class GetWeather(BaseModel):
    """Current weather in a city."""
    city: str
    unit: str


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current local time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 40}}, "required": ["zone"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]


def checked_calls(message, where):
    """Every call names an offered tool and its arguments are JSON matching that tool's schema."""
    calls = message.tool_calls or []
    for c in calls:
        args = json.loads(c.function.arguments)
        check(c.type == "function" and c.id.startswith("call_"), f"{where}: call shape {c}")
        if c.function.name == "get_weather":
            check(set(args) == {"city", "unit"} and isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit"), f"{where}: weather args {args}")
        elif c.function.name == "get_time":
            check(set(args) == {"zone"} and isinstance(args["zone"], str), f"{where}: time args {args}")
        else:
            check(False, f"{where}: unknown tool {c.function.name}")
    check(len({c.id for c in calls}) == len(calls), f"{where}: call ids are distinct")
    return calls


def main():
    client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)

    # Structured output through llama.cpp's converter: datetime, UUID, conint, nested and optional models.
    for temperature in (0.0, 1.0):
        r = client.chat.completions.parse(model=CHAT, messages=[{"role": "user", "content": "Describe a visit to a museum as JSON."}],
                                          response_format=Visit, max_tokens=300, temperature=temperature, seed=3)
        choice = r.choices[0]
        check(choice.finish_reason == "stop", f"parse (t={temperature}) finished: {choice.finish_reason} {choice.message.content!r}")
        visit = choice.message.parsed
        check(isinstance(visit, Visit) and 1 <= visit.stars <= 5 and isinstance(visit.when, datetime.datetime), f"parse -> {visit!r}")
    print("parse ok:", visit.model_dump_json())

    # tool_choice "required": only calls, valid for their schemas.
    r = client.chat.completions.create(model=CHAT, messages=ASK, tools=[WEATHER, TIME], tool_choice="required", temperature=0, max_tokens=200)
    choice = r.choices[0]
    calls = checked_calls(choice.message, "required")
    check(len(calls) >= 1 and choice.finish_reason == "tool_calls", f"required -> {choice}")
    required = [(c.function.name, c.function.arguments) for c in calls]
    print("required ok:", required)

    # A named function, and parallel_tool_calls=False: exactly one call, to it.
    r = client.chat.completions.create(model=CHAT, messages=ASK, tools=[WEATHER, TIME], parallel_tool_calls=False,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}}, temperature=0.7, seed=1, max_tokens=200)
    calls = checked_calls(r.choices[0].message, "named")
    check(len(calls) == 1 and calls[0].function.name == "get_time", f"named -> {r.choices[0].message}")

    # parse() with a pydantic tool: the SDK checks the arguments against the model.
    r = client.chat.completions.parse(model=CHAT, messages=ASK, tools=[openai.pydantic_function_tool(GetWeather)], tool_choice="required", temperature=0, max_tokens=200)
    parsed = r.choices[0].message.tool_calls[0].function.parsed_arguments
    check(isinstance(parsed, GetWeather), f"pydantic tool -> {parsed!r}")

    # Parallel calls allowed: one or more, each valid (the grammar allows several; the model decides).
    r = client.chat.completions.create(model=CHAT, messages=ASK, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=True, temperature=1.0, seed=5, max_tokens=300)
    check(len(checked_calls(r.choices[0].message, "parallel")) >= 1, "parallel: at least one call")

    # "auto": text or calls; whatever the model chose is well-formed.
    for seed in range(3):
        r = client.chat.completions.create(model=CHAT, messages=ASK, tools=[WEATHER, TIME], temperature=1.0, seed=seed, max_tokens=120)
        m = r.choices[0].message
        calls = checked_calls(m, "auto")
        check(bool(calls) == (r.choices[0].finish_reason == "tool_calls") and (calls or m.content), f"auto -> {r.choices[0]}")

    # Streamed tool-call deltas, reassembled by the SDK, equal the non-streamed calls (greedy).
    with client.chat.completions.stream(model=CHAT, messages=ASK, tools=[WEATHER, TIME], tool_choice="required", temperature=0, max_tokens=200) as stream:
        final = stream.get_final_completion()
    streamed = [(c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls or []]
    check(final.choices[0].finish_reason == "tool_calls" and streamed == required, f"stream {streamed} vs {required}")
    # The same by hand: the first delta of a call has id, type and name; then argument fragments.
    pieces = {}
    chunks = client.chat.completions.create(model=CHAT, messages=ASK, tools=[WEATHER, TIME], tool_choice="required", temperature=0, max_tokens=200, stream=True)
    fragments = 0
    for chunk in chunks:
        for choice in chunk.choices:
            for d in choice.delta.tool_calls or []:
                entry = pieces.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                if d.id:
                    check(entry["id"] is None and d.type == "function" and d.function.name, f"a call opens once with id, type and name: {d}")
                    entry["id"], entry["name"] = d.id, d.function.name
                if d.function and d.function.arguments:
                    fragments += 1
                    entry["arguments"] += d.function.arguments
    manual = [(pieces[i]["name"], pieces[i]["arguments"]) for i in sorted(pieces)]
    check(manual == required and fragments >= len(required), f"manual reassembly {manual} ({fragments} fragments)")

    # A tool result fed back: the model answers in text.
    call = {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris", "unit": "celsius"})}}
    history = [ASK[0], {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_abc123", "content": "Sunny, 21 degrees celsius."}]
    r = client.chat.completions.create(model=CHAT, messages=history, tools=[WEATHER, TIME], tool_choice="none", temperature=0, max_tokens=60)
    m = r.choices[0].message
    check(not m.tool_calls and m.content and r.choices[0].finish_reason in ("stop", "length"), f"answer after the tool result: {r.choices[0]}")
    print("answer after tool result:", m.content)

    # Exact errors.
    try:
        client.chat.completions.create(model="no-such-model", messages=ASK)
        check(False, "unknown model raises")
    except openai.NotFoundError as err:
        check(err.status_code == 404 and err.code == "model_not_found" and "no-such-model" in str(err), f"404: {err}")
    try:
        client.chat.completions.create(model=CHAT, messages=ASK, extra_body={"audio": {"voice": "alloy", "format": "wav"}})
        check(False, "an unimplemented field raises")
    except openai.BadRequestError as err:
        check(err.param == "audio" and "audio" in str(err), f"400 names the field: {err}")
    try:
        client.chat.completions.create(model=CHAT, messages=ASK, n=2)
        check(False, "n = 2 raises")
    except openai.BadRequestError as err:
        check(err.param == "n", f"n=2: {err}")
    try:
        client.chat.completions.create(model=CHAT, messages=ASK, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}})
        check(False, "a named choice outside the tools raises")
    except openai.BadRequestError as err:
        check(err.param == "tool_choice", f"tool_choice: {err}")

    print("all tool checks passed")


if __name__ == "__main__":
    main()
