//! The question as the embedding model sees it: cut to the model's context, off the async
//! workers, and embedded within the API's share of the model's admission.
//!
//! A question can be as long as a request body (megabytes). It is cut by proportion, not by
//! trimming a tenth at a time: one tokenization gives the token count, the text is cut to the
//! share of characters that should fit (with a small margin), and a second tokenization checks
//! it; a rare third pass fixes an uneven text. Before that, a text longer than
//! [`CHARS_PER_TOKEN_BOUND`] characters per allowed token is cut to that, so the first
//! tokenization is bounded too. All of it runs on a blocking thread.

use store::Collection;

use crate::fault::ServiceError;
use crate::library::Library;
use crate::provider::EmbedInput;
use crate::blocking::blocking;

/// Characters per token beyond which the question is cut before it is tokenized at all: real
/// text averages four or five; a question whose tokens cover more is cut shorter than it
/// strictly had to be, never longer.
pub const CHARS_PER_TOKEN_BOUND: usize = 32;

/// The context an embedding model is assumed to have when it does not say (BERT's 512).
const DEFAULT_CONTEXT: usize = 512;

/// Most proportional cuts (each is one tokenization); the loop ends well before in practice.
const MAX_PASSES: usize = 6;

/// `text` cut at a character boundary so that `count` gives at most `limit` tokens.
pub fn fit(text: &str, limit: usize, count: &dyn Fn(&str) -> usize) -> String {
    let mut chars: Vec<char> = text.chars().take(limit.saturating_mul(CHARS_PER_TOKEN_BOUND)).collect();
    for _ in 0..MAX_PASSES {
        let candidate: String = chars.iter().collect();
        let tokens = count(&candidate);
        if tokens <= limit {
            return candidate;
        }
        // Keep the share that should fit, with 2% to spare, and always drop something.
        let keep = (chars.len() as f64 * limit as f64 / tokens as f64 * 0.98) as usize;
        chars.truncate(keep.min(chars.len().saturating_sub(1)));
    }
    // Text so uneven that proportion keeps missing: halve until it fits.
    let mut candidate: String = chars.iter().collect();
    while !candidate.is_empty() && count(&candidate) > limit {
        let half = candidate.chars().count() / 2;
        candidate = candidate.chars().take(half).collect();
    }
    candidate
}

/// The question's embedding by the vector store's own model. The API's embeddings wait for no
/// permit kept for ingestion ([`Library::api_embed_permit`]).
pub async fn embed_query(library: &Library, collection: &Collection, text: &str) -> Result<Vec<f32>, ServiceError> {
    let embedder = library.embedder(&collection.embedding_model).map_err(ServiceError::Unavailable)?;
    // Two tokens for the model's own [CLS] ... [SEP].
    let limit = embedder.max_model_len().map_or(DEFAULT_CONTEXT, |n| n as usize).saturating_sub(2);
    let (counter, text) = (embedder.clone(), text.to_owned());
    let text = blocking(move || Ok(fit(&text, limit, &|t| counter.count_tokens(t)))).await?;
    let _permit = library.api_embed_permit(embedder.name())?;
    let mut vectors = embedder.embed(EmbedInput::Texts(vec![text]), None).await?.vectors;
    vectors.pop().ok_or_else(|| ServiceError::Internal("the embedding model returned nothing".into()))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn a_long_question_is_cut_in_a_few_tokenizations_to_just_under_the_limit() {
        let calls = Cell::new(0);
        let count = |s: &str| {
            calls.set(calls.get() + 1);
            words(s)
        };
        let question = "alpha beta gamma delta ".repeat(50_000); // 200,000 words, 4.6 MB
        let cut = fit(&question, 500, &count);
        assert!(words(&cut) <= 500, "{}", words(&cut));
        assert!(words(&cut) >= 450, "cut too much: {} words", words(&cut));
        assert!(question.starts_with(&cut));
        assert!(calls.get() <= 3, "{} tokenizations (the old loop took about 70)", calls.get());
    }

    #[test]
    fn a_short_question_is_kept_whole_and_uneven_text_still_fits() {
        assert_eq!(fit("what is hearth?", 500, &words), "what is hearth?");
        // The first half is one "token", the rest a token a character: proportion misjudges it.
        let uneven = format!("{}{}", "x".repeat(5_000), " y".repeat(5_000));
        let cut = fit(&uneven, 100, &words);
        assert!(words(&cut) <= 100 && !cut.is_empty(), "{}", words(&cut));
        assert_eq!(fit("", 10, &words), "");
        // Multi-byte characters are never split.
        let cut = fit(&"é ".repeat(1000), 10, &words);
        assert!(words(&cut) <= 10 && cut.chars().all(|c| c == 'é' || c == ' '));
    }
}
