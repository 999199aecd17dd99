//! Wire helpers shared by the HTTP edge (`api/`) and the services that read request bodies
//! themselves (the Responses API, retrieval's `file_search` tool): typed fields out of a parsed
//! JSON body with errors that name the field, and the OpenAPI schema fragments of fields whose
//! Rust type does not say enough. Below both, so neither imports the other for these.

use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};

use crate::fault::ServiceError;

/// Typed fields out of a parsed body; an error names the field (`temperature`, `messages[2].role`).
/// Each request type reads only its own fields, so one body can feed several (chat messages plus
/// the shared generation parameters) without serde's `flatten`, which loses field paths.
pub fn fields<T: DeserializeOwned>(body: &serde_json::Value) -> Result<T, ServiceError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ServiceError::Invalid { message: format!("invalid request: {inner}"), field: None, code: "invalid_value" }
        } else {
            ServiceError::invalid(&path, format!("invalid value for `{path}`: {inner}"))
        }
    })
}

/// `search_mode`: a string enum or null (Llama Stack's extension).
pub fn search_mode() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some([json!("vector"), json!("keyword"), json!("hybrid"), serde_json::Value::Null]))
        .description(Some("`hybrid` (the default: keyword and vector results fused by reciprocal rank), `vector` or `keyword` (Llama Stack's extension)"))
        .build()
        .into()
}
