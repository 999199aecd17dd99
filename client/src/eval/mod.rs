//! `hearth eval`: offline evaluation of retrieval and answers over a vector store, the RAGAS /
//! Llama Stack eval idea, against a running hearth (or any server with the same API).
//!
//! Each line of the dataset is `{"question", "answer"?, "file"?, "page"?, "pages"?}`. For each
//! question hearth's search ranks chunks (hybrid mode, `-k` results) and the Responses API answers
//! with `file_search`. Retrieval is scored against the gold file/pages ([`metrics`]: hit rate@k,
//! MRR, nDCG@k, context recall); the answer is scored for similarity to the gold answer (cosine of
//! the embedding model's vectors) and for faithfulness: each claim of the answer is put to a judge
//! model with the retrieved context, and the share it calls supported is the score. A table goes
//! to the terminal, with a progress bar while it runs; `--json` prints every score instead.
//!
//! `--compare-modes` scores retrieval alone in each search mode instead ([`compare`]).
//!
//! Exit status: 0 after a run, 1 when the target cannot be used, 2 for a bad dataset or arguments.

mod compare;
mod metrics;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::{json, Value};

use metrics::{claims, cosine, score_retrieval, Location, Mean};

use crate::target::{Target, TargetArgs};

/// `hearth eval` arguments.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The vector store to evaluate: its id or its name.
    #[arg(long)]
    vector_store: String,
    /// JSON Lines: {"question", "answer"?, "file"?, "page"?, "pages"?} per line.
    #[arg(long)]
    dataset: PathBuf,
    /// The hearth server (`--target`) and its bearer token (`--api-key`).
    #[command(flatten)]
    pub target: TargetArgs,
    /// Chat model that answers.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// Model that judges faithfulness (default: --model).
    #[arg(long)]
    judge_model: Option<String>,
    /// Embedding model for answer similarity.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    embedding_model: String,
    /// Results retrieved per question.
    #[arg(short, long, default_value_t = 5)]
    k: usize,
    /// Print every score as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Compare retrieval in each search mode (vector, keyword, hybrid) instead of answering.
    #[arg(long)]
    compare_modes: bool,
}

/// One dataset line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Example {
    question: String,
    answer: Option<String>,
    file: Option<String>,
    page: Option<u32>,
    #[serde(default)]
    pages: Vec<u32>,
}

impl Example {
    fn gold(&self) -> Vec<Location> {
        let mut pages: Vec<u32> = self.pages.clone();
        pages.extend(self.page);
        if pages.is_empty() {
            return self.file.iter().map(|f| Location { file: Some(f.clone()), page: None }).collect();
        }
        pages.into_iter().map(|p| Location { file: self.file.clone(), page: Some(p) }).collect()
    }
}

/// Run `hearth eval`.
pub fn main(args: EvalArgs) -> ExitCode {
    let examples = match read_dataset(&args.dataset) {
        Ok(e) => e,
        Err(message) => {
            eprintln!("hearth eval: {message}");
            return ExitCode::from(2);
        }
    };
    let Some(report) = crate::runtime::block_on("hearth eval", run(&args, &examples)) else {
        return ExitCode::FAILURE;
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else if args.compare_modes {
        compare::print_table(&report);
    } else {
        print_table(&report);
    }
    ExitCode::SUCCESS
}

fn read_dataset(path: &PathBuf) -> Result<Vec<Example>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: Example = serde_json::from_str(line).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        if e.question.trim().is_empty() {
            return Err(format!("{} line {}: the question is empty", path.display(), i + 1));
        }
        out.push(e);
    }
    if out.is_empty() {
        return Err(format!("{}: no questions", path.display()));
    }
    Ok(out)
}

/// The server under evaluation, with the run's arguments.
struct Evaluated<'a> {
    http: reqwest::Client,
    target: Target,
    args: &'a EvalArgs,
}

impl Evaluated<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let url = self.target.url(path);
        let mut req = self.target.request(&self.http, method, path);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let value: Value = resp.json().await.map_err(|e| format!("{url}: not JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url}: {status}: {}", value["error"]["message"].as_str().unwrap_or("no message")));
        }
        Ok(value)
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// The vector store id for an id or a name.
    async fn resolve_store(&self) -> Result<String, String> {
        let list = self.call(reqwest::Method::GET, "/v1/vector_stores?limit=10000", None).await?;
        list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["id"] == self.args.vector_store.as_str() || s["name"] == self.args.vector_store.as_str())
            .and_then(|s| s["id"].as_str().map(str::to_owned))
            .ok_or_else(|| format!("no vector store with the id or name {:?}", self.args.vector_store))
    }

    async fn embed(&self, texts: [&str; 2]) -> Result<(Vec<f32>, Vec<f32>), String> {
        let r = self.post("/v1/embeddings", &json!({"model": self.args.embedding_model, "input": texts})).await?;
        let vector = |i: usize| -> Vec<f32> {
            r["data"][i]["embedding"].as_array().into_iter().flatten().filter_map(Value::as_f64).map(|x| x as f32).collect()
        };
        Ok((vector(0), vector(1)))
    }

    /// The share of the answer's claims the judge calls supported by the context.
    async fn faithfulness(&self, answer: &str, context: &str) -> Result<Option<f64>, String> {
        let claims = claims(answer);
        if claims.is_empty() || context.trim().is_empty() {
            return Ok(None);
        }
        let judge = self.args.judge_model.as_deref().unwrap_or(&self.args.model);
        let mut supported = 0;
        for claim in &claims {
            let body = json!({"model": judge, "temperature": 0, "max_tokens": 3, "messages": [
                {"role": "system", "content": "You check whether a claim is supported by a context. Reply with one word: yes or no."},
                {"role": "user", "content": format!("Context:\n{context}\n\nClaim: {claim}\n\nIs the claim supported by the context?")},
            ]});
            let r = self.post("/v1/chat/completions", &body).await?;
            let verdict = r["choices"][0]["message"]["content"].as_str().unwrap_or_default().trim().to_lowercase();
            if verdict.starts_with("yes") {
                supported += 1;
            }
        }
        Ok(Some(f64::from(supported) / claims.len() as f64))
    }
}

async fn run(args: &EvalArgs, examples: &[Example]) -> Result<Value, String> {
    let target = Evaluated { http: reqwest::Client::new(), target: Target::new(&args.target), args };
    let store = target.resolve_store().await?;
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(examples.len() as u64) };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} questions  {elapsed_precise}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    if args.compare_modes {
        let report = compare::compare(&target, &store, examples, args.k, &|| bar.inc(1)).await;
        bar.finish_and_clear();
        return report;
    }
    let (mut hit, mut mrr, mut ndcg, mut recall, mut similarity, mut faithful) =
        (Mean::default(), Mean::default(), Mean::default(), Mean::default(), Mean::default(), Mean::default());
    let mut rows = Vec::new();
    for example in examples {
        let search = target
            .post(&format!("/v1/vector_stores/{store}/search"), &json!({"query": example.question, "max_num_results": args.k, "search_mode": "hybrid"}))
            .await?;
        let retrieved = retrieved(&search);
        let gold = example.gold();
        let retrieval = (!gold.is_empty()).then(|| score_retrieval(&retrieved, &gold, args.k));
        if let Some(s) = retrieval {
            hit.add(s.hit);
            mrr.add(s.reciprocal_rank);
            ndcg.add(s.ndcg);
            recall.add(s.context_recall);
        }
        let response = target
            .post("/v1/responses", &json!({
                "model": args.model, "input": example.question, "temperature": 0, "max_output_tokens": 128, "store": false,
                "tools": [{"type": "file_search", "vector_store_ids": [store], "max_num_results": args.k}],
                "include": ["file_search_call.results"],
            }))
            .await?;
        let answer = output_text(&response);
        let context: String = response["output"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["type"] == "file_search_call")
            .flat_map(|i| i["results"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["text"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("\n\n");
        let sim = match &example.answer {
            Some(reference) if !answer.trim().is_empty() => {
                let (a, b) = target.embed([&answer, reference]).await?;
                Some(cosine(&a, &b))
            }
            _ => None,
        };
        if let Some(s) = sim {
            similarity.add(s);
        }
        let faith = target.faithfulness(&answer, &context).await?;
        if let Some(f) = faith {
            faithful.add(f);
        }
        rows.push(json!({
            "question": example.question, "answer": answer, "retrieved": retrieved.iter().map(|(f, p)| json!({"file": f, "page": p})).collect::<Vec<_>>(),
            "hit": retrieval.map(|s| s.hit), "reciprocal_rank": retrieval.map(|s| s.reciprocal_rank), "ndcg": retrieval.map(|s| s.ndcg),
            "context_recall": retrieval.map(|s| s.context_recall), "answer_similarity": sim, "faithfulness": faith,
        }));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = |m: &Mean| json!({"mean": m.value(), "n": m.count});
    Ok(json!({
        "vector_store": store, "model": args.model, "k": args.k, "questions": examples.len(),
        "summary": {
            format!("hit_rate@{}", args.k): summary(&hit), "mrr": summary(&mrr), format!("ndcg@{}", args.k): summary(&ndcg),
            "context_recall": summary(&recall), "answer_similarity": summary(&similarity), "faithfulness": summary(&faithful),
        },
        "questions_detail": rows,
    }))
}

/// The `(file, page)` of each result of a vector store search, in rank order.
fn retrieved(search: &Value) -> Vec<(String, Option<u32>)> {
    search["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| (h["filename"].as_str().unwrap_or_default().to_owned(), h["page"].as_u64().map(|p| p as u32)))
        .collect()
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["text"].as_str().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("")
}

fn print_table(report: &Value) {
    println!("hearth eval: vector store {}, model {}, {} questions, k = {}", report["vector_store"].as_str().unwrap_or(""),
        report["model"].as_str().unwrap_or(""), report["questions"], report["k"]);
    println!("{:<20} {:>8} {:>6}", "metric", "mean", "n");
    if let Some(summary) = report["summary"].as_object() {
        let order = ["hit_rate@", "mrr", "ndcg@", "context_recall", "answer_similarity", "faithfulness"];
        for prefix in order {
            for (name, v) in summary.iter().filter(|(n, _)| n.starts_with(prefix)) {
                let mean = v["mean"].as_f64().map_or_else(|| "-".to_owned(), |m| format!("{m:.3}"));
                println!("{name:<20} {mean:>8} {:>6}", v["n"]);
            }
        }
    }
}
