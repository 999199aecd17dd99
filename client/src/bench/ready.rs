//! Waiting for the target to load its models before the first profile.
//!
//! A server that has just started may already accept connections while it loads: hearth and
//! llama.cpp's server answer 503 until their models are ready. Requests sent meanwhile would fail
//! at once, and a closed-loop profile would record thousands of errors and start its clock early,
//! so the bench asks `GET /v1/models` every `POLL` until the answer is anything but a 503, for at
//! most `--wait-ready` seconds. That answer also names the model when `--model` is not given. A
//! refused connection is not waited for: a wrong port should fail at once, not after a minute.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::BenchError;
use crate::target::Target;

/// Time between two polls.
const POLL: Duration = Duration::from_millis(250);

/// The target's `/v1/models` answer once it no longer answers 503: its status and JSON body
/// (`None` when the body is not JSON, as from a server without that route).
pub async fn models_when_ready(http: &reqwest::Client, target: &Target, wait: Duration) -> Result<(StatusCode, Option<Value>), BenchError> {
    let url = target.url("/v1/models");
    let base = target.base();
    let started = Instant::now();
    let mut told = false;
    loop {
        let request = target.request(http, reqwest::Method::GET, "/v1/models");
        let response = request.send().await.map_err(|e| BenchError::Http(format!("could not reach {url}: {e}")))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status != StatusCode::SERVICE_UNAVAILABLE {
            return Ok((status, serde_json::from_str(&text).ok()));
        }
        if started.elapsed() >= wait {
            let detail: String = text.chars().take(300).collect();
            return Err(BenchError::Http(format!("{url} still answered {status} after {} s (--wait-ready): {detail}", wait.as_secs_f64())));
        }
        if !told {
            eprintln!("{base} answers {status}: waiting up to {} s for it to load (--wait-ready)", wait.as_secs_f64());
            told = true;
        }
        tokio::time::sleep(POLL).await;
    }
}
