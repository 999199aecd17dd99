//! The Vector Stores API (OpenAI's shape, Llama Stack's `search_mode` and `embedding_model`):
//! stores, their files, file batches and search. Handlers parse and delegate to
//! [`crate::service::vector_stores`] and [`crate::service::file_batches`], and answer with the
//! wire types of [`super::types::vector_stores`].

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use super::types::vector_stores::{FileBatch, FileContentPage, SearchResultsPage, VectorStore, VectorStoreFile};
use super::types::{Deleted, List};
use super::{parse_json, Body};
use crate::error::ApiError;
use crate::service::listing::ListQuery;
use crate::service::{file_batches, vector_stores as vs};
use crate::state::AppState;

/// Searching is reading; creating, attaching, updating and cancelling is ingesting; deleting is admin.
pub fn configure(r: &mut Routes<'_>) {
    use BodyKind::{Json, None as Empty};
    use Scope::{Admin, Ingest, Read};
    r.add(Route::post("/v1/vector_stores", Ingest, Json), create)
        .add(Route::get("/v1/vector_stores", Read), list)
        .add(Route::get("/v1/vector_stores/{id}", Read), get)
        .add(Route::post("/v1/vector_stores/{id}", Ingest, Json), update)
        .add(Route::delete("/v1/vector_stores/{id}", Admin), delete)
        .add(Route::post("/v1/vector_stores/{id}/search", Read, Json), search)
        .add(Route::post("/v1/vector_stores/{id}/files", Ingest, Json), attach)
        .add(Route::get("/v1/vector_stores/{id}/files", Read), list_files)
        .add(Route::get("/v1/vector_stores/{id}/files/{file_id}", Read), get_file)
        .add(Route::post("/v1/vector_stores/{id}/files/{file_id}", Ingest, Json), update_file)
        .add(Route::delete("/v1/vector_stores/{id}/files/{file_id}", Admin), delete_file)
        .add(Route::get("/v1/vector_stores/{id}/files/{file_id}/content", Read), file_content)
        .add(Route::post("/v1/vector_stores/{id}/file_batches", Ingest, Json), create_batch)
        .add(Route::get("/v1/vector_stores/{id}/file_batches/{batch_id}", Read), get_batch)
        .add(Route::post("/v1/vector_stores/{id}/file_batches/{batch_id}/cancel", Ingest, Empty), cancel_batch)
        .add(Route::get("/v1/vector_stores/{id}/file_batches/{batch_id}/files", Read), batch_files);
}

type Id = web::Path<String>;
type Ids = web::Path<(String, String)>;
type Reply = Result<HttpResponse, ApiError>;

fn ok(body: impl Serialize) -> Reply {
    Ok(HttpResponse::Ok().json(body))
}

async fn create(state: web::Data<AppState>, body: Body) -> Reply {
    ok(VectorStore::from(vs::create(state.ingestion()?.clone(), parse_json(body, &state)?).await?))
}

async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> Reply {
    ok(List::<VectorStore>::of(vs::list(state.library()?.clone(), q.into_inner()).await?))
}

async fn get(state: web::Data<AppState>, id: Id) -> Reply {
    ok(VectorStore::from(vs::get(state.library()?.clone(), id.into_inner()).await?))
}

async fn update(state: web::Data<AppState>, id: Id, body: Body) -> Reply {
    ok(VectorStore::from(vs::update(state.library()?.clone(), id.into_inner(), parse_json(body, &state)?).await?))
}

async fn delete(state: web::Data<AppState>, id: Id) -> Reply {
    let id = id.into_inner();
    vs::delete(state.library()?.clone(), id.clone()).await?;
    ok(Deleted::new(id, "vector_store.deleted"))
}

async fn search(state: web::Data<AppState>, id: Id, body: Body) -> Reply {
    ok(SearchResultsPage::from(vs::search(state.library()?.clone(), id.into_inner(), parse_json(body, &state)?).await?))
}

async fn attach(state: web::Data<AppState>, id: Id, body: Body) -> Reply {
    ok(VectorStoreFile::from(vs::attach(state.ingestion()?.clone(), id.into_inner(), parse_json(body, &state)?).await?))
}

async fn list_files(state: web::Data<AppState>, id: Id, q: web::Query<ListQuery>) -> Reply {
    ok(List::<VectorStoreFile>::of(vs::list_files(state.library()?.clone(), id.into_inner(), q.into_inner()).await?))
}

async fn get_file(state: web::Data<AppState>, ids: Ids) -> Reply {
    let (id, file) = ids.into_inner();
    ok(VectorStoreFile::from(vs::get_file(state.library()?.clone(), id, file).await?))
}

async fn update_file(state: web::Data<AppState>, ids: Ids, body: Body) -> Reply {
    let (id, file) = ids.into_inner();
    ok(VectorStoreFile::from(vs::update_file(state.library()?.clone(), id, file, parse_json(body, &state)?).await?))
}

async fn delete_file(state: web::Data<AppState>, ids: Ids) -> Reply {
    let (id, file) = ids.into_inner();
    vs::delete_file(state.library()?.clone(), id, file.clone()).await?;
    ok(Deleted::new(file, "vector_store.file.deleted"))
}

async fn file_content(state: web::Data<AppState>, ids: Ids) -> Reply {
    let (id, file) = ids.into_inner();
    ok(FileContentPage::from(vs::file_content(state.library()?.clone(), id, file).await?))
}

async fn create_batch(state: web::Data<AppState>, id: Id, body: Body) -> Reply {
    ok(FileBatch::from(file_batches::create(state.ingestion()?.clone(), id.into_inner(), parse_json(body, &state)?).await?))
}

async fn get_batch(state: web::Data<AppState>, ids: Ids) -> Reply {
    let (id, batch) = ids.into_inner();
    ok(FileBatch::from(file_batches::get(state.library()?.clone(), id, batch).await?))
}

async fn cancel_batch(state: web::Data<AppState>, ids: Ids) -> Reply {
    let (id, batch) = ids.into_inner();
    ok(FileBatch::from(file_batches::cancel(state.library()?.clone(), id, batch).await?))
}

async fn batch_files(state: web::Data<AppState>, ids: Ids, q: web::Query<ListQuery>) -> Reply {
    let (id, batch) = ids.into_inner();
    ok(List::<VectorStoreFile>::of(file_batches::files(state.library()?.clone(), id, batch, q.into_inner()).await?))
}
