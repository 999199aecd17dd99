//! Budgets of a `/v1/embeddings` request beyond its input count: the tokens of all its inputs
//! together (`limits.max_embedding_tokens_per_request`), and the API's share of the model's
//! admission (the rest is kept for ingestion, [`crate::library::admission`]).
//!
//! For a local model the texts are tokenized here, once, on a blocking thread ([`tokenized`]): the
//! count is then exact and the engine receives token ids, so a request of megabytes is never
//! tokenized on an HTTP worker. For a remote model the count costs nothing for token-id inputs and
//! for texts whose bytes alone prove them within the budget (a token covers at least one byte; the
//! model adds a few of its own per input); only a request that could be over is counted, on a
//! blocking thread, stopping as soon as the budget is passed.

use crate::fault::ServiceError;
use crate::provider::{Backend, EmbedInput};

/// Tokens a model may add to each input (BOS/CLS, SEP/EOS, a leading space piece).
const SPECIAL_PER_INPUT: usize = 4;

fn over(limit: usize, counted: &str) -> ServiceError {
    ServiceError::invalid(
        "input",
        format!("the inputs have {counted} tokens together, more than limits.max_embedding_tokens_per_request = {limit}; send fewer or shorter inputs"),
    )
}

/// 400 naming `limits.max_embedding_tokens_per_request` when `input` has more tokens than `limit`.
pub async fn check_tokens(backend: &Backend, input: &EmbedInput, limit: usize) -> Result<(), ServiceError> {
    match input {
        EmbedInput::Tokens(lists) => {
            let total: usize = lists.iter().map(Vec::len).sum();
            if total > limit {
                return Err(over(limit, &total.to_string()));
            }
            Ok(())
        }
        EmbedInput::Texts(texts) if within_by_bytes(texts, limit) => Ok(()),
        EmbedInput::Texts(texts) => {
            let (backend, texts) = (backend.clone(), texts.clone());
            crate::blocking::blocking(move || check_texts(&texts, limit, &|t| backend.count_tokens(t))).await
        }
    }
}

/// `input` as a local model's token ids (tokenized on a blocking thread, as the engine tokenizes
/// embedding inputs: plain text, the model's own BOS/CLS/SEP added), checked against `limit`; a
/// remote model's input unchanged, checked by [`check_tokens`].
pub async fn tokenized(backend: &Backend, input: EmbedInput, limit: usize) -> Result<EmbedInput, ServiceError> {
    let (engine, texts) = match (backend.as_local(), input) {
        (Some(engine), EmbedInput::Texts(texts)) => (engine.clone(), texts),
        (_, input) => {
            check_tokens(backend, &input, limit).await?;
            return Ok(input);
        }
    };
    crate::blocking::blocking(move || {
        let mut total = 0usize;
        let mut lists = Vec::with_capacity(texts.len());
        for text in &texts {
            let ids: Vec<i64> = engine.tokenize_text(text, true).into_iter().map(i64::from).collect();
            total += ids.len();
            if total > limit {
                return Err(over(limit, &format!("more than {}", total - 1)));
            }
            lists.push(ids);
        }
        Ok(EmbedInput::Tokens(lists))
    })
    .await
}

/// True when the texts' bytes alone prove them within `limit` tokens.
fn within_by_bytes(texts: &[String], limit: usize) -> bool {
    texts.iter().map(|t| t.len() + SPECIAL_PER_INPUT).sum::<usize>() <= limit
}

/// Count the texts' tokens with `count` (plus the model's own two per input), stopping at the
/// first text that passes `limit`.
fn check_texts(texts: &[String], limit: usize, count: &dyn Fn(&str) -> usize) -> Result<(), ServiceError> {
    if within_by_bytes(texts, limit) {
        return Ok(());
    }
    let mut total = 0usize;
    for text in texts {
        total += count(text) + 2;
        if total > limit {
            return Err(over(limit, &format!("more than {}", total - 1)));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn short_texts_are_not_tokenized_and_long_ones_stop_at_the_budget() {
        let calls = Cell::new(0);
        let words = |t: &str| {
            calls.set(calls.get() + 1);
            t.split_whitespace().count()
        };
        let short = vec!["a few words".to_owned(); 10];
        assert!(check_texts(&short, 1_000, &words).is_ok());
        assert_eq!(calls.get(), 0, "bytes alone proved it");
        // 100 texts of 1,000 words: 100,200 tokens against a budget of 5,000.
        let long = vec!["word ".repeat(1_000); 100];
        let err = check_texts(&long, 5_000, &words).unwrap_err();
        assert!(err.to_string().contains("limits.max_embedding_tokens_per_request = 5000"), "{err}");
        assert_eq!(calls.get(), 5, "it stops at the text that passes the budget");
        calls.set(0);
        assert!(check_texts(&long, 200_000, &words).is_ok(), "bytes over, tokens within");
        assert_eq!(calls.get(), 100);
    }
}
