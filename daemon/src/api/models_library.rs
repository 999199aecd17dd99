//! The model library over HTTP (admin scope): `GET /v1/models/library`,
//! `POST /v1/models/library/import` `{path, name?, file?}`, `POST /v1/models/library/pull`
//! `{url, sha256?, name?}`, `DELETE /v1/models/library/{name}`. The work is
//! [`crate::models_library`]'s, as for `hearth models`; imports and pulls run on actix's bounded
//! blocking pool, at most [`MAX_RUNNING`] at once (more get 429), and answer when done.
//! `path` is read by the daemon's user on the daemon's machine. Registered before
//! `GET /v1/models/{id}`, which would otherwise take `library` for a model id.

use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use super::types::models_library::{Imported, LibraryList, Pulled};
use super::types::Deleted;
use super::{parse_json, Body};
use crate::error::ApiError;
use crate::models_library::import::{import, ImportRequest};
use crate::models_library::pull::{pull, PullRequest};
use crate::models_library::{Library, LibraryError};
use crate::state::AppState;

/// Imports and pulls running at once.
pub const MAX_RUNNING: usize = 2;
static RUNNING: AtomicUsize = AtomicUsize::new(0);

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::get("/v1/models/library", Scope::Admin), list)
        .add(Route::post("/v1/models/library/import", Scope::Admin, BodyKind::Json), import_model)
        .add(Route::post("/v1/models/library/pull", Scope::Admin, BodyKind::Json), pull_model)
        .add(Route::delete("/v1/models/library/{name}", Scope::Admin), remove);
}

/// `POST /v1/models/library/import`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// A GGUF file, a directory of GGUFs, an OCI image layout or an OCI archive, on the daemon's machine.
    pub path: String,
    /// The library name (default: from the file name).
    #[serde(default)]
    pub name: Option<String>,
    /// Which GGUF, when the source holds several models.
    #[serde(default)]
    pub file: Option<String>,
}

/// `POST /v1/models/library/pull`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullBody {
    /// An http or https URL of a GGUF file.
    pub url: String,
    /// The file's expected sha256 (64 hexadecimal digits); nothing is added when it differs.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

fn library(state: &AppState) -> Library {
    Library::new(&state.settings().server.state_dir)
}

fn api_error(e: LibraryError) -> ApiError {
    match e {
        LibraryError::NotFound(name) => ApiError::NotFound(format!("library model {name}")),
        LibraryError::Exists(_) => ApiError::LimitReached(e.to_string()),
        LibraryError::Invalid(message) => ApiError::BadRequest { message, param: None, code: "invalid_model" },
        LibraryError::Io { .. } => {
            tracing::error!(error = %e, "Model library operation failed.");
            ApiError::Internal(e.to_string())
        }
    }
}

/// A slot among [`MAX_RUNNING`], given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Result<Slot, ApiError> {
        let before = RUNNING.fetch_add(1, Ordering::SeqCst);
        if before >= MAX_RUNNING {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::Overloaded(format!("{MAX_RUNNING} model imports or pulls are running; retry when one is done")));
        }
        Ok(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let lib = library(&state);
    let entries = web::block(move || lib.list()).await.map_err(|e| ApiError::Internal(e.to_string()))?.map_err(api_error)?;
    Ok(HttpResponse::Ok().json(LibraryList { object: "list", data: entries }))
}

async fn import_model(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let body: ImportBody = parse_json(body, &state)?;
    let slot = Slot::take()?;
    let lib = library(&state);
    let request = ImportRequest { path: body.path.into(), name: body.name, file: body.file };
    let done = web::block(move || {
        let _slot = slot;
        import(&lib, &request)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(api_error)?;
    tracing::info!(model = %done.entry.name, source = %done.entry.source, seconds = done.seconds, "Model imported into the library.");
    Ok(HttpResponse::Ok().json(Imported { entry: done.entry, seconds: done.seconds }))
}

async fn pull_model(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, ApiError> {
    let body: PullBody = parse_json(body, &state)?;
    let slot = Slot::take()?;
    let lib = library(&state);
    let request = PullRequest { url: body.url, sha256: body.sha256, name: body.name };
    let done = web::block(move || {
        let _slot = slot;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LibraryError::io("cannot start a runtime for the download"))?;
        runtime.block_on(pull(&lib, &request))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(api_error)?;
    tracing::info!(model = %done.entry.name, source = %done.entry.source, seconds = done.seconds, resumed = done.resumed, "Model pulled into the library.");
    Ok(HttpResponse::Ok().json(Pulled { entry: done.entry, seconds: done.seconds, received: done.received, resumed: done.resumed }))
}

async fn remove(state: web::Data<AppState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let lib = library(&state);
    let name = name.into_inner();
    let entry = lib.get(&name).map_err(api_error)?;
    let path = lib.model_path(&entry);
    if let Some(m) = state.settings().models.iter().find(|m| m.path == path) {
        return Err(ApiError::LimitReached(format!("library model {name} is served as model `{}`; change [[models]] and restart first", m.name)));
    }
    web::block(move || {
        let lock = lib.lock()?;
        lib.remove(&lock, &name)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(api_error)?;
    Ok(HttpResponse::Ok().json(Deleted::new(entry.name, "model.library")))
}
