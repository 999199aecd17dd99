//! The data model: collections (OpenAI "vector stores"), documents (files) and chunks, and the
//! binary record format of a chunk in sled.
//!
//! Invariants:
//! - a chunk's embedding has exactly the collection's dimension, is finite and is not the zero
//!   vector (cosine is undefined for it); [`validate_embedding`] enforces this before any write;
//! - chunk keys are unique across the whole store (sled's monotonic id generator), so a key names
//!   one chunk in sled, in the vector index and in the keyword index;
//! - every record carries a version byte; a record of an unknown version is
//!   [`StoreError::Corrupt`], never silently misread.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Free-form attributes: string, number or boolean values (OpenAI's `attributes`).
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// Element type the vector index stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// Full precision.
    F32,
    /// Half precision: half the memory, recall nearly unchanged.
    #[default]
    F16,
    /// 8-bit integers: a quarter of the memory; vectors must be normalised (cosine).
    I8,
}

/// HNSW parameters of a collection's vector index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VectorIndexConfig {
    /// Graph degree (HNSW `M`).
    pub connectivity: usize,
    /// Candidate list size while inserting (`efConstruction`).
    pub expansion_add: usize,
    /// Candidate list size while searching (`ef`).
    pub expansion_search: usize,
    /// Element type of the stored vectors.
    pub quantization: Quantization,
}

impl Default for VectorIndexConfig {
    fn default() -> Self {
        VectorIndexConfig { connectivity: 16, expansion_add: 128, expansion_search: 64, quantization: Quantization::F16 }
    }
}

/// What the caller gives to create a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCollection {
    /// Display name.
    pub name: String,
    /// Identifier of the embedding model whose vectors the collection holds.
    pub embedding_model: String,
    /// Dimension of those vectors.
    pub dimension: usize,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Attributes,
    /// Vector index parameters.
    #[serde(default)]
    pub index: VectorIndexConfig,
}

/// A collection as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    /// Id, `vs_` followed by 32 hex digits.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Identifier of the embedding model.
    pub embedding_model: String,
    /// Vector dimension.
    pub dimension: usize,
    /// Free-form metadata.
    pub metadata: Attributes,
    /// Vector index parameters.
    pub index: VectorIndexConfig,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

/// Processing state of a document (OpenAI's vector store file status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    /// Accepted, not yet chunked and embedded.
    InProgress,
    /// Chunks are stored and searchable.
    Completed,
    /// Ingestion failed; see `last_error`.
    Failed,
    /// Ingestion was cancelled.
    Cancelled,
}

/// What the caller gives to add a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDocument {
    /// Id chosen by the caller (the daemon's file id); a fresh `file-…` id when `None`.
    pub id: Option<String>,
    /// File name.
    pub name: String,
    /// Hex sha256 of the content: a rename keeps it, an edit changes it.
    pub content_hash: String,
    /// Size in bytes.
    pub size: u64,
    /// Attributes that filters match against.
    pub attributes: Attributes,
    /// Initial status.
    pub status: DocumentStatus,
}

/// A document as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Id.
    pub id: String,
    /// File name.
    pub name: String,
    /// Hex sha256 of the content.
    pub content_hash: String,
    /// Size in bytes.
    pub size: u64,
    /// Attributes that filters match against.
    pub attributes: Attributes,
    /// Processing state.
    pub status: DocumentStatus,
    /// Why ingestion failed, when it did.
    pub last_error: Option<String>,
    /// The caller's stable code for `last_error` (hearth's: `unsupported_file`, `invalid_file`);
    /// `None` when the failure was recorded without one, and in records older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_code: Option<String>,
    /// Number of chunks stored for it.
    pub chunk_count: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

/// A chunk to add: text, its embedding and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    /// The text.
    pub text: String,
    /// Its embedding, of the collection's dimension.
    pub embedding: Vec<f32>,
    /// 1-based page number, when the source has pages.
    pub page: Option<u32>,
    /// Character offset of the first character in the document's text.
    pub char_start: u64,
    /// Character offset one past the last character.
    pub char_end: u64,
    /// Chunk-level attributes; they override the document's of the same name in filters.
    pub attributes: Attributes,
}

/// A chunk as stored (the metadata part; the embedding is kept beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// The owning document.
    pub document_id: String,
    /// The text.
    pub text: String,
    /// 1-based page number.
    pub page: Option<u32>,
    /// Character offset of the first character.
    pub char_start: u64,
    /// Character offset one past the last character.
    pub char_end: u64,
    /// Chunk-level attributes.
    pub attributes: Attributes,
}

/// A stored chunk with its key and embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Store-wide unique key (also the key in both indexes).
    pub key: u64,
    /// Metadata and text.
    pub meta: ChunkMeta,
    /// The embedding.
    pub embedding: Vec<f32>,
}

/// Version byte of a chunk record.
const CHUNK_RECORD_VERSION: u8 = 1;

/// Encodes a chunk: `[version u8][meta length u32 LE][meta JSON][embedding f32 LE…]`.
pub(crate) fn encode_chunk(meta: &ChunkMeta, embedding: &[f32]) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(meta)?;
    let len = u32::try_from(json.len()).map_err(|_| StoreError::Invalid("chunk text too large".into()))?;
    let mut out = Vec::with_capacity(5 + json.len() + embedding.len() * 4);
    out.push(CHUNK_RECORD_VERSION);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&json);
    for x in embedding {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Ok(out)
}

/// Decodes a record written by [`encode_chunk`].
pub(crate) fn decode_chunk(key: u64, bytes: &[u8]) -> Result<Chunk> {
    let bad = |detail: String| StoreError::Corrupt { tree: "chunks".into(), detail: format!("chunk {key}: {detail}") };
    let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty record".into()))?;
    if version != CHUNK_RECORD_VERSION {
        return Err(bad(format!("unknown record version {version}")));
    }
    let len_bytes: [u8; 4] = rest.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("short header".into()))?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let json = rest.get(4..4 + len).ok_or_else(|| bad("short metadata".into()))?;
    let meta: ChunkMeta = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let floats = &rest[4 + len..];
    if floats.len() % 4 != 0 {
        return Err(bad("embedding length is not a multiple of 4".into()));
    }
    let embedding = floats.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(Chunk { key, meta, embedding })
}

/// Checks an embedding against the collection's dimension: finite and not all zeros.
pub(crate) fn validate_embedding(embedding: &[f32], dimension: usize) -> Result<()> {
    if embedding.len() != dimension {
        return Err(StoreError::Invalid(format!(
            "embedding has dimension {}, the vector store expects {dimension}",
            embedding.len()
        )));
    }
    if embedding.iter().any(|x| !x.is_finite()) {
        return Err(StoreError::Invalid("embedding contains NaN or infinity".into()));
    }
    if embedding.iter().all(|x| *x == 0.0) {
        return Err(StoreError::Invalid("embedding is the zero vector".into()));
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    fn meta() -> ChunkMeta {
        let mut attributes = Attributes::new();
        attributes.insert("lang".into(), "en".into());
        ChunkMeta { document_id: "file-1".into(), text: "héllo wörld".into(), page: Some(3), char_start: 10, char_end: 21, attributes }
    }

    #[test]
    fn chunk_record_round_trips() {
        let bytes = encode_chunk(&meta(), &[1.0, -2.5, 0.125]).unwrap();
        let chunk = decode_chunk(7, &bytes).unwrap();
        assert_eq!(chunk.key, 7);
        assert_eq!(chunk.meta, meta());
        assert_eq!(chunk.embedding, vec![1.0, -2.5, 0.125]);
    }

    #[test]
    fn unknown_record_version_is_corrupt_not_misread() {
        let mut bytes = encode_chunk(&meta(), &[1.0]).unwrap();
        bytes[0] = 9;
        assert!(matches!(decode_chunk(1, &bytes), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode_chunk(1, &bytes[..3]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode_chunk(1, &[]), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn embeddings_are_validated() {
        assert!(validate_embedding(&[0.1, 0.2], 2).is_ok());
        assert!(validate_embedding(&[0.1], 2).is_err());
        assert!(validate_embedding(&[0.0, 0.0], 2).is_err());
        assert!(validate_embedding(&[f32::NAN, 1.0], 2).is_err());
    }

    #[test]
    fn index_config_defaults_and_rejects_unknown_keys() {
        let c: VectorIndexConfig = serde_json::from_str(r#"{"quantization":"i8"}"#).unwrap();
        assert_eq!(c.quantization, Quantization::I8);
        assert_eq!(c.connectivity, 16);
        assert!(serde_json::from_str::<VectorIndexConfig>(r#"{"m":8}"#).is_err());
    }
}
