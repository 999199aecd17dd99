//! API keys: `Authorization: Bearer <key>` checked in middleware, before any handler reads the
//! body. Liveness and readiness probes stay open so systemd and load balancers can use them.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use crate::error::ApiError;
use crate::state::AppState;

/// Paths answered without a key.
const OPEN_PATHS: [&str; 2] = ["/health", "/ready"];

/// Middleware: refuse requests without a configured key (when keys are configured).
pub async fn require_api_key<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let allowed = match req.app_data::<web::Data<AppState>>() {
        Some(state) => {
            let keys = &state.settings().server.api_keys;
            keys.is_empty() || OPEN_PATHS.contains(&req.path()) || presented_key(&req).is_some_and(|k| keys.iter().any(|ok| same(ok, k)))
        }
        None => false,
    };
    if allowed {
        next.call(req).await.map(ServiceResponse::map_into_left_body)
    } else {
        let response = ApiError::Unauthorized.error_response();
        Ok(req.into_response(response).map_into_right_body())
    }
}

fn presented_key(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

/// Comparison whose time does not depend on where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn equal_keys_match() {
        assert!(same("secret-key-1", "secret-key-1"));
    }

    #[test]
    fn different_keys_do_not() {
        assert!(!same("secret-key-1", "secret-key-2"));
        assert!(!same("secret", "secret-key"));
    }
}
