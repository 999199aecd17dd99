//! [`SamplingParams`]: the one sampling-parameters type, from the API request to the sampler.
//!
//! Its fields are OpenAI's (and vLLM's) request fields, with their names and JSON types, each
//! `None` when the client left it out. The same struct is
//! - read out of a chat or completions request body (serde; the daemon's accepted-field list is
//!   [`SamplingParams::fields`], taken from serde itself, so an unlisted field cannot exist),
//! - range-checked once by [`SamplingParams::check`] (the messages and `param` names the API
//!   answers a 400 with),
//! - described in the OpenAPI document (`utoipa::ToSchema`, with the ranges),
//! - sent as it is to a remote OpenAI-compatible upstream (serde: only the fields that were set,
//!   so the upstream's defaults apply to the rest), and
//! - turned into a sampler by [`super::build_sampler`], which fills in OpenAI's defaults through
//!   the accessors below.
//!
//! A new sampling field is therefore a field here (with its range in `check` and, if the sampler
//! needs a default, an accessor) and its use in `sampling/mod.rs`. What the service layer derives
//! rather than reads (the grammar of `response_format` or tools, the log-probabilities asked for
//! in chat's or completions' form) rides along as `#[serde(skip)]` fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The sampling fields of chat and completions, with OpenAI's and vLLM's names, types and ranges;
/// one left out (or null) takes the model's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SamplingParams {
    /// 0 to 2; 0 means greedy. Default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, above 0 and at most 1; 1 (the default) disables it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// The most likely tokens kept; -1 or 0 (the default) disable it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -1, maximum = 2147483647)]
    pub top_k: Option<i64>,
    /// Tokens less likely than this fraction of the best one are dropped; 0 (the default)
    /// disables it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub min_p: Option<f64>,
    /// Fixed seed for reproducible sampling (its low 32 bits locally); unset picks one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// OpenAI's presence penalty, -2 to 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f64>,
    /// OpenAI's frequency penalty, -2 to 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f64>,
    /// Token id (as a string) to an additive bias between -100 and 100.
    #[serde(skip_serializing_if = "no_bias")]
    #[schema(schema_with = logit_bias_schema)]
    pub logit_bias: Option<BTreeMap<String, f64>>,
    /// vLLM's multiplicative repetition penalty (llama.cpp's `repeat_penalty`); 1 disables it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 10)]
    pub repetition_penalty: Option<f64>,
    /// A GBNF grammar (root rule `root`) every output must match: structured output. Built by the
    /// service layer (from `response_format` or the tools offered), never read from a request.
    #[serde(skip)]
    pub grammar: Option<String>,
    /// Report log-probabilities with each token: `None` reports none and costs nothing; `Some(n)`
    /// reports the chosen token's and the `n` (at most [`MAX_TOP_LOGPROBS`]) most likely tokens'.
    /// Set by the service layer from chat's or completions' own form of the request.
    #[serde(skip)]
    pub logprobs: Option<u8>,
}

/// The most alternatives a request may ask log-probabilities for (OpenAI's and vLLM's limit).
pub const MAX_TOP_LOGPROBS: u8 = 20;

/// A sampling field out of its range: the field (`param`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SamplingError {
    /// The request field, as the client spelled it.
    pub param: &'static str,
    /// The whole message, naming the field, its range and the value sent.
    pub message: String,
}

impl SamplingError {
    fn new(param: &'static str, message: impl Into<String>) -> Self {
        Self { param, message: message.into() }
    }
}

impl SamplingParams {
    /// The request fields serde reads into this type (every field but the `#[serde(skip)]` ones).
    pub fn fields() -> &'static [&'static str] {
        introspect::struct_fields::<SamplingParams>()
    }

    /// Every field the client set checked against OpenAI's range, in a fixed order (the first
    /// field out of range is the one reported).
    pub fn check(&self) -> Result<(), SamplingError> {
        let top_p = in_range("top_p", self.top_p, 0.0, 1.0)?;
        if top_p == Some(0.0) {
            return Err(SamplingError::new("top_p", "top_p must be greater than 0"));
        }
        if let Some(k) = self.top_k.filter(|&k| !(k == -1 || (0..=i64::from(i32::MAX)).contains(&k))) {
            return Err(SamplingError::new("top_k", format!("top_k must be -1, 0 or positive, got {k}")));
        }
        self.biases()?;
        in_range("temperature", self.temperature, 0.0, 2.0)?;
        in_range("min_p", self.min_p, 0.0, 1.0)?;
        in_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        if in_range("repetition_penalty", self.repetition_penalty, 0.0, 10.0)?.is_some_and(|r| r <= 0.0) {
            return Err(SamplingError::new("repetition_penalty", "repetition_penalty must be greater than 0"));
        }
        Ok(())
    }

    /// [`check`](Self::check) for what needs the model: every `logit_bias` token id below its
    /// vocabulary size.
    pub fn check_vocabulary(&self, n_vocab: u32) -> Result<(), SamplingError> {
        match self.biases()?.into_iter().find(|&(token, _)| token >= n_vocab) {
            Some((token, _)) => Err(SamplingError::new("logit_bias", format!("\"{token}\" is not a token id below {n_vocab}"))),
            None => Ok(()),
        }
    }

    /// The logit biases as token ids, each bias within -100..=100.
    pub fn biases(&self) -> Result<Vec<(u32, f64)>, SamplingError> {
        let mut biases = Vec::new();
        for (key, &bias) in self.logit_bias.iter().flatten() {
            let token: u32 = key.parse().map_err(|_| SamplingError::new("logit_bias", format!("{key:?} is not a token id")))?;
            if !(-100.0..=100.0).contains(&bias) {
                return Err(SamplingError::new("logit_bias", format!("bias for token {key} must be between -100 and 100, got {bias}")));
            }
            biases.push((token, bias));
        }
        Ok(biases)
    }

    // What the sampler uses: the client's value, or OpenAI's default when it sent none.

    /// Temperature; default 1.
    pub fn temperature(&self) -> f32 {
        self.temperature.map_or(1.0, |t| t as f32)
    }

    /// Top-p; default 1 (off).
    pub fn top_p(&self) -> f32 {
        self.top_p.map_or(1.0, |p| p as f32)
    }

    /// Top-k, 0 when off (unset, -1 or 0).
    pub fn top_k(&self) -> i32 {
        match self.top_k {
            Some(k) if k > 0 => i32::try_from(k).unwrap_or(i32::MAX),
            _ => 0,
        }
    }

    /// Min-p; default 0 (off).
    pub fn min_p(&self) -> f32 {
        self.min_p.map_or(0.0, |p| p as f32)
    }

    /// The seed's low 32 bits (llama.cpp's seeds are 32-bit), if one was sent.
    pub fn seed(&self) -> Option<u32> {
        self.seed.map(|s| s as u32)
    }

    /// Presence penalty; default 0 (off).
    pub fn presence_penalty(&self) -> f32 {
        self.presence_penalty.map_or(0.0, |p| p as f32)
    }

    /// Frequency penalty; default 0 (off).
    pub fn frequency_penalty(&self) -> f32 {
        self.frequency_penalty.map_or(0.0, |p| p as f32)
    }

    /// Repetition penalty; default 1 (off).
    pub fn repetition_penalty(&self) -> f32 {
        self.repetition_penalty.map_or(1.0, |p| p as f32)
    }
}

fn in_range(param: &'static str, value: Option<f64>, lo: f64, hi: f64) -> Result<Option<f64>, SamplingError> {
    match value {
        Some(v) if !(v.is_finite() && (lo..=hi).contains(&v)) => Err(SamplingError::new(param, format!("{param} must be between {lo} and {hi}, got {v}"))),
        _ => Ok(value),
    }
}

fn no_bias(bias: &Option<BTreeMap<String, f64>>) -> bool {
    bias.as_ref().is_none_or(BTreeMap::is_empty)
}

/// `logit_bias`'s schema: token ids (as strings) to a bias between -100 and 100, or null.
fn logit_bias_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let bias = ObjectBuilder::new().schema_type(Type::Number).minimum(Some(-100)).maximum(Some(100));
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9]+$"))))
        .additional_properties(Some(bias))
        .description(Some("token id to a bias between -100 and 100"))
        .build()
        .into()
}

mod introspect {
    //! The field names serde's derive hands `deserialize_struct`, caught by a deserializer that
    //! only records them: the list of accepted fields is the one serde reads, never a copy.

    use serde::de::{self, Deserialize, Deserializer, Visitor};

    /// The fields `T`'s derived `Deserialize` reads (empty for a type that is not a struct).
    pub fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
        let mut fields: &'static [&'static str] = &[];
        let _refused = T::deserialize(Recorder { fields: &mut fields });
        fields
    }

    struct Recorder<'a> {
        fields: &'a mut &'static [&'static str],
    }

    impl<'de> Deserializer<'de> for Recorder<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only records a struct's fields"))
        }

        fn deserialize_struct<V: Visitor<'de>>(self, _name: &'static str, fields: &'static [&'static str], _visitor: V) -> Result<V::Value, Self::Error> {
            *self.fields = fields;
            Err(de::Error::custom("recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: serde_json::Value) -> SamplingParams {
        serde_json::from_value(body).unwrap()
    }

    fn refused(body: serde_json::Value) -> (&'static str, String) {
        let e = parse(body).check().unwrap_err();
        (e.param, e.message)
    }

    #[test]
    fn the_field_list_is_what_serde_reads_and_nothing_else() {
        let fields = SamplingParams::fields();
        assert_eq!(
            fields,
            ["temperature", "top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "repetition_penalty"]
        );
        // Each listed field is read: a value of the wrong type for it fails.
        for field in fields {
            let err = serde_json::from_value::<SamplingParams>(json!({ *field: "not a number" })).unwrap_err();
            assert!(err.to_string().contains("invalid type"), "{field}: {err}");
        }
        // What the service layer derives is not a field: sending it is ignored here (and refused
        // by the API's list).
        assert_eq!(parse(json!({"grammar": "root ::= \"x\"", "logprobs": 3})), SamplingParams::default());
        assert!(!fields.contains(&"grammar") && !fields.contains(&"logprobs"));
    }

    #[test]
    fn unset_or_null_fields_are_none_and_the_sampler_takes_openais_defaults() {
        let p = parse(json!({"temperature": null, "top_k": null}));
        assert_eq!(p, SamplingParams::default());
        assert_eq!(p.check(), Ok(()));
        assert_eq!((p.temperature(), p.top_p(), p.top_k(), p.min_p(), p.seed()), (1.0, 1.0, 0, 0.0, None));
        assert_eq!((p.presence_penalty(), p.frequency_penalty(), p.repetition_penalty()), (0.0, 0.0, 1.0));
        assert_eq!(p.biases(), Ok(Vec::new()));
    }

    #[test]
    fn set_fields_reach_the_sampler_converted() {
        let p = parse(json!({"temperature": 0.5, "top_p": 0.9, "top_k": 3_000_000_000_u64, "min_p": 0.1, "seed": -1,
            "presence_penalty": 1.5, "frequency_penalty": -0.5, "repetition_penalty": 1.2, "logit_bias": {"7": -100, "12": 2.5}}));
        assert_eq!(p.check().map_err(|e| e.message), Err("top_k must be -1, 0 or positive, got 3000000000".into()));
        let p = SamplingParams { top_k: Some(40), ..p };
        assert_eq!(p.check(), Ok(()));
        assert_eq!((p.temperature(), p.top_p(), p.top_k(), p.min_p()), (0.5, 0.9, 40, 0.1));
        assert_eq!(p.seed(), Some(u32::MAX), "the low 32 bits of -1");
        assert_eq!((p.presence_penalty(), p.frequency_penalty(), p.repetition_penalty()), (1.5, -0.5, 1.2));
        assert_eq!(p.biases(), Ok(vec![(12, 2.5), (7, -100.0)]), "token ids in key order");
        for k in [-1, 0] {
            assert_eq!(SamplingParams { top_k: Some(k), ..SamplingParams::default() }.top_k(), 0);
        }
    }

    #[test]
    fn each_range_error_names_its_field_and_the_value() {
        let cases = [
            (json!({"temperature": 3}), "temperature", "temperature must be between 0 and 2, got 3"),
            (json!({"temperature": -0.1}), "temperature", "temperature must be between 0 and 2, got -0.1"),
            (json!({"top_p": 0}), "top_p", "top_p must be greater than 0"),
            (json!({"top_p": 1.5}), "top_p", "top_p must be between 0 and 1, got 1.5"),
            (json!({"top_k": -2}), "top_k", "top_k must be -1, 0 or positive, got -2"),
            (json!({"min_p": 2}), "min_p", "min_p must be between 0 and 1, got 2"),
            (json!({"presence_penalty": 2.5}), "presence_penalty", "presence_penalty must be between -2 and 2, got 2.5"),
            (json!({"frequency_penalty": -3}), "frequency_penalty", "frequency_penalty must be between -2 and 2, got -3"),
            (json!({"repetition_penalty": 0}), "repetition_penalty", "repetition_penalty must be greater than 0"),
            (json!({"repetition_penalty": 11}), "repetition_penalty", "repetition_penalty must be between 0 and 10, got 11"),
            (json!({"logit_bias": {"abc": 1}}), "logit_bias", "\"abc\" is not a token id"),
            (json!({"logit_bias": {"5": 101}}), "logit_bias", "bias for token 5 must be between -100 and 100, got 101"),
            // The first out of range in check's order is reported: top_p before temperature.
            (json!({"temperature": 9, "top_p": 2}), "top_p", "top_p must be between 0 and 1, got 2"),
        ];
        for (body, param, message) in cases {
            assert_eq!(refused(body.clone()), (param, message.to_owned()), "{body}");
        }
        let edges = json!({"temperature": 2, "top_p": 1, "top_k": -1, "min_p": 0, "presence_penalty": -2,
            "frequency_penalty": 2, "repetition_penalty": 10, "logit_bias": {"0": -100, "1": 100}});
        assert_eq!(parse(edges).check(), Ok(()), "the ends of each range are in it");
    }

    #[test]
    fn bias_tokens_are_checked_against_the_vocabulary() {
        let p = parse(json!({"logit_bias": {"99": 1, "100": 1}}));
        assert_eq!(p.check(), Ok(()));
        let e = p.check_vocabulary(100).unwrap_err();
        assert_eq!((e.param, e.message.as_str()), ("logit_bias", "\"100\" is not a token id below 100"));
        assert_eq!(p.check_vocabulary(101), Ok(()));
    }

    #[test]
    fn only_the_fields_that_were_set_are_serialized() {
        assert_eq!(serde_json::to_value(SamplingParams::default()).unwrap(), json!({}));
        let p = SamplingParams { grammar: Some("root ::= \"a\"".into()), logprobs: Some(2), logit_bias: Some(BTreeMap::new()), ..SamplingParams::default() };
        assert_eq!(serde_json::to_value(&p).unwrap(), json!({}), "derived fields and an empty bias stay home");
        let sent = json!({"temperature": 0.0, "top_k": -1, "seed": 3, "logit_bias": {"5": -100.0}, "repetition_penalty": 1.1});
        assert_eq!(serde_json::to_value(parse(sent.clone())).unwrap(), sent, "as the client sent them");
    }
}
