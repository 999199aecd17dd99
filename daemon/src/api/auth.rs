//! The per-route checks, in middleware, before any handler reads the body: the API key and its
//! scope against the route's declared [`Access`], then the body's content type against the route's
//! [`BodyKind`](super::routes::BodyKind).
//!
//! The route is found from actix's matched pattern in the [`RouteTable`]. With no keys configured
//! every route is open (loopback only; see `config.rs`). With keys: `Open` routes (`/health`,
//! `/ready`) need none; a missing or unknown key is 401; a known key whose scope does not grant
//! the route's is 403 naming the scope needed. A path or method hearth does not serve still needs
//! a valid key of any scope, so the 404 tells nothing to a caller without one. CORS preflights never
//! get here: actix-cors, outside this middleware, answers them.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use super::guard::check_body_type;
use super::keys::KeyRing;
use super::routes::{Access, Route, RouteTable};
use crate::error::ApiError;
use crate::state::AppState;

/// Middleware: the key, its scope and the content type, for the matched route.
pub async fn authorize<B: MessageBody>(req: ServiceRequest, next: Next<B>) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let verdict = match (req.app_data::<web::Data<AppState>>(), req.app_data::<web::Data<RouteTable>>()) {
        (Some(state), Some(table)) => {
            let route = req.match_pattern().and_then(|pattern| table.find(req.method(), &pattern).cloned());
            check_key(&state.settings().server.keys, route.as_ref(), presented_key(&req))
                .and_then(|()| route.as_ref().map_or(Ok(()), |r| check_body_type(r, req.headers())))
        }
        _ => Err(ApiError::Internal("the route table is not installed".into())),
    };
    match verdict {
        Ok(()) => next.call(req).await.map(ServiceResponse::map_into_left_body),
        Err(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
}

/// The key check for `route` (`None`: no route matched).
pub fn check_key(keys: &KeyRing, route: Option<&Route>, presented: Option<&str>) -> Result<(), ApiError> {
    if keys.is_empty() {
        return Ok(());
    }
    let needed = match route.map(|r| r.access) {
        Some(Access::Open) => return Ok(()),
        Some(Access::Needs(scope)) => Some(scope),
        None => None,
    };
    let scope = presented.and_then(|k| keys.scope_of(k)).ok_or(ApiError::Unauthorized)?;
    match (needed, route) {
        (Some(needed), Some(route)) if !scope.grants(needed) => Err(ApiError::Forbidden {
            message: format!("this API key has the scope `{scope}`; {route} needs a key with the scope `{needed}` (or `admin`)"),
            code: "insufficient_scope",
        }),
        _ => Ok(()),
    }
}

/// The key of `Authorization: Bearer <key>` (the scheme in any case).
fn presented_key(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::keys::{KeyEntry, KeyList, Scope};
    use crate::api::routes::BodyKind;

    fn ring() -> KeyRing {
        let list = KeyList(["read:reader-key-1", "infer:infer-key-1", "ingest:ingest-key-1", "admin-key-1"].map(|k| KeyEntry::Text(k.into())).to_vec());
        KeyRing::build(&list, None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn status(result: Result<(), ApiError>) -> u16 {
        result.map_or_else(|e| e.status_code().as_u16(), |()| 0)
    }

    #[test]
    fn without_keys_everything_is_open() {
        let chat = Route::post("/v1/chat/completions", Scope::Infer, BodyKind::Json);
        assert_eq!(status(check_key(&KeyRing::default(), Some(&chat), None)), 0);
        assert_eq!(status(check_key(&KeyRing::default(), None, Some("anything"))), 0);
    }

    #[test]
    fn keys_are_checked_against_the_route_scope() {
        let keys = ring();
        let delete = Route::delete("/v1/files/{id}", Scope::Admin);
        let search = Route::post("/v1/vector_stores/{id}/search", Scope::Read, BodyKind::Json);
        let upload = Route::post("/v1/files", Scope::Ingest, BodyKind::Multipart);
        let chat = Route::post("/v1/chat/completions", Scope::Infer, BodyKind::Json);
        let health = Route::get("/health", Access::Open);
        let cases: [(&Route, [u16; 6]); 5] = [
            // no key, wrong key, read, infer, ingest, admin
            (&delete, [401, 401, 403, 403, 403, 0]),
            (&search, [401, 401, 0, 0, 0, 0]),
            (&upload, [401, 401, 403, 403, 0, 0]),
            (&chat, [401, 401, 403, 0, 403, 0]),
            (&health, [0, 0, 0, 0, 0, 0]),
        ];
        let presented = [None, Some("wrong-key-123"), Some("reader-key-1"), Some("infer-key-1"), Some("ingest-key-1"), Some("admin-key-1")];
        for (route, expected) in cases {
            let got = presented.map(|key| status(check_key(&keys, Some(route), key)));
            assert_eq!(got, expected, "{route}");
        }
    }

    #[test]
    fn a_missing_scope_is_named() {
        let chat = Route::post("/v1/chat/completions", Scope::Infer, BodyKind::Json);
        let err = check_key(&ring(), Some(&chat), Some("reader-key-1")).err().unwrap_or_else(|| panic!("allowed"));
        let text = err.to_string();
        assert!(text.contains("`read`") && text.contains("`infer`") && text.contains("POST /v1/chat/completions"), "{text}");
        assert!(!text.contains("reader-key-1"), "{text}");
    }

    #[test]
    fn unknown_routes_need_a_valid_key_of_any_scope() {
        let keys = ring();
        assert_eq!(status(check_key(&keys, None, None)), 401);
        assert_eq!(status(check_key(&keys, None, Some("nope-nope-nope"))), 401);
        assert_eq!(status(check_key(&keys, None, Some("reader-key-1"))), 0);
    }
}
