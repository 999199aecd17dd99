//! What the bench sends: synthetic prompts of a given token length, or prompts from a JSONL file.
//!
//! **Synthetic** (`synthetic:prompt_tokens=N,output_tokens=M[,prefix_tokens=P]`): each prompt is
//! a shared prefix of P tokens (the same for every request: RAG-shaped load that a prefix cache
//! can reuse) followed by N tokens of its own, drawn from a seeded generator so every request is
//! different and no cache hit is accidental. The words come from a list of common English words
//! that are each one token, with their leading space, in the byte-level BPE vocabularies of the
//! models this is for (SmolLM2, Llama 3, Qwen 2, GPT-2); so N words ≈ N tokens. When the target
//! has a `/tokenize` endpoint (vLLM's `{"count"}` or llama.cpp's `{"tokens"}` answer), every
//! prompt is trimmed or extended until the target's own count is exactly N (and P); hearth has
//! one too. Against a target without it the count is the approximation; the server's reported
//! `usage.prompt_tokens` (which also counts the chat template) goes into the records.
//! The output length is exact either way: requests carry `max_tokens` and `ignore_eos: true`.
//!
//! **File** (any other `--data`): JSON Lines, one prompt a line, either a string or an object
//! `{"prompt": "...", "output_tokens": 64}` (`text` is accepted for `prompt`; without
//! `output_tokens` the model stops where it likes).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::client::Client;
use super::BenchError;

/// Words that are one token each (with a leading space) in common byte-level BPE vocabularies.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this",
    "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were", "their", "one", "all",
    "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "time", "out",
    "up", "about", "into", "than", "them", "only", "other", "new", "some", "what", "could", "these", "two", "may", "first",
    "then", "do", "any", "like", "my", "now", "over", "such", "our", "man", "me", "even", "most", "made", "after", "also",
    "did", "many", "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down", "should",
    "because", "each", "just", "those", "people", "how", "too", "little", "state", "good", "very", "make", "world",
    "still", "own", "see", "men", "work", "long", "here", "get", "both", "between", "life", "being", "under", "never",
    "day", "same", "another", "know", "while", "last", "might", "us", "great", "old", "year", "off", "come", "since",
    "against", "go", "came", "right", "used", "take", "three", "water", "house", "light", "small", "river", "city",
];

/// One prompt to send.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The text: a user message for chat, the prompt for completions.
    pub text: String,
    /// Exact output length to ask for, if fixed.
    pub output_tokens: Option<u32>,
    /// Prompt tokens as the data set counts them (the server's count replaces it when given).
    pub prompt_tokens: u64,
}

/// Synthetic data shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Synthetic {
    /// Tokens of each request's own part of the prompt.
    pub prompt_tokens: u32,
    /// Output tokens per request.
    pub output_tokens: u32,
    /// Tokens of the prefix shared by all requests.
    pub prefix_tokens: u32,
}

/// `--data`: synthetic or a JSONL file.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSpec {
    /// `synthetic:prompt_tokens=N,output_tokens=M[,prefix_tokens=P]`.
    Synthetic(Synthetic),
    /// A JSONL file of prompts.
    File(PathBuf),
}

impl FromStr for DataSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some(rest) = s.strip_prefix("synthetic:") else {
            return Ok(DataSpec::File(PathBuf::from(s)));
        };
        let mut spec = Synthetic { prompt_tokens: 0, output_tokens: 0, prefix_tokens: 0 };
        for part in rest.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("`{part}` is not key=value"))?;
            let value: u32 = value.trim().parse().map_err(|_| format!("`{key}` must be a whole number, got `{value}`"))?;
            match key.trim() {
                "prompt_tokens" => spec.prompt_tokens = value,
                "output_tokens" => spec.output_tokens = value,
                "prefix_tokens" => spec.prefix_tokens = value,
                other => return Err(format!("unknown synthetic key `{other}`; expected prompt_tokens, output_tokens, prefix_tokens")),
            }
        }
        if spec.prompt_tokens == 0 || spec.output_tokens == 0 {
            return Err("synthetic data needs prompt_tokens and output_tokens, both at least 1".into());
        }
        Ok(DataSpec::Synthetic(spec))
    }
}

/// The prompts of a run, used in order and cycled when the run needs more.
#[derive(Debug)]
pub struct Dataset {
    prompts: Vec<Prompt>,
    /// How prompt lengths were obtained, for the report.
    pub token_counting: String,
}

impl Dataset {
    /// Build `count` prompts (at least one) for `spec`; synthetic prompts are sized with the
    /// target's `/tokenize` when it has one.
    pub async fn build(spec: &DataSpec, count: usize, seed: u64, client: &Client) -> Result<Dataset, BenchError> {
        match spec {
            DataSpec::File(path) => Ok(Dataset { prompts: read_jsonl(path)?, token_counting: "file prompts; counts from the server's usage".into() }),
            DataSpec::Synthetic(shape) => {
                let tokenizer = Tokenizer::probe(client).await;
                let mut rng = StdRng::seed_from_u64(seed);
                let prefix = match shape.prefix_tokens {
                    0 => String::new(),
                    n => tokenizer.fit(client, words(&mut rng, n as usize), n).await,
                };
                let mut prompts = Vec::with_capacity(count.max(1));
                for _ in 0..count.max(1) {
                    let own = tokenizer.fit(client, words(&mut rng, shape.prompt_tokens as usize), shape.prompt_tokens).await;
                    prompts.push(Prompt {
                        text: if prefix.is_empty() { own } else { format!("{prefix}{own}") },
                        output_tokens: Some(shape.output_tokens),
                        prompt_tokens: u64::from(shape.prompt_tokens + shape.prefix_tokens),
                    });
                }
                let token_counting = match tokenizer {
                    Tokenizer::Target => "exact, through the target's /tokenize".into(),
                    Tokenizer::Approximate => "approximate: one common English word per token (the target has no /tokenize)".into(),
                };
                Ok(Dataset { prompts, token_counting })
            }
        }
    }

    /// The `i`-th prompt (cycling).
    pub fn get(&self, i: u64) -> &Prompt {
        &self.prompts[(i % self.prompts.len() as u64) as usize]
    }
}

/// `n` random words, each with a leading space.
fn words(rng: &mut StdRng, n: usize) -> Vec<&'static str> {
    (0..n).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect()
}

fn join(words: &[&str]) -> String {
    words.iter().map(|w| format!(" {w}")).collect()
}

/// How synthetic prompts are sized.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tokenizer {
    /// The target's `/tokenize`.
    Target,
    /// One word per token.
    Approximate,
}

impl Tokenizer {
    async fn probe(client: &Client) -> Tokenizer {
        match count_tokens(client, " the").await {
            Some(_) => Tokenizer::Target,
            None => Tokenizer::Approximate,
        }
    }

    /// Adjust the prompt until the target counts exactly `want` tokens: whole words first, in
    /// proportion to the tokens a word takes in this vocabulary (one in byte-level BPE vocabularies,
    /// several in others), then single-token filler words (` a`) for the last few. A few rounds
    /// at most; the closest prompt stands if it does not converge.
    async fn fit(self, client: &Client, mut words: Vec<&'static str>, want: u32) -> String {
        let mut filler = 0usize;
        if self == Tokenizer::Target {
            let want = u64::from(want);
            for _ in 0..24 {
                let text = join_filled(&words, filler);
                let Some(have) = count_tokens(client, &text).await else { break };
                if have == want {
                    return text;
                }
                let per_word = (have as f64 / (words.len() + filler).max(1) as f64).max(1.0);
                if have > want {
                    let excess = (have - want) as usize;
                    if filler > 0 {
                        filler -= excess.min(filler);
                    } else {
                        let drop = ((excess as f64 / per_word).ceil() as usize).clamp(1, words.len().saturating_sub(1).max(1));
                        words.truncate(words.len().saturating_sub(drop).max(1));
                    }
                } else {
                    let missing = (want - have) as usize;
                    let more_words = (missing as f64 / per_word).floor() as usize;
                    if more_words >= 2 {
                        let start = words.len();
                        words.extend((0..more_words).map(|k| WORDS[(start * 31 + k * 7) % WORDS.len()]));
                    } else {
                        filler += missing;
                    }
                }
            }
        }
        join_filled(&words, filler)
    }
}

/// The words, then `filler` one-token words.
fn join_filled(words: &[&str], filler: usize) -> String {
    let mut text = join(words);
    for _ in 0..filler {
        text.push_str(" a");
    }
    text
}

/// The target's token count for `text`, or `None` when it has no usable `/tokenize`.
async fn count_tokens(client: &Client, text: &str) -> Option<u64> {
    let body = json!({"model": client.model(), "prompt": text, "content": text, "add_special_tokens": false, "add_special": false});
    let response = client.post("/tokenize").json(&body).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let value: Value = response.json().await.ok()?;
    value.get("count").and_then(Value::as_u64).or_else(|| Some(value.get("tokens")?.as_array()?.len() as u64))
}

/// Prompts from a JSONL file.
fn read_jsonl(path: &Path) -> Result<Vec<Prompt>, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io { path: path.to_owned(), source })?;
    let mut prompts = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| BenchError::Data(format!("{}:{}: {why}", path.display(), n + 1));
        let value: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let (text, output_tokens) = match &value {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => {
                let text = o.get("prompt").or_else(|| o.get("text")).and_then(Value::as_str).ok_or_else(|| bad("needs a string `prompt`".into()))?;
                let output = match o.get("output_tokens") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().filter(|&n| (1..=u64::from(u32::MAX)).contains(&n)).ok_or_else(|| bad("`output_tokens` must be a positive whole number".into()))? as u32),
                };
                (text.to_owned(), output)
            }
            _ => return Err(bad("expected a string or an object with `prompt`".into())),
        };
        let estimate = text.split_whitespace().count() as u64;
        prompts.push(Prompt { text, output_tokens, prompt_tokens: estimate });
    }
    if prompts.is_empty() {
        return Err(BenchError::Data(format!("{}: no prompts", path.display())));
    }
    Ok(prompts)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test fails loudly on the first unexpected error")]
mod tests {
    use super::*;

    #[test]
    fn synthetic_specs_parse_and_bad_ones_say_why() {
        let spec: DataSpec = "synthetic:prompt_tokens=128,output_tokens=32,prefix_tokens=64".parse().unwrap();
        assert_eq!(spec, DataSpec::Synthetic(Synthetic { prompt_tokens: 128, output_tokens: 32, prefix_tokens: 64 }));
        assert!("synthetic:prompt_tokens=1".parse::<DataSpec>().unwrap_err().contains("output_tokens"));
        assert!("synthetic:prompt_tokens=x,output_tokens=1".parse::<DataSpec>().unwrap_err().contains("whole number"));
        assert!("synthetic:foo=1".parse::<DataSpec>().unwrap_err().contains("unknown"));
        assert_eq!("prompts.jsonl".parse::<DataSpec>().unwrap(), DataSpec::File("prompts.jsonl".into()));
    }

    #[test]
    fn synthetic_words_are_seeded_and_sized() {
        let a = join(&words(&mut StdRng::seed_from_u64(1), 50));
        let b = join(&words(&mut StdRng::seed_from_u64(1), 50));
        let c = join(&words(&mut StdRng::seed_from_u64(2), 50));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.split_whitespace().count(), 50);
    }

    #[test]
    fn jsonl_files_take_strings_and_objects_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(&path, "\"hello there\"\n\n{\"prompt\": \"a b c\", \"output_tokens\": 8}\n{\"text\": \"x\"}\n").unwrap();
        let prompts = read_jsonl(&path).unwrap();
        assert_eq!(prompts.len(), 3);
        assert_eq!((prompts[1].text.as_str(), prompts[1].output_tokens, prompts[1].prompt_tokens), ("a b c", Some(8), 3));
        std::fs::write(&path, "\"ok\"\n{\"output_tokens\": 3}\n").unwrap();
        let err = read_jsonl(&path).unwrap_err().to_string();
        assert!(err.contains("p.jsonl:2"), "{err}");
    }
}
