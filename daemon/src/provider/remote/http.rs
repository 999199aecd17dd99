//! The upstream over HTTP: one `reqwest` client per remote model, the retry policy, the readiness
//! probe, and [`UpstreamError`], which says which upstream failed and how.
//!
//! Retries are for failures that cannot have started any work upstream and come before hearth
//! has sent its client anything: a connection that could not be made, and a 503 (the upstream is
//! loading or shedding load). Each retry waits `retry_backoff`, doubled every time, and the
//! whole exchange up to the upstream's response head is bounded by `request_timeout`. Once the
//! head has arrived nothing is retried. The API key lives only in this client's default headers,
//! marked sensitive; redirects are not followed (they would carry it elsewhere).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use super::wire;
use crate::fault::{ServiceError, UpstreamFault};
use super::RemoteConfig;

/// Longest wait for an answer to the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes read of an error response or a `/models` list.
const SMALL_BODY_LIMIT: usize = 1 << 20;

/// Why a request to an upstream failed. Its message names the model and the upstream's URL.
#[derive(Debug, thiserror::Error)]
#[error("upstream '{model}' ({url}) {failure}")]
pub struct UpstreamError {
    /// The model's name at hearth.
    pub model: String,
    /// The upstream's base URL.
    pub url: String,
    /// What went wrong.
    pub failure: Failure,
}

/// How an upstream failed, and so which status hearth answers with.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No connection (refused, DNS, unreachable network, connect timeout), retries included: 503.
    #[error("is unreachable: {0}")]
    Unreachable(String),
    /// It answered 503 (loading, overloaded), retries included: 503.
    #[error("is unavailable (HTTP 503): {0}")]
    Unavailable(String),
    /// No response head within `request_timeout` (or the probe's limit): 504.
    #[error("did not answer within {0} ms")]
    Timeout(u128),
    /// Silent for `read_timeout` in the middle of a response: 504.
    #[error("sent nothing for {0} ms in the middle of a response")]
    Stalled(u128),
    /// A 5xx, a refused credential, a broken stream, an answer hearth cannot read: 502.
    #[error("{0}")]
    Failed(String),
    /// It refused the request for a reason that is the client's (400, 413, 422, 429): its status
    /// and message are passed through.
    #[error("rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String, param: Option<String> },
}

impl UpstreamError {
    /// The HTTP status hearth answers with.
    pub fn status(&self) -> u16 {
        match &self.failure {
            Failure::Unreachable(_) | Failure::Unavailable(_) => 503,
            Failure::Timeout(_) | Failure::Stalled(_) => 504,
            Failure::Failed(_) => 502,
            Failure::Rejected { status, .. } => *status,
        }
    }

    /// OpenAI's `type`, `param` and hearth's `code` for the error body.
    pub fn kind(&self) -> (&'static str, Option<&str>, &'static str) {
        match &self.failure {
            Failure::Unreachable(_) => ("service_unavailable", None, "upstream_unreachable"),
            Failure::Unavailable(_) => ("service_unavailable", None, "upstream_unavailable"),
            Failure::Timeout(_) | Failure::Stalled(_) => ("server_error", None, "upstream_timeout"),
            Failure::Failed(_) => ("server_error", None, "upstream_error"),
            Failure::Rejected { status: 429, param, .. } => ("rate_limit_error", param.as_deref(), "upstream_rejected"),
            Failure::Rejected { param, .. } => ("invalid_request_error", param.as_deref(), "upstream_rejected"),
        }
    }
}

impl From<UpstreamError> for ServiceError {
    fn from(e: UpstreamError) -> Self {
        let (error_type, param, code) = e.kind();
        let param = param.map(str::to_owned);
        ServiceError::Upstream(UpstreamFault { status: e.status(), error_type, param, code, message: e.to_string() })
    }
}

/// An upstream's HTTP client and policy.
#[derive(Debug)]
pub struct Upstream {
    model: String,
    base_url: String,
    http: reqwest::Client,
    request_timeout: Duration,
    read_timeout: Duration,
    max_retries: u32,
    retry_backoff: Duration,
}

impl Upstream {
    /// The client, with the API key (if any) as a sensitive default header.
    pub fn new(config: &RemoteConfig) -> Result<Upstream, String> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| "the API key has characters that cannot be sent in an HTTP header".to_owned())?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = trusting(reqwest::Client::builder(), config.ca_file.as_deref())?
            .default_headers(headers)
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Upstream {
            model: config.name.clone(),
            base_url: config.base_url.clone(),
            http,
            request_timeout: config.request_timeout,
            read_timeout: config.read_timeout,
            max_retries: config.max_retries,
            retry_backoff: config.retry_backoff,
        })
    }

    /// The longest silence allowed once the upstream has answered.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// An error about this upstream.
    pub fn error(&self, failure: Failure) -> UpstreamError {
        UpstreamError { model: self.model.clone(), url: self.base_url.clone(), failure }
    }

    /// POST `body` to `path` and return a 2xx response, retrying as the module header says.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Response, UpstreamError> {
        let url = format!("{}{path}", self.base_url);
        let bytes = bytes::Bytes::from(serde_json::to_vec(body).map_err(|e| self.error(Failure::Failed(format!("cannot encode the request: {e}"))))?);
        let deadline = Instant::now() + self.request_timeout;
        let mut attempt = 0u32;
        loop {
            let request = self.http.post(&url).header(CONTENT_TYPE, "application/json").body(bytes.clone());
            let failure = match tokio::time::timeout_at(deadline, request.send()).await {
                Err(_) => return Err(self.error(Failure::Timeout(self.request_timeout.as_millis()))),
                Ok(Ok(response)) if response.status().is_success() => return Ok(response),
                Ok(Ok(response)) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    Failure::Unavailable(read_error(response, deadline).await.0)
                }
                Ok(Ok(response)) => return Err(self.error(status_failure(response, deadline).await)),
                Ok(Err(e)) if e.is_connect() => Failure::Unreachable(chain(&e)),
                Ok(Err(e)) => return Err(self.error(Failure::Failed(format!("the request failed: {}", chain(&e))))),
            };
            let backoff = self.retry_backoff.saturating_mul(1u32 << attempt.min(16));
            if attempt >= self.max_retries || Instant::now() + backoff >= deadline {
                return Err(self.error(failure));
            }
            attempt += 1;
            tracing::warn!(model = %self.model, url = %self.base_url, attempt, error = %failure, "Upstream request failed; retrying.");
            tokio::time::sleep(backoff).await;
        }
    }

    /// Read a whole 2xx body of at most `limit` bytes, each piece within `read_timeout`.
    pub async fn read_body(&self, response: Response, limit: usize) -> Result<Vec<u8>, UpstreamError> {
        read_limited(response, limit, self.read_timeout).await.map_err(|e| {
            self.error(match e {
                ReadError::Stalled => Failure::Stalled(self.read_timeout.as_millis()),
                ReadError::TooLarge => Failure::Failed(format!("sent a response larger than {limit} bytes")),
                ReadError::Broken(reason) => Failure::Failed(format!("broke off its response: {reason}")),
            })
        })
    }

    /// `GET {base_url}/models`: Ok with the `max_model_len` it reports for `remote_model` (vLLM
    /// and hearth report one), or why the upstream cannot serve it now.
    pub async fn probe(&self, remote_model: &str) -> Result<Option<u32>, UpstreamError> {
        let timeout = self.request_timeout.min(PROBE_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let response = match tokio::time::timeout_at(deadline, self.http.get(format!("{}/models", self.base_url)).send()).await {
            Err(_) => return Err(self.error(Failure::Timeout(timeout.as_millis()))),
            Ok(Err(e)) if e.is_connect() => return Err(self.error(Failure::Unreachable(chain(&e)))),
            Ok(Err(e)) => return Err(self.error(Failure::Failed(format!("GET /models failed: {}", chain(&e))))),
            Ok(Ok(r)) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                return Err(self.error(Failure::Unavailable(read_error(r, deadline).await.0)))
            }
            Ok(Ok(r)) if !r.status().is_success() => {
                let status = r.status().as_u16();
                let (message, _) = read_error(r, deadline).await;
                return Err(self.error(Failure::Failed(format!("answered GET /models with HTTP {status}: {message}{}", credentials_hint(status)))));
            }
            Ok(Ok(r)) => r,
        };
        let body = match tokio::time::timeout_at(deadline, read_limited(response, SMALL_BODY_LIMIT, timeout)).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) | Err(_) => return Err(self.error(Failure::Failed("broke off its GET /models answer".into()))),
        };
        let list: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let models = list["data"].as_array().ok_or_else(|| self.error(Failure::Failed("answered GET /models without a `data` list".into())))?;
        match models.iter().find(|m| m["id"].as_str() == Some(remote_model)) {
            Some(entry) => Ok(entry["max_model_len"].as_u64().and_then(|n| u32::try_from(n).ok())),
            None => {
                let ids: Vec<&str> = models.iter().filter_map(|m| m["id"].as_str()).collect();
                Err(self.error(Failure::Failed(format!("does not serve the model `{remote_model}`; its GET /models lists {ids:?}"))))
            }
        }
    }
}

/// The failure for a non-2xx, non-503 response.
async fn status_failure(response: Response, deadline: Instant) -> Failure {
    let status = response.status().as_u16();
    let (message, param) = read_error(response, deadline).await;
    match status {
        400 | 413 | 422 | 429 => Failure::Rejected { status, message, param },
        _ => Failure::Failed(format!("failed with HTTP {status}: {message}{}", credentials_hint(status))),
    }
}

fn credentials_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (the upstream refused hearth's credentials: check api_key_file or api_key_env)",
        _ => "",
    }
}

/// The message and `param` of an error response, read within the deadline.
async fn read_error(response: Response, deadline: Instant) -> (String, Option<String>) {
    let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    match read_limited(response, SMALL_BODY_LIMIT, wait).await {
        Ok(body) => wire::error_body(&body),
        Err(_) => ("(the error body could not be read)".into(), None),
    }
}

enum ReadError {
    Stalled,
    TooLarge,
    Broken(String),
}

async fn read_limited(mut response: Response, limit: usize, idle: Duration) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(idle, response.chunk()).await {
            Err(_) => return Err(ReadError::Stalled),
            Ok(Err(e)) => return Err(ReadError::Broken(chain(&e))),
            Ok(Ok(None)) => return Ok(out),
            Ok(Ok(Some(piece))) if out.len() + piece.len() > limit => return Err(ReadError::TooLarge),
            Ok(Ok(Some(piece))) => out.extend_from_slice(&piece),
        }
    }
}

/// `builder` trusting the CA certificates of the PEM file `ca_file` besides the system's roots
/// (rustls with the platform's certificate store; `SSL_CERT_FILE` overrides that store).
fn trusting(builder: reqwest::ClientBuilder, ca_file: Option<&std::path::Path>) -> Result<reqwest::ClientBuilder, String> {
    let Some(path) = ca_file else { return Ok(builder) };
    let pem = std::fs::read(path).map_err(|e| format!("ca_file {} cannot be read: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("ca_file {} is not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("ca_file {} holds no PEM certificate", path.display()));
    }
    Ok(certs.into_iter().fold(builder, reqwest::ClientBuilder::add_root_certificate))
}

/// An error's causes, outermost first, without the request URL that reqwest's own message
/// repeats and without a cause that the one before already spells out.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = if e.source().is_some() { e.source() } else { Some(e) };
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    let text = parts.join(": ");
    if text.contains("invalid peer certificate") {
        // rustls's words (UnknownIssuer, NotValidForName, Expired) for an operator who must act.
        return format!("{text} (the upstream's TLS certificate is not trusted: add its CA with ca_file in [[models]])");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn a_cause_chain_drops_the_outer_message_and_repeats() {
        let refused = E("Connection refused (os error 111)", None);
        let tcp = E("tcp connect error: Connection refused (os error 111)", Some(Box::new(refused)));
        let outer = E("error sending request for url (http://h/v1/x)", Some(Box::new(E("client error (Connect)", Some(Box::new(tcp))))));
        assert_eq!(chain(&outer), "client error (Connect): tcp connect error: Connection refused (os error 111)");
        assert_eq!(chain(&E("alone", None)), "alone");
    }

    #[test]
    fn statuses_follow_the_failure() {
        let e = |failure| UpstreamError { model: "m".into(), url: "http://u/v1".into(), failure };
        assert_eq!(e(Failure::Unreachable("x".into())).status(), 503);
        assert_eq!(e(Failure::Unavailable("x".into())).status(), 503);
        assert_eq!(e(Failure::Timeout(5)).status(), 504);
        assert_eq!(e(Failure::Stalled(5)).status(), 504);
        assert_eq!(e(Failure::Failed("x".into())).status(), 502);
        let rejected = e(Failure::Rejected { status: 400, message: "too long".into(), param: Some("messages".into()) });
        assert_eq!((rejected.status(), rejected.kind()), (400, ("invalid_request_error", Some("messages"), "upstream_rejected")));
        assert_eq!(e(Failure::Timeout(1500)).to_string(), "upstream 'm' (http://u/v1) did not answer within 1500 ms");
    }
}
