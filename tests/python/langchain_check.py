"""langchain-openai against hearth: bind_tools with a tool loop, with_structured_output, and
OpenAIEmbeddings. Usage: langchain_check.py BASE_URL. Exits non-zero at the first failed check."""
import math
import sys

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel

from checks import check

CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"Sunny and 21 degrees celsius in {city}."


class City(BaseModel):
    name: str
    country: str
    population: int


def main():
    base = sys.argv[1]
    llm = ChatOpenAI(model=CHAT, base_url=base, api_key="unused", temperature=0, max_tokens=120, max_retries=0)

    # bind_tools + a tool loop: the forced call runs, its result goes back, the model answers.
    forced = llm.bind_tools([get_weather], tool_choice="required")
    messages = [HumanMessage("What is the weather in Paris?")]
    ai = forced.invoke(messages)
    check(len(ai.tool_calls) >= 1 and ai.tool_calls[0]["name"] == "get_weather" and isinstance(ai.tool_calls[0]["args"].get("city"), str),
          f"bind_tools call: {ai.tool_calls}")
    messages.append(ai)
    for call in ai.tool_calls:
        messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    answer = llm.bind_tools([get_weather], tool_choice="none").invoke(messages)
    check(not answer.tool_calls and isinstance(answer.content, str) and answer.content, f"answer after the tool: {answer.content!r}")

    # with_structured_output (json_schema by default): a City instance, valid by construction.
    city = llm.with_structured_output(City).invoke("Describe Paris.")
    check(isinstance(city, City) and isinstance(city.population, int), f"with_structured_output -> {city!r}")

    # Embeddings through hearth's route; tiktoken's length check off (it downloads an encoding).
    emb = OpenAIEmbeddings(model=EMBED, base_url=base, api_key="unused", check_embedding_ctx_length=False)
    a, b, c = emb.embed_documents(["The cat sat on the mat.", "A cat was sitting on a mat.", "Quarterly revenue rose 4%."])
    cos = lambda x, y: sum(p * q for p, q in zip(x, y)) / (math.sqrt(sum(p * p for p in x)) * math.sqrt(sum(q * q for q in y)))
    check(len(a) == 384 and cos(a, b) > cos(a, c), f"embeddings: similar {cos(a, b):.3f} > unrelated {cos(a, c):.3f}")
    q = emb.embed_query("cat on a mat")
    check(len(q) == 384, "embed_query")

    print("all langchain checks passed")


if __name__ == "__main__":
    main()
