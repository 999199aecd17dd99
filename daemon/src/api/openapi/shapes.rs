//! Schemas written out for the OpenAPI document only (nothing constructs these types): the error
//! body, the model objects (built by `api::types::models`, whose `meta.devices` are the platform
//! layer's JSON), the upload form and a stream event; the other answers are the wire types of
//! `api::types`, which are their own schemas. Each lists the fields its answer always sends
//! (required) and those it may send; objects nested deeper than the documented level are
//! `object`, and every schema allows further properties, so a field added to a body does not
//! make the document lie, while a field dropped from one fails schemathesis's
//! `response_schema_conformance` check.

#![expect(dead_code, reason = "documentation types: read by utoipa's derive, never built")]

use utoipa::ToSchema;

/// OpenAI's error body, `{"error": {...}}`, of every 4xx and 5xx.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// What is wrong, for a person.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `rate_limit_error`,
    /// `service_unavailable`, `server_error`, ...
    #[schema(rename = "type")]
    pub kind: String,
    /// The request field at fault, where one is.
    pub param: Option<String>,
    /// A stable code: `invalid_value`, `invalid_json`, `model_not_found`, `not_found`, ...
    pub code: Option<String>,
}

/// A served model.
#[derive(ToSchema)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
    pub max_model_len: Option<u64>,
    /// `loaded`, `loading`, `unloaded`, `unloading` or `failed` (a local model), `remote`.
    pub state: String,
    /// Why the last load failed (`state` `failed`).
    pub state_reason: Option<String>,
    /// Requests holding the model now (a local model).
    pub in_flight: Option<u64>,
    /// `startup` (kept loaded) or `on_demand` (a local model).
    pub load: Option<String>,
    /// How long the model's last load took, in milliseconds.
    pub last_load_ms: Option<u64>,
    /// How long `POST .../load` waited for the model.
    pub waited_ms: Option<u64>,
    /// How long `POST .../unload` took (`null`: it was not loaded).
    pub unload_ms: Option<u64>,
    /// hearth's details: kind, provider, sizes, devices.
    #[schema(value_type = Object)]
    pub meta: (),
}

/// `GET /v1/models`.
#[derive(ToSchema)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}

/// The body of `POST /v1/files`.
#[derive(ToSchema)]
pub struct FileUpload {
    /// The file's content.
    #[schema(value_type = String, format = Binary)]
    pub file: (),
    /// What the file is for.
    #[schema(value_type = String, pattern = "^(assistants|batch|fine-tune|vision|user_data|evals)$")]
    pub purpose: (),
}

/// One server-sent event of a streamed answer: `data` is a JSON chunk (chat, completions: then
/// `[DONE]`) or a Responses event, whose name is `event`.
#[derive(ToSchema)]
pub struct StreamEvent {
    pub data: String,
    pub event: Option<String>,
    pub id: Option<String>,
}
