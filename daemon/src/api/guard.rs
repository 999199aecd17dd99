//! The HTTP edge, checked before authentication and before any body is read: the `Host` a request
//! is addressed to, the `Origin` of a browser page that sends it, and (per route) the body's
//! `Content-Type`.
//!
//! - **Host** (DNS rebinding): a page on `rebind.attacker.example` whose name is made to resolve to
//!   127.0.0.1 talks to hearth as its own origin. Such a request still carries the attacker's name
//!   in `Host`, so only `localhost`, loopback addresses, the listen address and the names in
//!   `server.allowed_hosts` are answered (any port); `["*"]` turns the check off. A request with no
//!   `Host` (HTTP/1.0, like the container health check) comes from no browser and passes.
//! - **Origin** (cross-site requests): browsers send `Origin` with every cross-origin POST, also
//!   the "simple" ones (a form, `fetch` with `mode: "no-cors"`) that skip the CORS preflight. A
//!   request with an `Origin` not in `server.allowed_origins` (default: none) is refused, whatever
//!   the route; allowed origins get CORS answers from actix-cors ([`cors`]), preflights included,
//!   which run before the key check (a preflight carries no key). An `Origin` naming the very
//!   host the request is addressed to is a page hearth served itself (the web console) and passes.
//! - **Content type**: a JSON route takes only `application/json` (or `application/*+json`, UTF-8),
//!   the upload route only `multipart/form-data`; a route without a body refuses a body of another
//!   declared type. So no form or `text/plain` body, the kinds a page can send without a preflight,
//!   reaches a handler.

use std::net::{IpAddr, SocketAddr};

use actix_cors::Cors;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{mime, web, ResponseError};

use super::routes::{BodyKind, Route};
use crate::config::hosts::canonical_origin;
use crate::error::ApiError;

/// Longest header value quoted back in an error message.
const QUOTE_CHARS: usize = 100;

/// Which `Host` values are answered.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// `allowed_hosts = ["*"]`.
    any: bool,
    /// Names (lower case) from `allowed_hosts`; one starting with `.` also matches its subdomains.
    names: Vec<String>,
    /// Addresses from `allowed_hosts`.
    ips: Vec<IpAddr>,
    /// The listen address, unless it is 0.0.0.0 or `::`.
    listen: Option<IpAddr>,
}

impl HostPolicy {
    /// The policy for the configured `allowed_hosts` (already validated) and listen address.
    pub fn new(allowed: &[String], listen: SocketAddr) -> Self {
        let mut policy = HostPolicy { any: false, names: Vec::new(), ips: Vec::new(), listen: (!listen.ip().is_unspecified()).then(|| listen.ip()) };
        for entry in allowed {
            let entry = entry.trim().to_ascii_lowercase();
            if entry == "*" {
                policy.any = true;
            } else if let Ok(ip) = entry.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                policy.ips.push(ip);
            } else {
                policy.names.push(entry.trim_end_matches('.').to_owned());
            }
        }
        policy
    }

    /// Whether a request addressed to `host` (a `Host` header value) is answered.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(name) = host_name(host) else {
            return false;
        };
        if let Ok(ip) = name.parse::<IpAddr>() {
            return ip.is_loopback() || Some(ip) == self.listen || self.ips.contains(&ip);
        }
        let name = name.to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        name == "localhost"
            || self.names.iter().any(|allowed| match allowed.strip_prefix('.') {
                Some(domain) => name == domain || name.strip_suffix(allowed.as_str()).is_some_and(|sub| !sub.is_empty()),
                None => name == allowed,
            })
    }
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]:port`), brackets removed; `None`
/// when it is malformed.
fn host_name(host: &str) -> Option<&str> {
    let valid_port = |port: &str| !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) if valid_port(port) => inside,
            None if after.is_empty() => inside,
            _ => return None,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    ok.then_some(name)
}

/// The host and origin policies, built once per worker from the settings.
#[derive(Debug, Clone)]
pub struct EdgePolicy {
    hosts: HostPolicy,
    /// Canonical allowed origins.
    origins: Vec<String>,
}

impl EdgePolicy {
    /// From the validated `[server]` settings.
    pub fn new(allowed_hosts: &[String], allowed_origins: &[String], listen: SocketAddr) -> Self {
        let origins = allowed_origins.iter().filter_map(|o| canonical_origin(o).ok()).collect();
        EdgePolicy { hosts: HostPolicy::new(allowed_hosts, listen), origins }
    }

    /// Whether a browser page from `origin` (an `Origin` value) may call hearth.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// Host, then origin. Every `Host` and `Origin` value must pass, and so must the authority of
    /// an absolute-form request target.
    pub fn check(&self, headers: &HeaderMap, authority: Option<&str>) -> Result<(), ApiError> {
        for host in headers.get_all(header::HOST).map(|v| v.to_str().unwrap_or("\u{fffd}")).chain(authority) {
            if !self.hosts.allows(host) {
                tracing::info!(host = quote(host), "Refused a request addressed to a host that is not allowed.");
                return Err(ApiError::Forbidden {
                    message: format!(
                        "this server does not answer requests addressed to the host {:?}; it answers localhost, loopback addresses, its listen address and the names in server.allowed_hosts (protection against DNS rebinding)",
                        quote(host)
                    ),
                    code: "host_not_allowed",
                });
            }
        }
        for origin in headers.get_all(header::ORIGIN).map(|v| v.to_str().unwrap_or("\u{fffd}")) {
            if !self.allows_origin(origin) && !same_origin(origin, headers) {
                tracing::info!(origin = quote(origin), "Refused a request from a browser origin that is not allowed.");
                return Err(ApiError::Forbidden {
                    message: format!(
                        "requests from the web origin {:?} are not allowed; list it in server.allowed_origins to let pages from there call this server",
                        quote(origin)
                    ),
                    code: "origin_not_allowed",
                });
            }
        }
        Ok(())
    }
}

/// Whether `origin` is the very host the request is addressed to (`http://HOST` or
/// `https://HOST` with `HOST` the `Host` header, which has passed the host policy): a page hearth
/// served itself, like the web console, whose browser sends `Origin` with every POST and DELETE.
/// A DNS-rebinding page has the attacker's name in both and is refused by the host check first.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(authority) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return false;
    };
    let mut hosts = headers.get_all(header::HOST).peekable();
    hosts.peek().is_some() && hosts.all(|h| h.to_str().is_ok_and(|h| h.eq_ignore_ascii_case(authority)))
}

/// At most [`QUOTE_CHARS`] of a header value, for messages and logs.
fn quote(value: &str) -> &str {
    value.char_indices().nth(QUOTE_CHARS).map_or(value, |(i, _)| &value[..i])
}

/// Middleware: refuse a request whose `Host` or `Origin` is not allowed, before anything else.
pub async fn check_host_and_origin<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let verdict = match req.app_data::<web::Data<EdgePolicy>>() {
        Some(policy) => policy.check(req.headers(), req.uri().authority().map(|a| a.as_str())),
        None => Err(ApiError::Internal("the host and origin policy is not installed".into())),
    };
    match verdict {
        Ok(()) => next.call(req).await.map(ServiceResponse::map_into_left_body),
        Err(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
}

/// CORS answers for the allowed origins (the others never get here). Preflights are answered
/// without a key; any request header may be asked for (SDKs send their own), no credentials
/// (cookies) are involved, and the answer is cached by browsers for an hour.
pub fn cors(allowed_origins: &[String]) -> Cors {
    let origins: Vec<String> = allowed_origins.iter().filter_map(|o| canonical_origin(o).ok()).collect();
    Cors::default()
        .allowed_origin_fn(move |origin, _| origin.to_str().is_ok_and(|o| origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(o))))
        .allowed_methods(["GET", "POST", "DELETE"])
        .allow_any_header()
        .expose_headers(["retry-after", "www-authenticate", "content-disposition"])
        .max_age(3600)
}

/// Check the body's declared type against what `route` takes, before the body is read.
pub fn check_body_type(route: &Route, headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("\u{fffd}").trim());
    let parsed = declared.and_then(|d| d.parse::<mime::Mime>().ok());
    let (ok, expected) = match route.body {
        BodyKind::Json => (parsed.as_ref().is_some_and(is_json), "application/json"),
        BodyKind::Multipart => (parsed.as_ref().is_some_and(|m| m.type_() == mime::MULTIPART && m.subtype() == mime::FORM_DATA), "multipart/form-data"),
        // Only a body that is there and declared as something else is refused.
        BodyKind::None => (!has_body(headers) || declared.is_none() || parsed.as_ref().is_some_and(is_json), "no body (or application/json)"),
    };
    if ok {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType {
        route: route.to_string(),
        expected,
        received: declared.map_or_else(|| "missing".to_owned(), |d| format!("`{}`", quote(d))),
    })
}

/// `application/json` or `application/*+json`, with no charset or UTF-8.
fn is_json(m: &mime::Mime) -> bool {
    let json = m.type_() == mime::APPLICATION && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON));
    json && m.get_param(mime::CHARSET).is_none_or(|c| c == mime::UTF_8)
}

/// Whether the request announces a body.
fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.to_str().ok().is_none_or(|len| len.trim() != "0"))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;
    use crate::api::keys::Scope;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }

    #[test]
    fn loopback_names_and_addresses_pass_on_any_port() {
        let policy = HostPolicy::new(&[], loopback());
        for host in ["localhost", "LOCALHOST:8080", "localhost.:1", "127.0.0.1", "127.0.0.1:39211", "127.0.0.2:80", "[::1]", "[::1]:8080"] {
            assert!(policy.allows(host), "{host}");
        }
    }

    #[test]
    fn other_names_and_malformed_hosts_are_refused() {
        let policy = HostPolicy::new(&[], loopback());
        for host in ["rebind.attacker.example", "rebind.attacker.example:8080", "localhost.attacker.example", "127.0.0.1.nip.io", "10.0.0.5:8080", "", ":8080", "localhost:port", "[::1", "[::1]x", "::1", "a b", "localhost:8080:1"] {
            assert!(!policy.allows(host), "{host:?}");
        }
    }

    #[test]
    fn the_listen_address_and_allowed_hosts_pass() {
        let listen = SocketAddr::from(([192, 168, 1, 20], 8080));
        let allowed = ["hearth.lan".to_owned(), ".corp.example".to_owned(), "10.0.0.5".to_owned(), "[fd00::1]".to_owned()];
        let policy = HostPolicy::new(&allowed, listen);
        for host in ["192.168.1.20:8080", "hearth.lan", "HEARTH.LAN:443", "corp.example", "ai.corp.example", "10.0.0.5:1", "[fd00::1]:8080", "localhost"] {
            assert!(policy.allows(host), "{host}");
        }
        for host in ["192.168.1.21", "hearth.lan.attacker.example", "evilcorp.example", "xhearth.lan"] {
            assert!(!policy.allows(host), "{host}");
        }
        let any = HostPolicy::new(&["*".to_owned()], SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert!(any.allows("anything.example:1") && any.allows("bad host"));
        let wildcard_listen = HostPolicy::new(&[], SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert!(!wildcard_listen.allows("0.0.0.0:8080") && wildcard_listen.allows("127.0.0.1:8080"));
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{e}")));
        }
        map
    }

    #[test]
    fn the_edge_checks_every_host_and_origin() {
        let policy = EdgePolicy::new(&[], &["http://app.example:5173".to_owned()], loopback());
        assert!(policy.check(&headers(&[(header::HOST, "127.0.0.1:8080")]), None).is_ok());
        assert!(policy.check(&HeaderMap::new(), None).is_ok(), "no Host: HTTP/1.0, not a browser");
        assert!(policy.check(&headers(&[(header::HOST, "127.0.0.1"), (header::ORIGIN, "http://app.example:5173")]), None).is_ok());
        let refused = |h: HeaderMap, authority: Option<&str>| match policy.check(&h, authority) {
            Err(ApiError::Forbidden { code, message }) => (code, message),
            other => panic!("not refused: {other:?}"),
        };
        let (code, message) = refused(headers(&[(header::HOST, "rebind.attacker.example")]), None);
        assert_eq!(code, "host_not_allowed");
        assert!(message.contains("rebind.attacker.example") && message.contains("server.allowed_hosts"), "{message}");
        assert_eq!(refused(headers(&[(header::HOST, "localhost"), (header::HOST, "evil.example")]), None).0, "host_not_allowed");
        assert_eq!(refused(headers(&[(header::HOST, "localhost")]), Some("evil.example")).0, "host_not_allowed");
        let (code, message) = refused(headers(&[(header::HOST, "localhost"), (header::ORIGIN, "http://evil.example")]), None);
        assert_eq!(code, "origin_not_allowed");
        assert!(message.contains("http://evil.example") && message.contains("server.allowed_origins"), "{message}");
        assert_eq!(refused(headers(&[(header::ORIGIN, "null")]), None).0, "origin_not_allowed");
        assert_eq!(refused(headers(&[(header::ORIGIN, "http://app.example:5174")]), None).0, "origin_not_allowed");
        // Same origin: a page hearth served (the web console) posting back to the host it came from.
        assert!(policy.check(&headers(&[(header::HOST, "127.0.0.1:8080"), (header::ORIGIN, "http://127.0.0.1:8080")]), None).is_ok());
        assert!(policy.check(&headers(&[(header::HOST, "localhost:9"), (header::ORIGIN, "https://LOCALHOST:9")]), None).is_ok());
        assert_eq!(refused(headers(&[(header::HOST, "127.0.0.1:8080"), (header::ORIGIN, "http://127.0.0.1:8081")]), None).0, "origin_not_allowed");
        assert_eq!(refused(headers(&[(header::ORIGIN, "http://127.0.0.1:8080")]), None).0, "origin_not_allowed", "no Host to match");
        assert_eq!(refused(headers(&[(header::HOST, "rebind.attacker.example"), (header::ORIGIN, "http://rebind.attacker.example")]), None).0, "host_not_allowed");
        let long = format!("{}.example", "a".repeat(500));
        assert!(refused(headers(&[(header::HOST, long.as_str())]), None).1.len() < 400, "a long Host is not quoted whole");
    }

    fn body_check(route: &Route, pairs: &[(header::HeaderName, &str)]) -> Result<(), String> {
        check_body_type(route, &headers(pairs)).map_err(|e| e.to_string())
    }

    #[test]
    fn json_routes_take_json_only() {
        let chat = Route::post("/v1/chat/completions", Scope::Infer, BodyKind::Json);
        for ok in ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8", "application/merge-patch+json"] {
            assert_eq!(body_check(&chat, &[(header::CONTENT_TYPE, ok)]), Ok(()), "{ok}");
        }
        for bad in ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=latin1", "json", ""] {
            let err = body_check(&chat, &[(header::CONTENT_TYPE, bad)]).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(err.contains("POST /v1/chat/completions") && err.contains("application/json") && err.contains(&format!("`{bad}`")), "{err}");
        }
        let err = body_check(&chat, &[]).err().unwrap_or_else(|| panic!("accepted"));
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn the_upload_takes_multipart_only_and_bodiless_routes_take_no_form() {
        let upload = Route::post("/v1/files", Scope::Ingest, BodyKind::Multipart);
        assert_eq!(body_check(&upload, &[(header::CONTENT_TYPE, "multipart/form-data; boundary=abc")]), Ok(()));
        assert!(body_check(&upload, &[(header::CONTENT_TYPE, "application/json")]).is_err_and(|e| e.contains("multipart/form-data")));
        let cancel = Route::post("/v1/vector_stores/{id}/file_batches/{batch_id}/cancel", Scope::Ingest, BodyKind::None);
        assert_eq!(body_check(&cancel, &[]), Ok(()));
        assert_eq!(body_check(&cancel, &[(header::CONTENT_LENGTH, "0"), (header::CONTENT_TYPE, "application/x-www-form-urlencoded")]), Ok(()));
        assert_eq!(body_check(&cancel, &[(header::CONTENT_LENGTH, "2"), (header::CONTENT_TYPE, "application/json")]), Ok(()));
        assert!(body_check(&cancel, &[(header::CONTENT_LENGTH, "9"), (header::CONTENT_TYPE, "application/x-www-form-urlencoded")]).is_err());
        assert!(body_check(&cancel, &[(header::TRANSFER_ENCODING, "chunked"), (header::CONTENT_TYPE, "multipart/form-data; boundary=x")]).is_err());
        let get = Route::get("/v1/models", Scope::Read);
        assert_eq!(body_check(&get, &[(header::CONTENT_TYPE, "text/plain")]), Ok(()), "no body, nothing to refuse");
    }
}
