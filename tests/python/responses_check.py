"""The Responses API with file_search through the official openai package, unmodified.

Usage: responses_check.py BASE_URL VECTOR_STORE_ID PDF_NAME

The vector store holds the README's sample (bread-guide.pdf; page 2: 10 grams of salt in the country loaf),
the three-page PDF and a note.
Asks about the code (whole and streamed), follows up with previous_response_id, asks about
something no document covers, and retrieves and deletes a stored response. Exits non-zero with a
message on the first failed check.
"""
import sys

from openai import OpenAI

from checks import check

CHAT = "smollm2-135m-instruct"


def citations(response):
    out = []
    for item in response.output:
        if item.type == "message":
            for part in item.content:
                out.extend(a for a in part.annotations if a.type == "file_citation")
    return out


def main():
    base, vs, pdf_name = sys.argv[1], sys.argv[2], sys.argv[3]
    client = OpenAI(base_url=base, api_key="unused", max_retries=0)
    tool = {"type": "file_search", "vector_store_ids": [vs], "max_num_results": 3}
    question = "How much salt goes into the country loaf?"

    r = client.responses.create(model=CHAT, input=question, tools=[tool],
                                include=["file_search_call.results"], temperature=0, max_output_tokens=64)
    check(r.status == "completed" and r.output_text.strip() != "", f"responses.create answers: {r.output_text!r}")
    calls = [i for i in r.output if i.type == "file_search_call"]
    check(len(calls) == 1 and calls[0].results and "10 grams of salt" in calls[0].results[0].text, "the file_search_call carries its results")
    cites = citations(r)
    check(len(cites) >= 1, f"the answer has file_citation annotations: {cites}")
    first = cites[0]
    extra = first.model_extra or {}
    check(first.filename == pdf_name and extra.get("page") == 2, f"the first citation points at {first.filename} page {extra.get('page')}")
    check(r.usage is not None and r.usage.output_tokens > 0, f"usage {r.usage}")

    events = list(client.responses.create(model=CHAT, input=question, tools=[tool], stream=True,
                                          temperature=0, max_output_tokens=64))
    kinds = [e.type for e in events]
    check(kinds[0] == "response.created" and kinds[-1] == "response.completed", f"stream opens and closes: {kinds[0]} .. {kinds[-1]}")
    for needed in ["response.file_search_call.completed", "response.output_text.delta", "response.output_text.done",
                   "response.output_text.annotation.added", "response.output_item.done"]:
        check(needed in kinds, f"the stream has {needed}")
    seq = [e.sequence_number for e in events]
    check(seq == list(range(len(seq))), "sequence numbers count up from 0")
    final = events[-1].response
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    check(final.output_text == deltas and citations(final), "the completed response matches the deltas and cites")
    cached = final.usage.input_tokens_details.cached_tokens
    check(cached >= final.usage.input_tokens // 2, f"the repeated RAG prompt reuses the prefix cache: {cached} of {final.usage.input_tokens} input tokens cached")

    follow = client.responses.create(model=CHAT, input="Repeat that amount once more.", previous_response_id=r.id, tools=[tool],
                                     temperature=0, max_output_tokens=48)
    check(follow.previous_response_id == r.id and follow.output_text.strip() != "", f"a follow-up answers: {follow.output_text!r}")

    by_name = client.responses.create(model=CHAT, input=question, temperature=0, max_output_tokens=32,
                                      tools=[{"type": "file_search", "vector_store_ids": ["rag"]}])
    check(citations(by_name) and citations(by_name)[0].filename == pdf_name, "a vector store can be named instead of its id")

    none = client.responses.create(model=CHAT, input="What is the population of the Jupiter colony in the year 2450?", tools=[tool])
    check("could not find" in none.output_text and not citations(none), f"an uncovered question says so: {none.output_text!r}")

    got = client.responses.retrieve(r.id)
    check(got.id == r.id and got.output_text == r.output_text, "responses.retrieve returns the stored response")
    client.responses.delete(r.id)
    try:
        client.responses.retrieve(r.id)
        check(False, "a deleted response is gone")
    except Exception as e:
        check(getattr(e, "status_code", None) == 404, f"a deleted response is 404 ({e})")
    print("all responses SDK checks passed")


if __name__ == "__main__":
    main()
