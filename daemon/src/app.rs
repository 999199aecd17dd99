//! `create_app`: the one place the actix `App` is built — routes, middleware, app data — used by
//! `hearth serve` (`server.rs`) for every HTTP worker and by the in-process tests
//! (`actix_web::test::init_service(create_app(state))`), so a handler-level test runs the same
//! middleware chain, auth table and error mapping as the daemon, without a subprocess or a port.
//!
//! Middleware, outermost first: `metrics::track_http` (counts every answer), Host and Origin
//! (`api::check_host_and_origin`), CORS (preflights), `api::authorize` (key, scope and content type
//! of the matched route), then the body-read deadline (`api::body_deadline`); all before a handler
//! reads the body.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::App;

use crate::state::AppState;
use crate::{api, metrics};

/// The application for `state`: every route of the route table behind the middleware chain.
pub fn create_app(
    state: AppState,
) -> App<impl ServiceFactory<ServiceRequest, Config = (), Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error, InitError = ()>> {
    let origins = state.settings().server.allowed_origins.clone();
    // `wrap` puts a middleware outside the ones before it: the last is the outermost.
    App::new()
        .wrap(from_fn(api::body_deadline))
        .wrap(from_fn(api::authorize))
        .wrap(api::cors(&origins))
        .wrap(from_fn(api::check_host_and_origin))
        .wrap(from_fn(metrics::track_http))
        .configure(move |cfg| api::configure(cfg, &state))
}
