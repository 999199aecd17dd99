//! The route table is the auth table. Every route is registered through [`Routes::add`] with a
//! [`Route`]: its method, path pattern, who may call it ([`Access`]) and the body it takes
//! ([`BodyKind`]). The API files see only [`Routes`], never actix's `ServiceConfig`, so a route
//! without a scope cannot be written. The same registration code fills the table the middleware
//! consults ([`RouteTable`], found by actix's matched pattern) and the list `hearth routes` prints
//! ([`super::routes`]), which the integration tests walk.

use std::fmt;

use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, Responder};

use super::keys::Scope;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a key (the liveness and readiness probes).
    Open,
    /// A key whose scope grants this one, when keys are configured.
    Needs(Scope),
}

impl From<Scope> for Access {
    fn from(scope: Scope) -> Self {
        Access::Needs(scope)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Open => f.write_str("open"),
            Access::Needs(scope) => f.write_str(scope.name()),
        }
    }
}

/// The request body a route takes, checked against `Content-Type` before the body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body is read; a body sent anyway must not be of another declared type (a form, a file).
    None,
    /// `application/json` (or `application/*+json`), UTF-8.
    Json,
    /// `multipart/form-data`.
    Multipart,
}

impl BodyKind {
    /// The name `hearth routes` prints.
    pub fn name(self) -> &'static str {
        match self {
            BodyKind::None => "none",
            BodyKind::Json => "json",
            BodyKind::Multipart => "multipart",
        }
    }
}

/// One route: what it matches and what it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path pattern as actix matches it (`/v1/files/{id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// The body it takes.
    pub body: BodyKind,
}

impl Route {
    /// A GET route (no body).
    pub fn get(path: &'static str, access: impl Into<Access>) -> Route {
        Route { method: Method::GET, path, access: access.into(), body: BodyKind::None }
    }

    /// A DELETE route (no body).
    pub fn delete(path: &'static str, access: impl Into<Access>) -> Route {
        Route { method: Method::DELETE, path, access: access.into(), body: BodyKind::None }
    }

    /// A POST route taking `body`.
    pub fn post(path: &'static str, access: impl Into<Access>, body: BodyKind) -> Route {
        Route { method: Method::POST, path, access: access.into(), body }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Where the API files register their routes.
pub struct Routes<'a> {
    /// `None` when only listing.
    cfg: Option<&'a mut web::ServiceConfig>,
    table: Vec<Route>,
}

impl<'a> Routes<'a> {
    /// Register into an actix configuration (and record the table).
    pub(super) fn registering(cfg: &'a mut web::ServiceConfig) -> Routes<'a> {
        Routes { cfg: Some(cfg), table: Vec::new() }
    }

    /// Only record the table.
    pub(super) fn listing() -> Routes<'static> {
        Routes { cfg: None, table: Vec::new() }
    }

    /// Register `handler` for `route`.
    pub fn add<F, Args>(&mut self, route: Route, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        if let Some(cfg) = self.cfg.as_deref_mut() {
            cfg.route(route.path, web::method(route.method.clone()).to(handler));
        }
        self.table.push(route);
        self
    }

    pub(super) fn into_table(self) -> Vec<Route> {
        self.table
    }
}

/// The registered routes, for the middleware.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        RouteTable { routes }
    }

    /// The route for a method and the pattern actix matched (`req.match_pattern()`).
    pub fn find(&self, method: &Method, pattern: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.method == *method && r.path == pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_finds_by_method_and_pattern() {
        let table = RouteTable::new(vec![
            Route::get("/v1/files/{id}", Scope::Read),
            Route::delete("/v1/files/{id}", Scope::Admin),
            Route::post("/v1/files", Scope::Ingest, BodyKind::Multipart),
        ]);
        assert_eq!(table.find(&Method::GET, "/v1/files/{id}").map(|r| r.access), Some(Access::Needs(Scope::Read)));
        assert_eq!(table.find(&Method::DELETE, "/v1/files/{id}").map(|r| r.access), Some(Access::Needs(Scope::Admin)));
        assert_eq!(table.find(&Method::POST, "/v1/files").map(|r| r.body), Some(BodyKind::Multipart));
        assert!(table.find(&Method::PUT, "/v1/files/{id}").is_none());
        assert!(table.find(&Method::GET, "/v1/files/abc").is_none(), "patterns, not paths");
    }

    #[test]
    fn routes_print_as_method_and_path() {
        assert_eq!(Route::post("/v1/embeddings", Scope::Infer, BodyKind::Json).to_string(), "POST /v1/embeddings");
        assert_eq!(Access::Open.to_string(), "open");
        assert_eq!(Access::from(Scope::Ingest).to_string(), "ingest");
    }
}
