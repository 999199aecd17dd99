//! Tool calling, structured output through llama.cpp's converter and exact errors, checked with
//! the official `openai` Python package against the real binary and the default SmolLM2-135M
//! (whose ChatML template has no tools, so hearth's Hermes-style prompt and the call grammar do
//! the work). The script is `tests/python/tools_check.py`; it exits non-zero at the first failed
//! check: `chat.completions.parse` with a pydantic model (datetime, UUID, conint, nested and
//! optional models), `required`, named and `auto` tool choices, parallel calls, streamed
//! tool-call deltas reassembled (by the SDK and by hand), a tool result answered, 404
//! `NotFoundError`, a 400 naming an unimplemented field.

use hearth_tests::{run_python_check, Server};

#[test]
fn tools_structured_output_and_errors_work_with_the_openai_package() {
    let server = Server::start();
    run_python_check(&server, "tools_check.py", &[server.url("/v1")], "all tool checks passed");
}

/// Function tools on `/v1/responses` with the `openai` package (`tests/python/responses_tools_check.py`):
/// `required`, named and `none` choices, a `previous_response_id` follow-up carrying
/// `function_call_output` items, `responses.stream` with the argument deltas reassembled,
/// replayed `function_call` items, and the 400s for an unknown `call_id` and for `file_search`
/// beside function tools.
#[test]
fn function_tools_on_the_responses_api_work_with_the_openai_package() {
    let server = Server::start();
    run_python_check(&server, "responses_tools_check.py", &[server.url("/v1")], "all responses tool checks passed");
}

/// `langchain-openai` (pinned in tests/requirements.txt): `bind_tools` and a tool loop,
/// `with_structured_output`, `OpenAIEmbeddings` (with `check_embedding_ctx_length=False`).
#[test]
fn langchain_openai_binds_tools_structures_output_and_embeds() {
    let server = Server::start();
    run_python_check(&server, "langchain_check.py", &[server.url("/v1")], "all langchain checks passed");
}
