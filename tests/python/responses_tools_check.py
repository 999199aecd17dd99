"""Function tools on the Responses API with the official openai package, unmodified.

Usage: responses_tools_check.py BASE_URL. Exits non-zero with a message on the first failed check.

tool_choice "required" gives function_call items whose arguments match the schema; a follow-up
with previous_response_id and function_call_output items is answered in text (and a call_id the
conversation does not hold is a 400); the same calls streamed through responses.stream are the
reassembled argument deltas, in the SDK's event order; a named choice with parallel_tool_calls
off makes exactly one call to that function; "none" makes none; replayed function_call items
work without a stored conversation; file_search beside function tools is a 400 naming tools.
"""
import json
import sys

import openai
from openai import OpenAI

from checks import check

CHAT = "smollm2-135m-instruct"
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                          "required": ["city", "unit"], "additionalProperties": False}}
TIME = {"type": "function", "name": "get_time", "description": "Current local time in a time zone", "strict": False,
        "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 40}}, "required": ["zone"], "additionalProperties": False}}
ASK = "What is the weather in Paris?"
SHORT = {"temperature": 0, "max_output_tokens": 100}


def function_calls(response, where):
    """The response's function_call items, each checked against its tool's schema."""
    calls = [item for item in response.output if item.type == "function_call"]
    for c in calls:
        args = json.loads(c.arguments)
        check(c.call_id.startswith("call_") and c.id == "fc_" + c.call_id[len("call_"):] and c.status == "completed", f"{where}: item shape {c}")
        if c.name == "get_weather":
            check(set(args) == {"city", "unit"} and isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit"), f"{where}: weather args {args}")
        elif c.name == "get_time":
            check(set(args) == {"zone"} and isinstance(args["zone"], str), f"{where}: time args {args}")
        else:
            check(False, f"{where}: unknown function {c.name}")
    check(len({c.call_id for c in calls}) == len(calls), f"{where}: call ids are distinct")
    return calls


def main():
    client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)

    # "required": only calls, valid for their schemas; the tools and the choice are echoed.
    r = client.responses.create(model=CHAT, input=ASK, tools=[WEATHER, TIME], tool_choice="required", **SHORT)
    calls = function_calls(r, "required")
    check(r.status == "completed" and len(calls) >= 1 and not any(i.type == "message" for i in r.output), f"required -> {r.output}")
    check(r.tool_choice == "required" and [t.name for t in r.tools] == ["get_weather", "get_time"], f"echo: {r.tool_choice} {r.tools}")
    required = [(c.name, c.arguments) for c in calls]
    print("required:", required)

    # The follow-up: each call's output with previous_response_id; the model answers in text.
    outputs = [{"type": "function_call_output", "call_id": c.call_id, "output": "Sunny, 21 degrees celsius."} for c in calls]
    follow = client.responses.create(model=CHAT, previous_response_id=r.id, input=outputs, tools=[WEATHER, TIME], tool_choice="none", **SHORT)
    check(follow.status == "completed" and follow.output_text.strip() and not function_calls(follow, "follow-up"), f"follow-up answers: {follow.output!r}")
    print("after the tool output:", follow.output_text)
    try:
        client.responses.create(model=CHAT, previous_response_id=r.id, input=[{"type": "function_call_output", "call_id": "call_unknown", "output": "x"}], **SHORT)
        check(False, "an output for a call the conversation does not hold is refused")
    except openai.BadRequestError as err:
        check(err.param == "input[0].call_id" and "call_unknown" in str(err), f"unknown call_id: {err}")

    # Streamed with the SDK's helper: the final response's calls are the reassembled deltas and
    # equal the whole answer's (greedy).
    with client.responses.stream(model=CHAT, input=ASK, tools=[WEATHER, TIME], tool_choice="required", **SHORT) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    streamed = [(c.name, c.arguments) for c in function_calls(final, "stream")]
    check(streamed == required, f"streamed {streamed} vs whole {required}")
    deltas = {}
    for e in events:
        if e.type == "response.function_call_arguments.delta":
            deltas[e.item_id] = deltas.get(e.item_id, "") + e.delta
    done_args = {e.item_id: e.arguments for e in events if e.type == "response.function_call_arguments.done"}
    by_id = {c.id: c.arguments for c in final.output if c.type == "function_call"}
    check(deltas == done_args == by_id, f"deltas {deltas} = arguments.done {done_args} = final {by_id}")
    first = kinds.index("response.output_item.added")
    added = events[first].item
    check(added.type == "function_call" and added.arguments == "" and added.status == "in_progress", f"a call item opens with empty arguments: {added}")
    order = [k for k in kinds if k in ("response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done")]
    one = ["response.output_item.added"] + ["response.function_call_arguments.delta"] * (order.index("response.function_call_arguments.done") - 1) + ["response.function_call_arguments.done", "response.output_item.done"]
    check(order[:len(one)] == one and kinds[-1] == "response.completed", f"event order {order}")

    # A named function with parallel_tool_calls off: exactly one call, to it.
    named = client.responses.create(model=CHAT, input=ASK, tools=[WEATHER, TIME], tool_choice={"type": "function", "name": "get_time"},
                                    parallel_tool_calls=False, **SHORT)
    calls = function_calls(named, "named")
    check(len(calls) == 1 and calls[0].name == "get_time", f"named -> {named.output}")

    # "none": no calls, a text answer.
    none = client.responses.create(model=CHAT, input=ASK, tools=[WEATHER, TIME], tool_choice="none", temperature=0, max_output_tokens=24)
    check(not function_calls(none, "none") and none.output_text.strip(), f"none -> {none.output}")
    # The follow-up's prompt was this one plus the stored call and its output.
    check(follow.usage.input_tokens > none.usage.input_tokens + 15, f"the follow-up's prompt holds the calls and outputs ({follow.usage.input_tokens} vs {none.usage.input_tokens} tokens)")

    # Replayed items, nothing stored: the call and its output in the input itself.
    call = {"type": "function_call", "call_id": "call_replayed1", "name": "get_weather", "arguments": json.dumps({"city": "Rome", "unit": "celsius"})}
    replay = client.responses.create(model=CHAT, store=False, tools=[WEATHER], input=[
        {"role": "user", "content": "What is the weather in Rome?"}, call,
        {"type": "function_call_output", "call_id": "call_replayed1", "output": "Rain, 14 degrees celsius."}], tool_choice="none", temperature=0, max_output_tokens=24)
    check(replay.output_text.strip() != "", f"replayed call answered: {replay.output_text!r}")

    try:
        client.responses.create(model=CHAT, input=ASK, tools=[WEATHER, {"type": "file_search", "vector_store_ids": ["vs_x"]}], **SHORT)
        check(False, "file_search beside function tools is refused")
    except openai.BadRequestError as err:
        check(err.param == "tools" and "file_search" in str(err), f"mixed tools: {err}")

    print("all responses tool checks passed")


if __name__ == "__main__":
    main()
