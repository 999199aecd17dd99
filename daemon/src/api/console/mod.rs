//! The web console (issue #26): a chat with cited sources, the document library, the models and
//! live metrics, served by the daemon itself at `/` and usable offline.
//!
//! Design:
//! - **Static assets, embedded.** Plain JavaScript modules and one stylesheet from
//!   `daemon/console/`, compiled into the binary with `include_bytes!` ([`assets`]); no build step,
//!   no framework, nothing fetched from elsewhere. `index.html` is served at `/` with `no-cache`;
//!   everything else at `/console/{version}/{name}`, where `version` is a digest of every asset, so
//!   those answers carry a one-year `immutable` max-age and a new binary changes every URL.
//! - **No data in the assets.** Asset routes are [`Access::Open`] (they pass the Host guard like
//!   every route, but need no key); every piece of data comes from the public API, called by the
//!   page with the user's key (`Authorization: Bearer`, kept in `sessionStorage`). The page is
//!   same-origin, so it needs no CORS: the Host/Origin guard accepts an `Origin` that names the
//!   very host the request is addressed to.
//! - **Strict headers.** Every console answer has a Content-Security-Policy that allows only this
//!   origin's scripts, styles and connections (no inline code, no framing), `nosniff`, and
//!   `no-referrer`.
//! - **One small read endpoint**, `GET /v1/console/session` ([`session`]): the scope of the key
//!   presented (so the page greys out what that key may not do) and the watched folders from the
//!   configuration, which the rest of the API does not expose.

mod assets;
mod session;

use actix_web::http::header;
use actix_web::{web, HttpResponse, HttpResponseBuilder};

use super::keys::Scope;
use super::routes::{Access, Route, Routes};
use crate::error::ApiError;

use assets::version;
pub use session::Session;

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `Cache-Control` of `index.html`: always revalidated, so a new binary's asset URLs are seen.
const INDEX_CACHE: &str = "no-cache";

/// `Cache-Control` of a versioned asset: its URL changes with its content.
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// Assets are open (static, no data; the Host guard still applies); the session needs any key.
pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::get("/", Access::Open), index)
        .add(Route::get("/console/{version}/{name}", Access::Open), asset)
        .add(Route::get("/v1/console/session", Scope::Read), session::session);
}

/// The console's security headers on a response builder.
fn secured(mut builder: HttpResponseBuilder, content_type: &str, cache: &str) -> HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_TYPE, content_type.to_owned()))
        .insert_header((header::CACHE_CONTROL, cache.to_owned()))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    builder
}

async fn index() -> HttpResponse {
    secured(HttpResponse::Ok(), "text/html; charset=utf-8", INDEX_CACHE).body(assets::index_html())
}

async fn asset(path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (wanted, name) = path.into_inner();
    let current = version();
    if wanted != current {
        return Err(ApiError::ResourceNotFound(format!(
            "console asset version {wanted:?} is not this build's ({current}); reload the console at /"
        )));
    }
    let found = assets::find(&name).ok_or_else(|| ApiError::ResourceNotFound(format!("no console asset named {name:?}")))?;
    Ok(secured(HttpResponse::Ok(), found.content_type, ASSET_CACHE).body(found.body))
}
