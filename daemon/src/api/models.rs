//! `GET /v1/models` and `GET /v1/models/{id}`.

use actix_web::{web, HttpResponse};
use engine::ModelKind;
use serde_json::{json, Value};

use super::keys::Scope;
use super::routes::{Route, Routes};
use crate::compute;
use crate::error::ApiError;
use crate::provider::Backend;
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::get("/v1/models", Scope::Read), list).add(Route::get("/v1/models/{id}", Scope::Read), one);
}

async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data: Vec<Value> = state.models()?.all().iter().map(model_json).collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

async fn one(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let backend = state.models()?.get(&id).map_err(|_| ApiError::NotFound(format!("model {id}")))?;
    Ok(HttpResponse::Ok().json(model_json(backend)))
}

fn model_json(backend: &Backend) -> Value {
    let kind = match backend.kind() {
        ModelKind::Chat => "chat",
        ModelKind::Embedding => "embedding",
    };
    match backend {
        Backend::Local(engine) => {
            let info = engine.info();
            json!({
                "id": info.name,
                "object": "model",
                "created": info.loaded_at,
                "owned_by": "hearth",
                "max_model_len": info.max_model_len,
                "meta": {
                    "kind": kind,
                    "provider": backend.provider(),
                    "n_ctx_train": info.n_ctx_train,
                    "n_embd": info.n_embd,
                    "n_vocab": info.n_vocab,
                    "n_params": info.n_params,
                    "size": info.size_bytes,
                    "kv_cache_tokens": info.kv_cache_tokens,
                    "n_gpu_layers": info.n_gpu_layers,
                    "on_gpu": info.on_gpu,
                    "devices": engine::devices().iter().map(compute::device_json).collect::<Vec<_>>(),
                },
            })
        }
        Backend::Remote(remote) => json!({
            "id": remote.name(),
            "object": "model",
            "created": remote.created(),
            "owned_by": "hearth",
            "max_model_len": remote.max_model_len(),
            "meta": {"kind": kind, "provider": backend.provider(), "remote_model": remote.remote_model()},
        }),
    }
}
