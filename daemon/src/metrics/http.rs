//! `hearth_http_requests_total{route, status}`: every answered request, counted by an actix
//! middleware that wraps the whole app (so 401s and 404s count too).
//!
//! `route` is the matched route pattern (`/v1/models/{id}`), never the raw path, and
//! `unmatched` for paths no route serves; `status` is the numeric code. Both sets are closed, so
//! a client probing random paths cannot grow the series without bound.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label set of `hearth_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route pattern, or `unmatched`.
    pub route: String,
    /// The HTTP status code.
    pub status: u16,
}

/// The HTTP families.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
}

impl HttpMetrics {
    /// Create the families and register them.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<HttpLabels, Counter>::default();
        registry.register("hearth_http_requests", "HTTP requests answered, by route pattern and status code", requests.clone());
        Self { requests }
    }

    /// Count one answered request.
    pub fn answered(&self, route: Option<&str>, status: u16) {
        let route = route.unwrap_or("unmatched").to_owned();
        self.requests.get_or_create(&HttpLabels { route, status }).inc();
    }
}

/// Middleware: count each request by route and status once it is answered. A response that
/// fails inside the app is counted with the status its error maps to. The app carries the
/// families as `web::Data<HttpMetrics>` (so this module needs nothing of the app's state).
pub async fn track_http<B: MessageBody>(req: ServiceRequest, next: Next<B>) -> Result<ServiceResponse<B>, actix_web::Error> {
    let http = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let route = req.match_pattern();
    let result = next.call(req).await;
    if let Some(http) = http {
        let status = match &result {
            Ok(res) => res.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        http.answered(route.as_deref(), status);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        http.answered(Some("/v1/models/{id}"), 200);
        http.answered(Some("/v1/models/{id}"), 200);
        http.answered(None, 404);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("hearth_http_requests_total{route=\"/v1/models/{id}\",status=\"200\"} 2"), "{out}");
        assert!(out.contains("hearth_http_requests_total{route=\"unmatched\",status=\"404\"} 1"), "{out}");
    }
}
