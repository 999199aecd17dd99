//! `GET /v1/models`, `GET /v1/models/{id}` (OpenAI's model objects, with hearth's `state`,
//! `in_flight`, `load` and `meta`), and the admin routes `POST /v1/models/{id}/load` and
//! `POST /v1/models/{id}/unload`.
//!
//! Load answers when the model is loaded (within `[engine] model_load_timeout_seconds`, else 503
//! `model_loading` with `Retry-After`), unloading the least recently used idle model first when
//! `[engine] max_loaded_models` is reached. Unload refuses with 409 `model_busy` while requests are
//! in flight on the model (or wait for it) or while it loads: it never cuts a request off; the
//! operator retries. An unloaded model loads again on its next request. A remote model has nothing
//! to load (400 `not_loadable`); an embedding model stays loaded (400 `not_unloadable`).

use actix_web::{web, HttpResponse};
use engine::ModelKind;

use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use super::types::models::{LocalMeta, LocalModel, Loaded, ModelList, ModelObject, RemoteMeta, RemoteModel, Unloaded};
use crate::compute;
use crate::error::ApiError;
use crate::fault::ServiceError;
use crate::models::Models;
use crate::provider::Backend;
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::get("/v1/models", Scope::Read), list)
        .add(Route::get("/v1/models/{id}", Scope::Read), one)
        .add(Route::post("/v1/models/{id}/load", Scope::Admin, BodyKind::None), load)
        .add(Route::post("/v1/models/{id}/unload", Scope::Admin, BodyKind::None), unload);
}

async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let models = state.models()?;
    let data = models.all().iter().map(|b| model_object(models, b)).collect();
    Ok(HttpResponse::Ok().json(ModelList { object: "list", data }))
}

async fn one(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let models = state.models()?;
    let backend = models.get(&id).map_err(|_| ApiError::NotFound(format!("model {id}")))?;
    Ok(HttpResponse::Ok().json(model_object(models, backend)))
}

/// The registry index of local model `id`; 404 for an unknown one, 400 for a remote one.
fn local_index(models: &Models, id: &str, verb: &str) -> Result<usize, ApiError> {
    let backend = models.get(id)?;
    match backend {
        Backend::Local(_) => models.registry().index(id).ok_or_else(|| ApiError::Internal(format!("model `{id}` is not in the registry"))),
        Backend::Remote(_) => Err(ServiceError::Invalid {
            field: Some("model".into()),
            message: format!("`{id}` is a remote model: its upstream loads it; there is nothing to {verb} here"),
            code: "not_loadable",
        }
        .into()),
    }
}

async fn load(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let models = state.models()?;
    let i = local_index(models, &id, "load")?;
    let started = std::time::Instant::now();
    models.registry().load(i).await?;
    let model = model_object(models, models.get(&id)?);
    Ok(HttpResponse::Ok().json(Loaded { model, waited_ms: started.elapsed().as_millis() as u64 }))
}

async fn unload(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let models = state.models()?;
    let i = local_index(models, &id, "unload")?;
    let took = models.registry().unload(i).await?;
    let model = model_object(models, models.get(&id)?);
    Ok(HttpResponse::Ok().json(Unloaded { model, unload_ms: took.map(|d| d.as_millis() as u64) }))
}

/// OpenAI's model object plus hearth's fields. A local model's details are those of its engine,
/// or of its last load while it is unloaded (`null` before its first).
pub fn model_object(models: &Models, backend: &Backend) -> ModelObject {
    let kind = match backend.kind() {
        ModelKind::Chat => "chat",
        ModelKind::Embedding => "embedding",
    };
    match backend {
        Backend::Local(local) => {
            let status = models.registry().index(local.name()).map(|i| models.registry().status(i));
            let info = local.info();
            let info = info.as_ref();
            ModelObject::Local(LocalModel {
                id: local.name().to_owned(),
                object: "model",
                created: info.map_or(0, |i| i.loaded_at),
                owned_by: "hearth",
                max_model_len: local.max_model_len(),
                state: status.as_ref().map_or("unloaded", |s| s.state.name()).to_owned(),
                state_reason: status.as_ref().and_then(|s| match &s.state {
                    crate::models_registry::policy::ModelState::Failed(reason) => Some(reason.clone()),
                    _ => None,
                }),
                in_flight: status.as_ref().map_or(0, |s| s.in_flight),
                load: if status.as_ref().is_some_and(|s| s.pinned) { "startup" } else { "on_demand" },
                last_load_ms: status.as_ref().and_then(|s| s.last_load).map(|d| d.as_millis() as u64),
                meta: LocalMeta {
                    kind,
                    provider: backend.provider(),
                    n_ctx_train: info.map(|i| i.n_ctx_train),
                    n_embd: info.map(|i| i.n_embd),
                    n_vocab: info.map(|i| i.n_vocab),
                    n_params: info.map(|i| i.n_params),
                    size: info.map(|i| i.size_bytes),
                    kv_cache_tokens: info.map(|i| i.kv_cache_tokens),
                    n_gpu_layers: info.map(|i| i.n_gpu_layers),
                    on_gpu: info.map(|i| i.on_gpu),
                    devices: engine::devices().iter().map(compute::device_json).collect(),
                },
            })
        }
        Backend::Remote(remote) => ModelObject::Remote(RemoteModel {
            id: remote.name().to_owned(),
            object: "model",
            created: remote.created(),
            owned_by: "hearth",
            max_model_len: remote.max_model_len(),
            state: "remote",
            meta: RemoteMeta { kind, provider: backend.provider(), remote_model: remote.remote_model().to_owned() },
        }),
    }
}
