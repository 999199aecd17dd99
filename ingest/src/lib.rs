//! hearth-ingest: turning uploaded files into chunks ready to embed.
//!
//! - [`parse`]: format detection and parsing (PDF, DOCX, PPTX, spreadsheets, ODT, EPUB, e-mail,
//!   images, Markdown, HTML, text) into pages of text with heading structure. Pure functions of
//!   the bytes and of the native engines (PDFium, Tesseract) the worker loaded.
//! - [`sandbox`]: runs the parser in a child process with memory, CPU, wall-time and output limits,
//!   an empty environment, its input as an open descriptor and Landlock (it can open nothing),
//!   because PDF parsing runs third-party code on hostile input (panics, stack overflows,
//!   decompression bombs). The daemon re-executes its own binary as the worker.
//! - [`chunk`]: token-based chunking (OpenAI's `static` strategy) that never spans pages and
//!   prefers heading, paragraph and sentence boundaries.
//!
//! The crate knows nothing of the engine, the store or HTTP: the daemon feeds it bytes and a token
//! counter and stores what comes out.

pub mod chunk;
pub mod parse;
pub mod sandbox;

pub use chunk::{chunk_document, Chunk, ChunkingError, ChunkingOptions, TokenCounter};
pub use parse::{
    parse_bytes, parse_with, Attachment, Engines, Format, HighlightOutcome, Page, PageImage, ParseError, ParsedDocument, RenderError, RenderRequest,
    Section,
};
pub use sandbox::{worker_main, EngineOptions, Limits, ParseFailure, RenderFailure, Sandbox};
