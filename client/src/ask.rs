//! `hearth ask "question"`: one question answered from the documents, the way a user would ask it
//! over the API — `POST /v1/responses` with a `file_search` tool over vector stores (by default
//! `inbox`, the watched folder's store; hearth accepts a store's name where OpenAI wants its id),
//! streamed: the answer's text is printed as it arrives, then its citations as `file, page N`.
//!
//! The chat model defaults to the first one `/v1/models` lists as `chat` (hearth says which kind
//! each model is), else the first model. `--json` prints the final response object instead.
//! An `error` or `response.failed` event ends the command with exit 1 and the server's message.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{self, ApiError};
use crate::sse_parser::SseParser;
use crate::target::{Target, TargetArgs};

/// `hearth ask`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct AskArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The question.
    pub question: String,
    /// A vector store to search, by name or id; repeat for several.
    #[arg(long = "vector-store", value_name = "NAME", default_value = "inbox")]
    pub vector_stores: Vec<String>,
    /// The chat model; default: the first chat model the server lists.
    #[arg(long)]
    pub model: Option<String>,
    /// Most tokens of the answer; default: the server's (`[rag] max_output_tokens`).
    #[arg(long, value_name = "N")]
    pub max_output_tokens: Option<u32>,
    /// Print the final response object (JSON) instead of the streamed text and citations.
    #[arg(long)]
    pub json: bool,
}

/// A `file_citation` annotation, with hearth's `page`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citation {
    #[serde(default)]
    pub file_id: String,
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub page: Option<u64>,
}

impl Citation {
    /// `file, page N` (or the file alone where the server gives no page).
    pub fn line(&self) -> String {
        let file = if self.filename.is_empty() { &self.file_id } else { &self.filename };
        match self.page {
            Some(page) => format!("{file}, page {page}"),
            None => file.clone(),
        }
    }
}

/// What the stream gave.
#[derive(Debug, Default)]
struct Answer {
    text: String,
    citations: Vec<Citation>,
    response: Option<Value>,
}

/// Why a question got no answer.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the server lists no model to answer with (GET /v1/models is empty)")]
    NoModel,
    #[error("the answer failed: {0}")]
    Failed(String),
    #[error("the stream ended before response.completed")]
    Truncated,
}

/// Run `hearth ask`.
pub fn main(args: AskArgs) -> ExitCode {
    let target = Target::new(&args.target);
    match crate::runtime::block_on("hearth", run(&args, &target)) {
        Some(()) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}

async fn run(args: &AskArgs, target: &Target) -> Result<(), AskError> {
    let unreachable = |e: reqwest::Error| ApiError::Unreachable { url: target.url("/v1/responses"), reason: e.to_string() };
    // No overall timeout: an answer streams for as long as it takes; connecting must not hang.
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().map_err(unreachable)?;
    let model = match &args.model {
        Some(model) => model.clone(),
        None => default_model(target, &http).await?,
    };
    let mut body = json!({
        "model": model,
        "input": args.question,
        "tools": [{"type": "file_search", "vector_store_ids": args.vector_stores}],
        "stream": true,
    });
    if let Some(n) = args.max_output_tokens {
        body["max_output_tokens"] = json!(n);
    }
    let url = target.url("/v1/responses");
    let response = target.request(&http, reqwest::Method::POST, "/v1/responses").json(&body).send().await.map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        let bytes = response.bytes().await.map_err(unreachable)?;
        return Err(ApiError::Status { url, status: status.as_u16(), message: api::error_message(&bytes) }.into());
    }
    let answer = read_stream(response, !args.json).await?;
    if args.json {
        let object = answer.response.unwrap_or(Value::Null);
        println!("{}", serde_json::to_string_pretty(&object).unwrap_or_default());
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    if !answer.text.ends_with('\n') {
        let _ = writeln!(out);
    }
    let _ = writeln!(out);
    let lines = citation_lines(&answer.citations);
    if lines.is_empty() {
        let _ = writeln!(out, "Sources: none cited (no passage of {} was relevant enough)", args.vector_stores.join(", "));
    } else {
        let _ = writeln!(out, "Sources:");
        for (i, line) in lines.iter().enumerate() {
            let _ = writeln!(out, "  [{}] {line}", i + 1);
        }
    }
    Ok(())
}

/// The first chat model the server lists, else its first model.
async fn default_model(target: &Target, http: &reqwest::Client) -> Result<String, AskError> {
    let models: Vec<api::Model> = api::get::<ModelList>(target, http, "/v1/models").await?.data;
    models.iter().find(|m| m.kind() == Some("chat")).or(models.first()).map(|m| m.id.clone()).ok_or(AskError::NoModel)
}

#[derive(Debug, Deserialize)]
struct ModelList {
    data: Vec<api::Model>,
}

/// Read the Responses event stream: print text deltas as they come when `echo`, gather the
/// citations, keep the final response object.
async fn read_stream(response: reqwest::Response, echo: bool) -> Result<Answer, AskError> {
    let mut parser = SseParser::default();
    let mut answer = Answer::default();
    let mut bytes = response.bytes_stream();
    let mut stdout = std::io::stdout();
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.map_err(|e| ApiError::Unreachable { url: "the response stream".into(), reason: e.to_string() })?;
        for data in parser.push(&chunk) {
            let Ok(event) = serde_json::from_str::<Value>(&data) else { continue };
            match event["type"].as_str().unwrap_or_default() {
                "response.output_text.delta" => {
                    let delta = event["delta"].as_str().unwrap_or_default();
                    answer.text.push_str(delta);
                    if echo {
                        let _ = stdout.write_all(delta.as_bytes());
                        let _ = stdout.flush();
                    }
                }
                "response.output_text.annotation.added" => {
                    if let Ok(citation) = serde_json::from_value::<Citation>(event["annotation"].clone()) {
                        answer.citations.push(citation);
                    }
                }
                "response.completed" => {
                    answer.response = Some(event["response"].clone());
                    return Ok(answer);
                }
                "error" | "response.failed" => {
                    let message = event["message"].as_str().or(event["response"]["error"]["message"].as_str()).unwrap_or("no reason given");
                    return Err(AskError::Failed(message.to_owned()));
                }
                _ => {}
            }
        }
    }
    Err(AskError::Truncated)
}

/// One line per cited file and page, in order of first citation.
pub fn citation_lines(citations: &[Citation]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in citations.iter().map(Citation::line) {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_print_file_and_page_once_each() {
        let c = |file: &str, page: Option<u64>| Citation { file_id: "file-1".into(), filename: file.into(), page };
        let lines = citation_lines(&[c("guide.pdf", Some(3)), c("guide.pdf", Some(3)), c("guide.pdf", Some(1)), c("", None)]);
        assert_eq!(lines, ["guide.pdf, page 3", "guide.pdf, page 1", "file-1"]);
    }
}
