//! `POST /v1/embeddings`.

use actix_web::{web, HttpResponse};

use super::{parse_json, Body};
use crate::error::ApiError;
use crate::service::embed::{embeddings, EmbeddingsRequest};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/embeddings", web::post().to(create));
}

async fn create(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let request: EmbeddingsRequest = parse_json(body, &state)?;
    Ok(HttpResponse::Ok().json(embeddings(&state, request).await?))
}
