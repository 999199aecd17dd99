//! The client side of hearth: commands that talk to a running server over its HTTP API, as any
//! OpenAI-compatible client would. The `hearth` binary dispatches its client subcommands here;
//! nothing in this crate knows the daemon's internals, so it runs against hearth, vLLM or
//! llama.cpp's server alike.
//!
//! - [`target`]: the shared `--target` / `--api-key` options and the base URL and bearer token
//!   every command's requests carry. A new client command flattens [`target::TargetArgs`] into
//!   its arguments and builds its requests through [`target::Target`].
//! - [`bench`]: `hearth bench`, load tests against service-level objectives.
//! - [`eval`]: `hearth eval`, retrieval and answer scoring over a vector store.
//! - [`status`]: `hearth status`, models, devices, vector stores and ingestion progress.
//! - [`ask`]: `hearth ask`, a question answered with `file_search`, streamed, with its citations.
//! - [`runtime`]: `block_on`, how each command runs its async work and reports a failure.
//! - [`api`]: the typed views of the server's JSON and the list pagination those two read.
//! - [`sse_parser`]: server-sent events, bytes in and event data out (also used by the daemon's
//!   remote provider to read an upstream's streams).

pub mod api;
pub mod ask;
pub mod bench;
pub mod eval;
pub mod runtime;
pub mod sse_parser;
pub mod status;
pub mod target;
