//! `POST /v1/embeddings`.

use actix_web::{web, HttpResponse};

use super::{parse_json, Body};
use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use super::types::embeddings::EmbeddingList;
use crate::error::ApiError;
use crate::service::embed::{embeddings, EmbeddingsRequest};
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::post("/v1/embeddings", Scope::Infer, BodyKind::Json), create);
}

async fn create(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let request: EmbeddingsRequest = parse_json(body, &state)?;
    Ok(HttpResponse::Ok().json(EmbeddingList::from(embeddings(&state, request).await?)))
}
