//! `POST /v1/embeddings`' answer, with the vectors written as numbers or as base64 (little-endian
//! f32 bytes, what the openai SDK asks for by default and decodes with numpy).

use base64::Engine as _;
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::embed::{Embeddings, Encoding};

/// `{"object": "list", "data": [embedding...], "model", "usage"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

/// One input's embedding.
#[derive(Debug, Serialize, ToSchema)]
pub struct Embedding {
    #[schema(value_type = String, pattern = "^embedding$")]
    pub object: &'static str,
    /// The input's position in the request.
    pub index: usize,
    pub embedding: Vector,
}

/// The vector: numbers (`encoding_format` `float`, the default) or base64 of little-endian f32s.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = EmbeddingVector)]
pub enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

/// Tokens read; embeddings generate none, so the total is the prompt's.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

impl From<Embeddings> for EmbeddingList {
    fn from(e: Embeddings) -> Self {
        let data = e
            .vectors
            .into_iter()
            .enumerate()
            .map(|(index, v)| {
                let embedding = match e.encoding {
                    Encoding::Float => Vector::Float(v),
                    Encoding::Base64 => Vector::Base64(base64_of(&v)),
                };
                Embedding { object: "embedding", index, embedding }
            })
            .collect();
        EmbeddingList { object: "list", data, model: e.model, usage: EmbeddingUsage { prompt_tokens: e.prompt_tokens, total_tokens: e.prompt_tokens } }
    }
}

fn base64_of(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body as `HttpResponse::json` writes it.
    fn list(encoding: Encoding) -> String {
        let e = Embeddings { model: "m".into(), vectors: vec![vec![0.5, -1.0], vec![0.1]], prompt_tokens: 3, encoding };
        serde_json::to_string(&EmbeddingList::from(e)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn floats_and_base64_have_openais_shape() {
        // Each float as the shortest text that reads back as the same f32 (0.1, not the
        // 0.10000000149011612 of its widening to f64).
        assert_eq!(
            list(Encoding::Float),
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-1.0]},{"object":"embedding","index":1,"embedding":[0.1]}],"model":"m","usage":{"prompt_tokens":3,"total_tokens":3}}"#
        );
        let b64: serde_json::Value = serde_json::from_str(&list(Encoding::Base64)).unwrap_or_default();
        // 0.5 = 0x3f000000, -1.0 = 0xbf800000, little-endian.
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["embedding"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(bytes, [0, 0, 0, 0x3f, 0, 0, 0x80, 0xbf]);
    }
}
