//! `GET /openapi.json`: the OpenAPI 3.1 document of this API, built once from the route table.
//!
//! The route table ([`super::routes`]) stays the one source of truth for what exists: the paths,
//! methods, path parameters, body media types and whether a key is needed come from it. What a
//! route takes and answers comes from [`describe`], a table keyed by method and path pattern;
//! a route without an entry there makes [`document`] fail (a unit test builds it), so a new route
//! cannot ship undocumented. Request schemas are derived (`utoipa::ToSchema`) from the very types
//! the handlers deserialize, and response schemas from the types they serialize (`api::types`:
//! files, vector stores, search, embeddings, chat and completions answers, responses); those still built as `json!` (chat,
//! completions, models) are written out in [`shapes`]. Error statuses are those the
//! middleware and the handlers really return, each with OpenAI's error body.

mod shapes;

use std::sync::OnceLock;

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, ResponseError};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{IntoParams, ToSchema};

use super::keys::Scope;
use super::routes::{Access, BodyKind, Route, Routes};
use crate::error::ApiError;
use crate::service;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::get("/openapi.json", Scope::Read), serve);
}

async fn serve() -> HttpResponse {
    static DOCUMENT: OnceLock<Result<String, String>> = OnceLock::new();
    let built = DOCUMENT.get_or_init(|| {
        document().map_err(|e| e.to_string()).and_then(|doc| doc.to_json().map_err(|e| format!("cannot serialize the OpenAPI document: {e}")))
    });
    match built {
        Ok(text) => HttpResponse::Ok().content_type(ContentType::json()).body(text.clone()),
        Err(e) => ApiError::Internal(e.clone()).error_response(),
    }
}

/// A route that [`describe`] does not know.
#[derive(Debug, thiserror::Error)]
#[error("the route {0} has no entry in the OpenAPI table (api/openapi/mod.rs, `describe`)")]
pub struct Undocumented(String);

/// What a successful answer carries.
enum Reply {
    /// `application/json` with this schema.
    Json(RefOr<Schema>),
    /// A generation: JSON (this schema, or an error body when a held response fails after its
    /// status went out, see `api::held`), or `text/event-stream` with `"stream": true`.
    Generated(RefOr<Schema>),
    /// An Ollama generation: one object (`stream` false) or NDJSON lines of this schema.
    Ndjson(RefOr<Schema>),
    /// Another media type (the metrics exposition, a file's bytes).
    Raw(&'static [&'static str]),
}

/// One route's entry: summary, request body schema, reply, and the error statuses beyond those
/// the middleware adds ([`error_statuses`]).
struct Doc {
    summary: &'static str,
    body: Option<RefOr<Schema>>,
    reply: Reply,
    /// Takes the list query (`limit`, `order`, `after`, `before`, ...).
    list: bool,
    /// Takes this query instead (its parameters).
    query: Option<fn() -> Vec<utoipa::openapi::path::Parameter>>,
    errors: &'static [u16],
}

/// Schemas referenced so far, for `components.schemas`.
type Components = Vec<(String, RefOr<Schema>)>;

/// `T` as a component, with everything it references; a reference to it.
fn named<T: ToSchema>(c: &mut Components) -> RefOr<Schema> {
    let name = T::name().into_owned();
    T::schemas(c);
    c.push((name.clone(), T::schema()));
    RefOr::Ref(Ref::from_schema_name(name))
}

/// A page of a list endpoint (`api::types::List`) of `item`s.
fn list_of(item: RefOr<Schema>) -> RefOr<Schema> {
    let id = || ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]));
    ObjectBuilder::new()
        .property("object", ObjectBuilder::new().schema_type(Type::String).pattern(Some("^list$")))
        .property("first_id", id())
        .property("last_id", id())
        .property("has_more", ObjectBuilder::new().schema_type(Type::Boolean))
        .property("data", ArrayBuilder::new().items(item))
        .required("object")
        .required("first_id")
        .required("last_id")
        .required("has_more")
        .required("data")
        .description(Some("One page (OpenAI's cursor pagination): `limit`, `order`, `after`, `before`"))
        .into()
}

fn all_of(parts: Vec<RefOr<Schema>>) -> RefOr<Schema> {
    RefOr::T(Schema::AllOf(parts.into_iter().fold(AllOfBuilder::new(), AllOfBuilder::item).build()))
}

// The schema fragments services' request types point at live below both (`crate::wire`).
pub use crate::wire::search_mode;

/// Statuses that need a key, a body or a path parameter, whatever the handler does.
fn error_statuses(route: &Route, doc: &Doc) -> Vec<u16> {
    let mut statuses = vec![403];
    if route.access != Access::Open {
        statuses.push(401);
    }
    if route.body != BodyKind::None {
        statuses.extend([400, 408, 413, 415]);
    }
    if doc.list {
        statuses.push(400);
    }
    if route.path.contains('{') {
        statuses.push(404);
    }
    statuses.extend_from_slice(doc.errors);
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// Models or the store may still be loading.
const LOADING: &[u16] = &[503];
/// A generation or an embedding: an unknown model (404), the queue may be full (429), a remote model's upstream may fail (502, 504).
const INFERENCE: &[u16] = &[404, 429, 502, 503, 504];
/// Writes that store content: the free-space reserve (507).
const WRITE: &[u16] = &[503, 507];

fn describe(route: &Route, c: &mut Components) -> Option<Doc> {
    use super::ollama::types as ollama;
    use super::types::{completions, embeddings as wire_embeddings, files as wire_files, vector_stores as wire_vs, Deleted};
    use service::{embed, file_batches, responses, vector_stores as vs};
    let doc = |summary, body, reply, errors| Some(Doc { summary, body, reply, list: false, query: None, errors });
    let list = |summary, item: RefOr<Schema>| Some(Doc { summary, body: None, reply: Reply::Json(list_of(item)), list: true, query: None, errors: LOADING });
    match (route.method.as_str(), route.path) {
        ("GET", "/health") => doc("Liveness: 200 while the process answers", None, Reply::Json(named::<super::types::health::Status>(c)), &[]),
        ("GET", "/ready") => doc("Readiness: every model loaded and the store open", None, Reply::Json(named::<super::types::health::Status>(c)), LOADING),
        ("GET", "/metrics") => doc("Prometheus metrics (OpenMetrics when asked for)", None, Reply::Raw(&["text/plain", "application/openmetrics-text"]), &[]),
        ("GET", "/openapi.json") => doc("This document", None, Reply::Json(RefOr::T(ObjectBuilder::new().into())), &[]),
        ("GET", "/v1/models") => doc("The models served", None, Reply::Json(named::<shapes::ModelList>(c)), LOADING),
        ("GET", "/v1/models/library") => doc("The model library (admin)", None, Reply::Json(RefOr::T(ObjectBuilder::new().into())), &[]),
        ("POST", "/v1/models/library/import") => {
            doc("Import a GGUF, split GGUFs or an OCI ModelCar image into the library (admin)", Some(named::<super::models_library::ImportBody>(c)), Reply::Json(RefOr::T(ObjectBuilder::new().into())), &[409, 429])
        }
        ("POST", "/v1/models/library/pull") => {
            doc("Download a GGUF into the library (admin)", Some(named::<super::models_library::PullBody>(c)), Reply::Json(RefOr::T(ObjectBuilder::new().into())), &[409, 429])
        }
        ("DELETE", "/v1/models/library/{name}") => doc("Remove a model from the library (admin)", None, Reply::Json(named::<Deleted>(c)), &[409]),
        ("GET", "/v1/models/{id}") => doc("One model", None, Reply::Json(named::<shapes::Model>(c)), LOADING),
        ("POST", "/v1/models/{id}/load") => {
            doc("Load a local model now, unloading the least recently used idle one first under [engine] max_loaded_models (admin)", None, Reply::Json(named::<shapes::Model>(c)), &[400, 503])
        }
        ("POST", "/v1/models/{id}/unload") => {
            doc("Unload a local model; 409 while requests are in flight on it or it loads (admin)", None, Reply::Json(named::<shapes::Model>(c)), &[400, 409, 503])
        }
        ("POST", "/v1/chat/completions") => {
            let body = all_of(vec![named::<super::chat::ChatRequest>(c), named::<service::generate::GenerationParams>(c), named::<engine::SamplingParams>(c)]);
            doc("A chat completion, whole or streamed", Some(body), Reply::Generated(named::<completions::ChatCompletion>(c)), INFERENCE)
        }
        ("POST", "/v1/completions") => {
            let body = all_of(vec![named::<super::completions::CompletionRequest>(c), named::<service::generate::GenerationParams>(c), named::<engine::SamplingParams>(c)]);
            doc("A text completion, whole or streamed", Some(body), Reply::Generated(named::<completions::TextCompletion>(c)), INFERENCE)
        }
        ("POST", "/v1/embeddings") => doc("Embeddings", Some(named::<embed::EmbeddingsRequest>(c)), Reply::Json(named::<wire_embeddings::EmbeddingList>(c)), INFERENCE),
        ("POST", "/tokenize") => doc("A model's token ids for a text", Some(named::<super::tokenize::TokenizeRequest>(c)), Reply::Json(named::<super::types::tokens::Tokens>(c)), &[404, 503]),
        ("POST", "/detokenize") => doc("The text of token ids", Some(named::<super::tokenize::DetokenizeRequest>(c)), Reply::Json(named::<super::types::tokens::Detokenized>(c)), &[404, 503]),
        ("POST", "/api/chat") => {
            doc("Ollama: a chat answer, whole or as NDJSON", Some(named::<ollama::ChatRequest>(c)), Reply::Ndjson(named::<ollama::ChatChunk>(c)), INFERENCE)
        }
        ("POST", "/api/generate") => {
            doc("Ollama: a completion, whole or as NDJSON", Some(named::<ollama::GenerateRequest>(c)), Reply::Ndjson(named::<ollama::GenerateChunk>(c)), INFERENCE)
        }
        ("POST", "/api/embed") => doc("Ollama: embeddings", Some(named::<ollama::EmbedRequest>(c)), Reply::Json(named::<ollama::EmbedResponse>(c)), INFERENCE),
        ("POST", "/api/embeddings") => {
            doc("Ollama: one embedding (legacy)", Some(named::<ollama::EmbeddingsRequest>(c)), Reply::Json(named::<ollama::EmbeddingResponse>(c)), INFERENCE)
        }
        ("GET", "/api/tags") => doc("Ollama: the models served", None, Reply::Json(named::<ollama::Tags>(c)), LOADING),
        ("POST", "/api/show") => doc("Ollama: one model's details", Some(named::<ollama::ShowRequest>(c)), Reply::Json(named::<ollama::ShowResponse>(c)), &[404, 503]),
        ("GET", "/api/ps") => doc("Ollama: the models loaded (all of them)", None, Reply::Json(named::<ollama::Processes>(c)), LOADING),
        ("GET", "/api/version") => doc("Ollama: the server's version (hearth's)", None, Reply::Json(named::<ollama::Version>(c)), &[]),
        ("POST", "/v1/files") => doc("Upload a file", Some(named::<shapes::FileUpload>(c)), Reply::Json(named::<wire_files::FileObject>(c)), WRITE),
        ("GET", "/v1/files") => list("The files", named::<wire_files::FileObject>(c)),
        ("GET", "/v1/files/{id}") => doc("One file", None, Reply::Json(named::<wire_files::FileObject>(c)), LOADING),
        ("DELETE", "/v1/files/{id}") => doc("Delete a file", None, Reply::Json(named::<Deleted>(c)), LOADING),
        ("GET", "/v1/files/{id}/content") => doc("A file's bytes", None, Reply::Raw(&["application/octet-stream"]), LOADING),
        ("GET", "/v1/files/{id}/pages/{page}/image") => Some(Doc {
            summary: "A PDF page as PNG, a passage highlighted (hearth; 400 for a file that is not a PDF, 404 for a page out of range)",
            body: None,
            reply: Reply::Raw(&["image/png"]),
            list: false,
            query: Some(|| service::pages::PageImageQuery::into_params(|| Some(ParameterIn::Query))),
            errors: &[400, 429, 503],
        }),
        ("POST", "/v1/vector_stores") => {
            doc("Create a vector store", Some(named::<vs::CreateVectorStore>(c)), Reply::Json(named::<wire_vs::VectorStore>(c)), &[409, 503, 507])
        }
        ("GET", "/v1/vector_stores") => list("The vector stores", named::<wire_vs::VectorStore>(c)),
        ("GET", "/v1/vector_stores/{id}") => doc("One vector store", None, Reply::Json(named::<wire_vs::VectorStore>(c)), LOADING),
        ("POST", "/v1/vector_stores/{id}") => doc("Update a vector store", Some(named::<vs::UpdateVectorStore>(c)), Reply::Json(named::<wire_vs::VectorStore>(c)), WRITE),
        ("DELETE", "/v1/vector_stores/{id}") => doc("Delete a vector store", None, Reply::Json(named::<Deleted>(c)), LOADING),
        ("POST", "/v1/vector_stores/{id}/search") => {
            doc("Search a vector store", Some(named::<vs::Search>(c)), Reply::Json(named::<wire_vs::SearchResultsPage>(c)), INFERENCE)
        }
        ("POST", "/v1/vector_stores/{id}/files") => {
            doc("Attach a file to a vector store", Some(named::<vs::AttachFile>(c)), Reply::Json(named::<wire_vs::VectorStoreFile>(c)), WRITE)
        }
        ("GET", "/v1/vector_stores/{id}/files") => list("A vector store's files", named::<wire_vs::VectorStoreFile>(c)),
        ("GET", "/v1/vector_stores/{id}/files/{file_id}") => doc("One file of a vector store", None, Reply::Json(named::<wire_vs::VectorStoreFile>(c)), LOADING),
        ("POST", "/v1/vector_stores/{id}/files/{file_id}") => {
            doc("Update a file's attributes", Some(named::<vs::UpdateFile>(c)), Reply::Json(named::<wire_vs::VectorStoreFile>(c)), WRITE)
        }
        ("DELETE", "/v1/vector_stores/{id}/files/{file_id}") => doc("Detach a file", None, Reply::Json(named::<Deleted>(c)), LOADING),
        ("GET", "/v1/vector_stores/{id}/files/{file_id}/content") => {
            doc("A file's parsed text", None, Reply::Json(named::<wire_vs::FileContentPage>(c)), LOADING)
        }
        ("POST", "/v1/vector_stores/{id}/file_batches") => {
            doc("Attach several files", Some(named::<file_batches::CreateBatch>(c)), Reply::Json(named::<wire_vs::FileBatch>(c)), WRITE)
        }
        ("GET", "/v1/vector_stores/{id}/file_batches/{batch_id}") => doc("One file batch", None, Reply::Json(named::<wire_vs::FileBatch>(c)), LOADING),
        ("POST", "/v1/vector_stores/{id}/file_batches/{batch_id}/cancel") => {
            doc("Cancel a file batch", None, Reply::Json(named::<wire_vs::FileBatch>(c)), LOADING)
        }
        ("GET", "/v1/vector_stores/{id}/file_batches/{batch_id}/files") => list("A file batch's files", named::<wire_vs::VectorStoreFile>(c)),
        ("POST", "/v1/responses") => {
            doc("A response (Responses API), whole or streamed", Some(named::<responses::CreateResponse>(c)), Reply::Generated(named::<super::types::responses::ResponseObject>(c)), &[429, 502, 503, 504, 507])
        }
        ("GET", "/v1/responses/{id}") => doc("A stored response", None, Reply::Json(named::<super::types::responses::ResponseObject>(c)), LOADING),
        ("DELETE", "/v1/responses/{id}") => doc("Delete a stored response", None, Reply::Json(named::<Deleted>(c)), LOADING),
        ("GET", "/") => doc("The web console (HTML; its data comes from this API with the user's key)", None, Reply::Raw(&["text/html"]), &[]),
        ("GET", "/console/{version}/{name}") => doc("A web console asset (script, stylesheet, icon) of this build", None, Reply::Raw(&["text/javascript", "text/css", "image/svg+xml"]), &[]),
        ("GET", "/v1/console/session") => doc("The presented key's scope and the watched folders, for the web console", None, Reply::Json(named::<super::console::Session>(c)), &[]),
        _ => None,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed or a field is invalid (`param` names it)",
        401 => "Missing or wrong API key (`WWW-Authenticate: Bearer`)",
        403 => "Host or Origin not allowed, or the key's scope does not grant this route",
        404 => "No such object",
        408 => "The body did not arrive within [server] body_read_timeout_seconds",
        409 => "A configured limit is reached ([store] max_vector_stores), or a model is busy (`model_busy`)",
        413 => "The body is larger than [server] max_body_bytes",
        415 => "The body's Content-Type is not the one this route takes",
        429 => "The queue is full; retry after `Retry-After` seconds",
        502 => "A remote model's upstream failed",
        503 => "Models are loading, a model did not load in time (`model_loading`) or failed to (`model_load_failed`), or an engine stopped; retry after `Retry-After` seconds",
        504 => "A remote model's upstream did not answer in time",
        507 => "Not enough free disk space ([store] min_free_bytes)",
        _ => "Error",
    }
}

fn json_content(schema: RefOr<Schema>) -> Content {
    Content::new(Some(schema))
}

/// The document for `routes`.
fn build(routes: &[Route]) -> Result<OpenApi, Undocumented> {
    let mut c = Components::new();
    let error = named::<shapes::ErrorBody>(&mut c);
    // Ollama's routes answer `{"error": "..."}`; the middleware in front of them, OpenAI's shape.
    let either_error = RefOr::T(Schema::OneOf(OneOfBuilder::new().item(error.clone()).item(named::<super::ollama::types::ErrorBody>(&mut c)).build()));
    let stream_event = named::<shapes::StreamEvent>(&mut c);
    let mut paths = PathsBuilder::new();
    for route in routes {
        let doc = describe(route, &mut c).ok_or_else(|| Undocumented(route.to_string()))?;
        let statuses = error_statuses(route, &doc);
        let id: String = format!("{} {}", route.method, route.path)
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch.to_ascii_lowercase() } else { '_' })
            .collect::<String>()
            .split('_')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        let mut op = OperationBuilder::new().operation_id(Some(id)).summary(Some(doc.summary));
        op = op.description(Some(match route.access {
            Access::Open => "Open: no key needed.".to_owned(),
            Access::Needs(scope) => format!("Needs a key of scope `{}` (or one that grants it) when keys are configured.", scope.name()),
        }));
        if route.access == Access::Open {
            op = op.security(SecurityRequirement::default());
        }
        for segment in route.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(segment)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        if doc.list {
            op = op.parameters(Some(service::listing::ListQuery::into_params(|| Some(ParameterIn::Query))));
        }
        if let Some(query) = doc.query {
            op = op.parameters(Some(query()));
        }
        if let Some(schema) = doc.body {
            let media = if route.body == BodyKind::Multipart { "multipart/form-data" } else { "application/json" };
            op = op.request_body(Some(RequestBodyBuilder::new().required(Some(Required::True)).content(media, json_content(schema)).build()));
        }
        let ok = match doc.reply {
            Reply::Json(schema) => ResponseBuilder::new().description("OK").content("application/json", json_content(schema)),
            Reply::Generated(schema) => {
                let either = OneOfBuilder::new().item(schema).item(error.clone()).build();
                ResponseBuilder::new()
                    .description("The whole answer (`stream` false; an error body when it failed after a held 200 went out), or server-sent events (`stream` true)")
                    .content("application/json", json_content(RefOr::T(Schema::OneOf(either))))
                    .content("text/event-stream", json_content(stream_event.clone()))
            }
            Reply::Ndjson(schema) => ResponseBuilder::new()
                .description("The whole answer (`stream` false), or one object a line (`stream` true, the default)")
                .content("application/json", json_content(schema.clone()))
                .content("application/x-ndjson", json_content(schema)),
            Reply::Raw(types) => types.iter().fold(ResponseBuilder::new().description("OK"), |r, t| {
                r.content(*t, json_content(RefOr::T(ObjectBuilder::new().schema_type(Type::String).into())))
            }),
        };
        op = op.response("200", ok.build());
        let error = if route.path.starts_with("/api/") { &either_error } else { &error };
        for status in statuses {
            op = op.response(status.to_string(), ResponseBuilder::new().description(reason(status)).content("application/json", json_content(error.clone())).build());
        }
        let method = match route.method.as_str() {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "DELETE" => HttpMethod::Delete,
            _ => return Err(Undocumented(route.to_string())),
        };
        paths = paths.path(route.path, PathItem::new(method, op.build()));
    }
    let components = c.into_iter().fold(ComponentsBuilder::new(), |b, (name, schema)| b.schema(name, schema));
    let components = components.security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer))).build();
    let info = InfoBuilder::new()
        .title("hearth")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some("OpenAI-compatible chat, completions, embeddings, files, vector stores and responses, served by hearth. Errors have OpenAI's shape."))
        .build();
    Ok(OpenApiBuilder::new()
        .info(info)
        .paths(paths.build())
        .components(Some(components))
        .security(Some([SecurityRequirement::new::<&str, [&str; 0], &str>("bearer", [])]))
        .build())
}

/// The document for every route of [`super::routes`].
pub fn document() -> Result<OpenApi, Undocumented> {
    build(&super::routes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_the_document_is_3_1() {
        let doc = document().unwrap_or_else(|e| panic!("{e}"));
        let value = serde_json::to_value(&doc).unwrap_or_else(|e| panic!("{e}"));
        assert!(value["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", value["openapi"]);
        for route in super::super::routes() {
            let op = &value["paths"][route.path][route.method.as_str().to_lowercase()];
            assert!(op.is_object(), "{route} missing");
            assert!(op["responses"]["200"].is_object(), "{route}: no 200");
            if route.access != Access::Open {
                assert!(op["responses"]["401"].is_object(), "{route}: no 401");
            }
        }
        // Every `$ref` points at a component.
        let text = value.to_string();
        for name in text.split("\"#/components/schemas/").skip(1).filter_map(|s| s.split('"').next()) {
            assert!(value["components"]["schemas"][name].is_object(), "dangling reference to {name}");
        }
    }

    #[test]
    fn a_route_without_an_entry_fails_the_document() {
        let routes = vec![Route::get("/v1/nowhere", Scope::Read)];
        let err = build(&routes).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("GET /v1/nowhere"), "{err}");
    }

    #[test]
    fn streamed_routes_document_both_media_types() {
        let value = serde_json::to_value(document().unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
        for path in ["/v1/chat/completions", "/v1/completions", "/v1/responses"] {
            let content = &value["paths"][path]["post"]["responses"]["200"]["content"];
            assert!(content["application/json"].is_object(), "{path}: {content}");
            // schemathesis checks each event against this schema: an event, not a string.
            assert_eq!(content["text/event-stream"]["schema"]["$ref"], "#/components/schemas/StreamEvent", "{path}: {content}");
        }
        // A body that stops arriving is answered 408 by the body-read deadline.
        assert!(value["paths"]["/v1/embeddings"]["post"]["responses"]["408"].is_object());
        let upload = &value["paths"]["/v1/files"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"];
        assert!(upload.is_object(), "{upload}");
    }
}
