//! The `logprobs` object of OpenAI's answers, from the engine's per-token log-probabilities
//! ([`engine::TokenLogprob`]; which distribution they come from is stated in the engine's
//! `sampling/logprobs.rs`: the model's raw log-softmax).
//!
//! - Chat: `{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}`.
//! - Legacy completions: `{tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}`,
//!   `text_offset` counting characters of the completion before each token.
//!
//! A token's text is its bytes decoded as UTF-8 (a token holding part of a character shows
//! U+FFFD; `bytes` has the exact bytes). A log-probability of −inf (a NaN logit) is written as
//! −9999.0, OpenAI's stand-in, since JSON has no infinity.

use engine::{Candidate, TokenLogprob};
use serde::Serialize;
use serde_json::{Map, Value};

use super::types::logprobs::{finite_logprob, ChatLogprobs, ChatTokenLogprob, ChatTopLogprob, CompletionLogprobs};

/// Which API's `logprobs` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogprobShape {
    Chat,
    Completion,
}

impl LogprobShape {
    /// `tokens` as this API's object. `offset` is the number of characters of the completion
    /// before them (for `text_offset`); it is advanced past them.
    pub fn json(self, tokens: &[TokenLogprob], offset: &mut usize) -> Value {
        match self {
            LogprobShape::Chat => to_value(&chat(tokens)),
            LogprobShape::Completion => to_value(&completion(tokens, offset)),
        }
    }

    /// The `logprobs` of a whole answer: `null` when the request did not ask (`asked` is `None`).
    pub fn answer(self, asked: Option<u8>, tokens: &[TokenLogprob]) -> Value {
        match asked {
            Some(_) => self.json(tokens, &mut 0),
            None => Value::Null,
        }
    }
}

fn chat(tokens: &[TokenLogprob]) -> ChatLogprobs {
    let content = tokens
        .iter()
        .map(|t| ChatTokenLogprob {
            token: text(&t.chosen),
            logprob: finite_logprob(t.chosen.logprob),
            bytes: t.chosen.bytes.clone(),
            top_logprobs: t.top.iter().map(|c| ChatTopLogprob { token: text(c), logprob: finite_logprob(c.logprob), bytes: c.bytes.clone() }).collect(),
        })
        .collect();
    ChatLogprobs { content, refusal: None }
}

fn completion(tokens: &[TokenLogprob], offset: &mut usize) -> CompletionLogprobs {
    let mut text_offset = Vec::with_capacity(tokens.len());
    for t in tokens {
        text_offset.push(*offset);
        *offset += text(&t.chosen).chars().count();
    }
    CompletionLogprobs {
        tokens: tokens.iter().map(|t| text(&t.chosen)).collect(),
        token_logprobs: tokens.iter().map(|t| finite_logprob(t.chosen.logprob)).collect(),
        top_logprobs: tokens.iter().map(|t| t.top.iter().map(|c| (text(c), Value::from(finite_logprob(c.logprob)))).collect::<Map<String, Value>>()).collect(),
        text_offset,
    }
}

/// These structs hold strings and numbers only, which always serialize.
fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn text(c: &Candidate) -> String {
    String::from_utf8_lossy(&c.bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn token(text: &str, logprob: f32, top: &[(&str, f32)]) -> TokenLogprob {
        let c = |t: &str, lp| Candidate { token: 1, bytes: t.as_bytes().to_vec(), logprob: lp };
        TokenLogprob { chosen: c(text, logprob), top: top.iter().map(|&(t, lp)| c(t, lp)).collect() }
    }

    #[test]
    fn chat_lists_each_token_with_bytes_and_alternatives() {
        let tokens = [token("Hé", -0.5, &[("Hé", -0.5), ("Ho", -1.5)]), token("!", f32::NEG_INFINITY, &[])];
        let v = LogprobShape::Chat.json(&tokens, &mut 0);
        assert_eq!(v["content"][0]["token"], "Hé");
        assert_eq!(v["content"][0]["bytes"], json!([72, 195, 169]));
        assert_eq!(v["content"][0]["top_logprobs"][1], json!({"token": "Ho", "logprob": -1.5, "bytes": [72, 111]}));
        assert_eq!(v["content"][1]["logprob"], -9999.0, "JSON has no -inf");
    }

    #[test]
    fn chat_object_serializes_in_openais_field_order_with_a_null_refusal() {
        let tokens = [token("a", f32::NEG_INFINITY, &[("b", -0.5)])];
        let wire = LogprobShape::Chat.json(&tokens, &mut 0).to_string();
        let expected = r#"{"content":[{"token":"a","logprob":-9999.0,"bytes":[97],"top_logprobs":[{"token":"b","logprob":-0.5,"bytes":[98]}]}],"refusal":null}"#;
        assert_eq!(wire, expected, "alternatives carry no top_logprobs of their own");
        let completion = LogprobShape::Completion.json(&tokens, &mut 0).to_string();
        assert_eq!(completion, r#"{"tokens":["a"],"token_logprobs":[-9999.0],"top_logprobs":[{"b":-0.5}],"text_offset":[0]}"#);
    }

    #[test]
    fn completions_count_text_offsets_in_characters_across_chunks() {
        let mut offset = 0;
        let first = LogprobShape::Completion.json(&[token("Hé", -0.25, &[("Hé", -0.25)]), token("llo", -1.0, &[])], &mut offset);
        assert_eq!(first["tokens"], json!(["Hé", "llo"]));
        assert_eq!(first["token_logprobs"], json!([-0.25, -1.0]));
        assert_eq!(first["top_logprobs"][0], json!({"Hé": -0.25}));
        assert_eq!(first["text_offset"], json!([0, 2]));
        let next = LogprobShape::Completion.json(&[token(" w", -2.0, &[])], &mut offset);
        assert_eq!(next["text_offset"], json!([5]));
        assert_eq!(LogprobShape::Completion.answer(None, &[]), Value::Null);
    }
}
