//! The work behind the API: validation, tokenizing, submission to an engine, and collecting the
//! result. HTTP handlers stay a few lines each and call into here.
//!
//! Services fail with [`ServiceError`] (typed, no HTTP in it); `error.rs` maps it to a status and
//! OpenAI's error body. Vector stores, files and search work on the [`crate::library::Library`];
//! attaching files goes through the [`crate::ingest::Ingestion`] service.

pub mod embed;
pub mod file_batches;
pub mod files;
pub mod generate;
pub mod listing;
pub mod pages;
pub mod response_items;
pub mod response_object;
pub mod response_store;
pub mod responses;
pub mod structured;
pub mod tool_parser;
pub mod tools;
pub mod vector_stores;

pub use crate::fault::ServiceError;

pub use crate::ids::{new_id, unix_now};

pub use crate::blocking::blocking;
