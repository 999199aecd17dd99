//! The in-process tier: the daemon's real `App` (`hearth::app::create_app`: the route table,
//! the middleware chain, the error mapping) driven through `actix_web::test`, with no subprocess,
//! no port and no model. Settings come from a temporary TOML file laid over the embedded default,
//! as `hearth --config` does; the library, where a test needs one, is a real store in a temporary
//! state directory.
//!
//! What needs a model (creating a vector store asks its embedding model for the dimension,
//! ingestion, search) stays in the binary-level suite (`tests/tests/`).

#![expect(clippy::unwrap_used, reason = "a test fails loudly on the first unexpected error")]

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::test::{self, TestRequest};
use hearth::app::create_app;
use hearth::config::{Settings, Sources};
use hearth::library::Library;
use hearth::state::AppState;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key-0123456789";
const READ: &str = "read-key-0123456789";
const HOST: (&str, &str) = ("Host", "127.0.0.1:8080");

/// Settings with an admin and a read key, state in `dir`.
fn settings(dir: &std::path::Path) -> Settings {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\nstate_dir = \"{}\"\napi_keys = [\"{ADMIN}\", \"read:{READ}\"]\n",
        dir.join("state").display()
    );
    let path = dir.join("hearth.toml");
    std::fs::write(&path, toml).unwrap();
    let sources = Sources { system: dir.join("no-system-file.toml"), ..Sources::standard(Some(path)) };
    Settings::load(&sources).unwrap()
}

fn bearer(key: &str) -> (header::HeaderName, String) {
    (header::AUTHORIZATION, format!("Bearer {key}"))
}

async fn json_body<B: actix_web::body::MessageBody>(response: actix_web::dev::ServiceResponse<B>) -> Value {
    let bytes = test::read_body(response).await;
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

#[actix_web::test]
async fn the_route_table_decides_who_may_call_what() {
    let dir = tempfile::tempdir().unwrap();
    let app = test::init_service(create_app(AppState::new(settings(dir.path())))).await;

    // No key: 401 with the Bearer challenge, before any handler runs.
    let response = test::call_service(&app, TestRequest::get().uri("/v1/vector_stores").insert_header(HOST).to_request()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    assert_eq!(json_body(response).await["error"]["code"], "invalid_api_key");

    // A read key may list but not create: POST /v1/vector_stores needs `ingest`.
    let create = TestRequest::post().uri("/v1/vector_stores").insert_header(HOST).insert_header(bearer(READ)).set_json(json!({"name": "x"}));
    let response = test::call_service(&app, create.to_request()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = json_body(response).await;
    assert_eq!(body["error"]["type"], "permission_error", "{body}");

    // The right scope but a body the route does not take: 415 before the body is read.
    let plain = TestRequest::post()
        .uri("/v1/vector_stores")
        .insert_header(HOST)
        .insert_header(bearer(ADMIN))
        .insert_header((header::CONTENT_TYPE, "text/plain"))
        .set_payload("{}");
    let response = test::call_service(&app, plain.to_request()).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json_body(response).await["error"]["code"], "unsupported_media_type");

    // No such route: OpenAI's JSON 404.
    let response = test::call_service(&app, TestRequest::get().uri("/v1/nothing-here").insert_header(HOST).insert_header(bearer(ADMIN)).to_request()).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(response).await["error"]["code"], "not_found");
}

#[actix_web::test]
async fn before_the_store_opens_the_library_routes_answer_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let app = test::init_service(create_app(AppState::new(settings(dir.path())))).await;
    let response = test::call_service(&app, TestRequest::get().uri("/v1/vector_stores").insert_header(HOST).insert_header(bearer(READ)).to_request()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
    let body = json_body(response).await;
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("still opening"), "{body}");
}

#[actix_web::test]
async fn a_vector_store_round_trip_through_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let state = AppState::new(settings.clone());
    let library = Arc::new(Library::open(&settings, &[]).unwrap());
    // Created in the store directly: through the API a new vector store asks its embedding model
    // for the width of its vectors, and this tier has no model.
    let created = library
        .store()
        .create_collection(store::NewCollection {
            name: "notes".into(),
            embedding_model: "none".into(),
            dimension: 4,
            metadata: store::Attributes::new(),
            index: library.vector_index(),
        })
        .unwrap();
    state.set_library(library);
    let app = test::init_service(create_app(state)).await;
    let get = |id: &str| TestRequest::get().uri(&format!("/v1/vector_stores/{id}")).insert_header(HOST).insert_header(bearer(READ)).to_request();

    let response = test::call_service(&app, get(&created.id)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    assert_eq!((body["object"].as_str(), body["name"].as_str(), body["file_counts"]["total"].as_u64()), (Some("vector_store"), Some("notes"), Some(0)), "{body}");

    let rename = TestRequest::post()
        .uri(&format!("/v1/vector_stores/{}", created.id))
        .insert_header(HOST)
        .insert_header(bearer(ADMIN))
        .set_json(json!({"name": "renamed", "metadata": {"topic": "tests"}}));
    let body = json_body(test::call_service(&app, rename.to_request()).await).await;
    assert_eq!((body["name"].as_str(), body["metadata"]["topic"].as_str()), (Some("renamed"), Some("tests")), "{body}");

    let list = TestRequest::get().uri("/v1/vector_stores?limit=5").insert_header(HOST).insert_header(bearer(READ)).to_request();
    let body = json_body(test::call_service(&app, list).await).await;
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().map(|d| d.iter().filter_map(|s| s["id"].as_str()).collect::<Vec<_>>()), Some(vec![created.id.as_str()]), "{body}");

    // A file that is not in it: the store's typed error, mapped once, to OpenAI's 404.
    let file = TestRequest::get().uri(&format!("/v1/vector_stores/{}/files/file-missing", created.id)).insert_header(HOST).insert_header(bearer(READ)).to_request();
    let response = test::call_service(&app, file).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(response).await["error"]["code"], "not_found");

    let delete = TestRequest::delete().uri(&format!("/v1/vector_stores/{}", created.id)).insert_header(HOST).insert_header(bearer(ADMIN)).to_request();
    let body = json_body(test::call_service(&app, delete).await).await;
    assert_eq!((body["id"].as_str(), body["deleted"].as_bool()), (Some(created.id.as_str()), Some(true)), "{body}");

    let response = test::call_service(&app, get(&created.id)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body = json_body(response).await;
    assert!(body["error"]["message"].as_str().unwrap().contains(&created.id), "{body}");

    // A bad query string is the client's mistake, named.
    let bad = TestRequest::get().uri("/v1/vector_stores?limit=0").insert_header(HOST).insert_header(bearer(READ)).to_request();
    let response = test::call_service(&app, bad).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(response).await["error"]["param"], "limit");
}
