//! `GET /v1/console/session`: what the console needs to know about itself that the OpenAI-shaped
//! API does not say: the scope of the key presented (`admin` when no keys are configured), so the
//! page can disable what that key may not do instead of failing on click, and the watched folders
//! of the configuration with the vector store each feeds. Needs a key of any scope.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::api::keys::Scope;
use crate::error::ApiError;
use crate::state::AppState;

/// The answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Session {
    /// Always `console.session`.
    object: String,
    /// The presented key's scope (`admin` without keys).
    scope: String,
    /// Whether the server checks keys at all.
    keys_required: bool,
    /// The configured watched folders.
    watched_folders: Vec<WatchedFolder>,
}

/// One `[[ingest.watch]]` entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WatchedFolder {
    /// The folder on the server.
    path: String,
    /// The name of the vector store its files go to.
    vector_store: String,
}

pub async fn session(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let settings = state.settings();
    let keys = &settings.server.keys;
    let scope = if keys.is_empty() {
        Scope::Admin
    } else {
        // The middleware has already accepted this key; it is looked up again for its scope.
        presented_key(&req).and_then(|k| keys.scope_of(k)).ok_or(ApiError::Unauthorized)?
    };
    let watched_folders = settings
        .ingest
        .watch
        .iter()
        .map(|w| WatchedFolder { path: w.path.display().to_string(), vector_store: w.vector_store.clone() })
        .collect();
    Ok(HttpResponse::Ok().json(Session { object: "console.session".into(), scope: scope.name().into(), keys_required: !keys.is_empty(), watched_folders }))
}

/// The key of `Authorization: Bearer <key>`.
fn presented_key(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}
