//! hearth, the daemon: configuration, the OpenAI-compatible HTTP API, and the service layer
//! between the API and the engine. `main.rs` only parses arguments and calls in here.

pub mod api;
pub mod app;
pub mod blocking;
pub mod compute;
pub mod config;
pub mod debug_hang;
pub mod durable;
pub mod error;
pub mod fault;
pub mod files;
pub mod ids;
pub mod ingest;
pub mod library;
pub mod metrics;
pub mod models;
pub mod models_library;
pub mod models_registry;
pub mod provider;
pub mod rag;
pub mod server;
pub mod service;
pub mod service_manager;
pub mod state;
pub mod state_format;
pub mod telemetry;
pub mod wire;

/// The server-sent-events parser, shared with the client crate (`hearth bench` reads streams too).
pub use hearth_client::sse_parser;
