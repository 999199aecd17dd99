//! The OpenAI-compatible client: one streamed request in, one [`RequestRecord`] out.
//!
//! Every request streams (`stream: true`) with `stream_options: {include_usage,
//! continuous_usage_stats}`, so token timings come from the chunks' arrival times and token counts
//! from the server's own `usage` (vLLM, hearth and llama.cpp's server send it; without it every
//! chunk with text counts as one token). With a fixed output length the request also carries
//! `max_tokens`, `max_completion_tokens` and `ignore_eos: true`, so the server cannot stop early.
//! Besides the record, a request yields every gap between consecutive output tokens (µs; tokens
//! of one chunk after its first have a gap of 0), which the profile pools ([`super::stats::Gaps`]).
//! Failures are classified into a small set of kinds: `connect`, `timeout`, `http_<status>`,
//! `stream` (the body broke), `server_error` (an error event inside the stream), `incomplete`
//! (the stream ended before `[DONE]` or a finish reason), `decode` (a chunk was not JSON).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use crate::sse_parser::SseParser;
use crate::target::Target;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::data::Prompt;
use super::{BenchError, Endpoint};

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The stream finished.
    Ok,
    /// It failed; `kind` is one of the kinds in the module header.
    Error {
        /// Short class of failure, used to count errors by kind.
        kind: String,
        /// The detail (status body, I/O error).
        message: String,
    },
    /// `--max-seconds` ran out while it was in flight.
    Cancelled,
}

/// One request as measured; times are seconds since the profile started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Position in the profile's request sequence.
    pub index: u64,
    /// When the profile's schedule wanted it sent.
    pub scheduled_s: f64,
    /// When it was sent.
    pub start_s: f64,
    /// When the response ended (or the request failed or was cancelled).
    pub end_s: f64,
    /// When the first output token arrived.
    pub first_token_s: Option<f64>,
    /// When the last output token arrived.
    pub last_token_s: Option<f64>,
    /// Prompt tokens: the server's count when it gave one, otherwise the data set's.
    pub prompt_tokens: u64,
    /// Output tokens received.
    pub output_tokens: u64,
    /// The longest gap between two consecutive output tokens, ms (needs two tokens).
    #[serde(default)]
    pub max_gap_ms: Option<f64>,
    /// Success, failure or cancellation.
    pub outcome: Outcome,
}

impl RequestRecord {
    /// Time to first token, ms.
    pub fn ttft_ms(&self) -> Option<f64> {
        Some((self.first_token_s? - self.start_s) * 1000.0)
    }

    /// Inter-token latency, ms (needs two tokens).
    pub fn itl_ms(&self) -> Option<f64> {
        (self.output_tokens > 1).then_some(())?;
        Some((self.last_token_s? - self.first_token_s?) * 1000.0 / (self.output_tokens - 1) as f64)
    }

    /// Time per output token including the first token's wait, ms.
    pub fn tpot_ms(&self) -> Option<f64> {
        (self.output_tokens > 0).then(|| self.e2e_ms() / self.output_tokens as f64)
    }

    /// End-to-end latency, ms.
    pub fn e2e_ms(&self) -> f64 {
        (self.end_s - self.start_s) * 1000.0
    }
}

/// A configured client for one target and model.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The server and its bearer token.
    target: Target,
    endpoint: Endpoint,
    model: String,
    /// Sampling temperature sent with every request; `None` leaves the server's default.
    temperature: Option<f64>,
}

/// Most gaps kept for one request (4 MiB); a longer stream's later gaps are not recorded.
const MAX_GAPS_PER_REQUEST: usize = 1 << 20;

/// What the stream told us, before it becomes a record.
#[derive(Debug, Default)]
struct Progress {
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    output_tokens: u64,
    /// Gap before each output token after the first, µs.
    gaps_us: Vec<u32>,
    usage_output: Option<u64>,
    usage_prompt: Option<u64>,
    finished: bool,
}

/// How long an idle connection is kept for reuse: below the common 5 s server keep-alive.
const IDLE_CONNECTION_LIFETIME: Duration = Duration::from_secs(2);

impl Client {
    /// A client for `target`.
    pub fn new(target: &Target, endpoint: Endpoint, model: String, timeout: Duration) -> Result<Client, BenchError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(1024)
            // Servers close idle keep-alive connections (llama.cpp's server and uvicorn after 5 s);
            // a request sent on one just as it closes fails with "error sending request", which
            // is the client's fault, not the server's. Dropping idle connections sooner avoids it.
            .pool_idle_timeout(IDLE_CONNECTION_LIFETIME)
            .build()
            .map_err(|e| BenchError::Http(format!("could not build the HTTP client: {e}")))?;
        Ok(Client { http, target: target.clone(), endpoint, model, temperature: None })
    }

    /// Send this sampling temperature with every request (0: greedy, as raw benchmarks decode).
    pub fn with_temperature(mut self, temperature: Option<f64>) -> Client {
        self.temperature = temperature;
        self
    }

    /// The target's base URL.
    pub fn base(&self) -> &str {
        self.target.base()
    }

    /// The model requests name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The underlying HTTP client (for `/tokenize`, `/v1/models`, `/metrics`).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request builder with the API key, if any.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.target.request(&self.http, reqwest::Method::POST, path)
    }

    /// The JSON body for one prompt.
    fn body(&self, prompt: &Prompt) -> Value {
        let mut body = json!({
            "model": self.model,
            "stream": true,
            "stream_options": {"include_usage": true, "continuous_usage_stats": true},
        });
        match self.endpoint {
            Endpoint::Chat => body["messages"] = json!([{"role": "user", "content": prompt.text}]),
            Endpoint::Completions => body["prompt"] = json!(prompt.text),
        }
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = prompt.output_tokens {
            body["max_tokens"] = json!(n);
            body["max_completion_tokens"] = json!(n);
            body["ignore_eos"] = json!(true);
        }
        body
    }

    /// Send one request and measure it: its record and its inter-token gaps in µs. `epoch` is
    /// the profile's start; `scheduled_s` is where the schedule put it.
    pub async fn send(&self, index: u64, prompt: &Prompt, epoch: Instant, scheduled_s: f64) -> (RequestRecord, Vec<u32>) {
        let start = Instant::now();
        let mut progress = Progress::default();
        let outcome = match self.stream(prompt, &mut progress).await {
            Ok(()) if progress.finished => Outcome::Ok,
            Ok(()) => Outcome::Error { kind: "incomplete".into(), message: "the stream ended before a finish reason or [DONE]".into() },
            Err((kind, message)) => Outcome::Error { kind, message },
        };
        let end = Instant::now();
        let at = |t: Instant| t.duration_since(epoch).as_secs_f64();
        let record = RequestRecord {
            index,
            scheduled_s,
            start_s: at(start),
            end_s: at(end),
            first_token_s: progress.first_token.map(at),
            last_token_s: progress.last_token.map(at),
            prompt_tokens: progress.usage_prompt.unwrap_or(prompt.prompt_tokens),
            output_tokens: progress.usage_output.unwrap_or(progress.output_tokens),
            max_gap_ms: progress.gaps_us.iter().max().map(|&us| f64::from(us) / 1000.0),
            outcome,
        };
        (record, progress.gaps_us)
    }

    async fn stream(&self, prompt: &Prompt, progress: &mut Progress) -> Result<(), (String, String)> {
        let send = || self.post(self.endpoint.path()).json(&self.body(prompt)).send();
        let response = match send().await {
            // A pooled connection the server closed just as it was reused (llama.cpp's server closes
            // some after a streamed response): the request never reached the server, so send it
            // once more, on a new connection, rather than count a server error.
            Err(e) if e.is_request() && !e.is_timeout() && !e.is_connect() => send().await,
            sent => sent,
        }
        .map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            let kind = if status.is_client_error() || status.is_server_error() { status_kind(status.as_u16()) } else { format!("http_{}", status.as_u16()) };
            let text = response.text().await.unwrap_or_default();
            return Err((kind, format!("{status}: {}", truncate(&text, 300))));
        }
        let mut body = response.bytes_stream();
        let mut parser = SseParser::default();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(classify)?;
            let now = Instant::now();
            for data in parser.push(&chunk) {
                if self.event(&data, now, progress)? {
                    return Ok(());
                }
            }
        }
        if let Some(data) = parser.finish() {
            self.event(&data, Instant::now(), progress)?;
        }
        Ok(())
    }

    /// Apply one event's data; `Ok(true)` at `[DONE]`.
    fn event(&self, data: &str, now: Instant, progress: &mut Progress) -> Result<bool, (String, String)> {
        if data.trim() == "[DONE]" {
            progress.finished = true;
            return Ok(true);
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| ("decode".to_owned(), format!("a stream chunk is not JSON ({e}): {}", truncate(data, 200))))?;
        if let Some(error) = chunk.get("error") {
            return Err(("server_error".into(), truncate(&error.to_string(), 300)));
        }
        let choice = chunk.get("choices").and_then(|c| c.get(0));
        let text = choice.and_then(|c| match self.endpoint {
            Endpoint::Chat => c.pointer("/delta/content").or_else(|| c.pointer("/delta/reasoning_content")),
            Endpoint::Completions => c.get("text"),
        });
        let has_text = text.and_then(Value::as_str).is_some_and(|t| !t.is_empty());
        let usage = chunk.get("usage").filter(|u| !u.is_null());
        let usage_output = usage.and_then(|u| u.get("completion_tokens")).and_then(Value::as_u64);
        if let Some(p) = usage.and_then(|u| u.get("prompt_tokens")).and_then(Value::as_u64) {
            progress.usage_prompt = Some(p);
        }
        // With continuous usage, the token count is the server's; otherwise one per text chunk.
        let new_tokens = match usage_output {
            Some(n) if choice.is_some() => n.saturating_sub(progress.output_tokens),
            _ => u64::from(has_text),
        };
        if new_tokens > 0 {
            progress.first_token.get_or_insert(now);
            let room = MAX_GAPS_PER_REQUEST.saturating_sub(progress.gaps_us.len());
            if let Some(last) = progress.last_token.filter(|_| room > 0) {
                progress.gaps_us.push(u32::try_from(now.duration_since(last).as_micros()).unwrap_or(u32::MAX));
            }
            // The chunk's other tokens arrived with its first.
            let together = usize::try_from(new_tokens - 1).unwrap_or(usize::MAX);
            let room = MAX_GAPS_PER_REQUEST.saturating_sub(progress.gaps_us.len());
            progress.gaps_us.extend(std::iter::repeat_n(0, together.min(room)));
            progress.last_token = Some(now);
            progress.output_tokens += new_tokens;
        }
        if let Some(n) = usage_output {
            progress.usage_output = Some(n);
        }
        if choice.and_then(|c| c.get("finish_reason")).is_some_and(|r| !r.is_null()) {
            progress.finished = true;
        }
        Ok(false)
    }
}

/// `http_<status>` for the statuses a bench meets; other 4xx and 5xx grouped.
fn status_kind(status: u16) -> String {
    match status {
        400 | 401 | 403 | 404 | 408 | 413 | 422 | 429 | 500 | 502 | 503 | 504 => format!("http_{status}"),
        400..=499 => "http_4xx".into(),
        _ => "http_5xx".into(),
    }
}

fn classify(e: reqwest::Error) -> (String, String) {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "stream"
    } else {
        "request"
    };
    (kind.into(), format!("{e}"))
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test fails loudly on the first unexpected error")]
mod tests {
    use super::*;
    use crate::target::{normalize_base, TargetArgs};

    fn client(endpoint: Endpoint) -> Client {
        let target = Target::new(&TargetArgs { target: Some("http://127.0.0.1:9/v1/".into()), api_key: None });
        Client::new(&target, endpoint, "m".into(), Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn base_urls_are_normalized() {
        assert_eq!(normalize_base("http://h:1/v1/"), "http://h:1");
        assert_eq!(normalize_base("http://h:1"), "http://h:1");
        assert_eq!(client(Endpoint::Chat).base(), "http://127.0.0.1:9");
    }

    #[test]
    fn continuous_usage_counts_tokens_and_done_finishes() {
        let c = client(Endpoint::Chat);
        let mut p = Progress::default();
        let t0 = Instant::now();
        let chunk = |content: &str, n: u64| json!({"choices": [{"delta": {"content": content}, "finish_reason": null}], "usage": {"prompt_tokens": 7, "completion_tokens": n}}).to_string();
        assert!(!c.event(&chunk("", 0), t0, &mut p).unwrap());
        assert!(p.first_token.is_none());
        c.event(&chunk("ab", 2), t0 + Duration::from_millis(5), &mut p).unwrap();
        c.event(&chunk("c", 3), t0 + Duration::from_millis(9), &mut p).unwrap();
        c.event(&json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}).to_string(), t0, &mut p).unwrap();
        assert_eq!((p.output_tokens, p.usage_output, p.usage_prompt), (3, Some(3), Some(7)));
        assert_eq!(p.first_token, Some(t0 + Duration::from_millis(5)));
        assert_eq!(p.last_token, Some(t0 + Duration::from_millis(9)));
        // Two tokens arrived together (a gap of 0 between them), the third 4 ms later.
        assert_eq!(p.gaps_us, vec![0, 4000]);
        assert!(c.event("[DONE]", t0, &mut p).unwrap());
        assert!(p.finished);
    }

    #[test]
    fn every_gap_is_kept_and_they_add_up_to_the_decode_span() {
        let c = client(Endpoint::Chat);
        let mut p = Progress::default();
        let t0 = Instant::now();
        let chunk = |n: u64| json!({"choices": [{"delta": {"content": "x"}, "finish_reason": null}], "usage": {"prompt_tokens": 1, "completion_tokens": n}}).to_string();
        // Tokens 1..=10 every 10 ms, one 300 ms stall before token 6, three tokens at once at the end.
        let mut at = t0;
        for n in 1..=10 {
            at += Duration::from_millis(if n == 1 { 0 } else if n == 6 { 300 } else { 10 });
            c.event(&chunk(n), at, &mut p).unwrap();
        }
        at += Duration::from_millis(10);
        c.event(&chunk(13), at, &mut p).unwrap();
        assert_eq!(p.gaps_us.len() as u64, p.output_tokens - 1);
        assert_eq!(p.gaps_us.iter().map(|&g| u64::from(g)).sum::<u64>(), (at - t0).as_micros() as u64);
        assert_eq!(p.gaps_us.iter().max(), Some(&300_000));
        assert_eq!(&p.gaps_us[p.gaps_us.len() - 3..], [10_000, 0, 0]);
    }

    #[test]
    fn without_usage_each_text_chunk_is_a_token() {
        let c = client(Endpoint::Completions);
        let mut p = Progress::default();
        for text in ["a", "", "b"] {
            c.event(&json!({"choices": [{"text": text, "finish_reason": null}]}).to_string(), Instant::now(), &mut p).unwrap();
        }
        c.event(&json!({"choices": [{"text": "", "finish_reason": "length"}]}).to_string(), Instant::now(), &mut p).unwrap();
        assert_eq!(p.output_tokens, 2);
        assert!(p.finished);
    }

    #[test]
    fn error_events_and_bad_json_are_classified() {
        let c = client(Endpoint::Chat);
        let mut p = Progress::default();
        assert_eq!(c.event(r#"{"error": {"message": "boom"}}"#, Instant::now(), &mut p).unwrap_err().0, "server_error");
        assert_eq!(c.event("not json", Instant::now(), &mut p).unwrap_err().0, "decode");
        assert_eq!(status_kind(429), "http_429");
        assert_eq!(status_kind(418), "http_4xx");
    }

    #[test]
    fn fixed_output_length_asks_the_server_not_to_stop() {
        let prompt = Prompt { text: "hi".into(), output_tokens: Some(5), prompt_tokens: 1 };
        let body = client(Endpoint::Chat).body(&prompt);
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["ignore_eos"], true);
        assert_eq!(body["messages"][0]["content"], "hi");
        let open = Prompt { output_tokens: None, ..prompt };
        assert!(client(Endpoint::Completions).body(&open).get("ignore_eos").is_none());
        assert!(body.get("temperature").is_none());
        assert_eq!(client(Endpoint::Chat).with_temperature(Some(0.0)).body(&open)["temperature"], 0.0);
    }
}
