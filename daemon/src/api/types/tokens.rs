//! `/tokenize` and `/detokenize` answers (llama.cpp's server shapes, with hearth's `count` and
//! `max_model_len`).

use serde::Serialize;
use utoipa::ToSchema;

/// `POST /tokenize`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    pub count: usize,
    pub tokens: Vec<i32>,
    /// The model's longest prompt plus output.
    pub max_model_len: u32,
}

/// `POST /detokenize`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Detokenized {
    pub content: String,
}
