//! Attribute filters in the OpenAI vector-store shape.
//!
//! A comparison is `{"type": "eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin", "key": K, "value": V}`;
//! a compound is `{"type": "and"|"or", "filters": [...]}`. Semantics, chosen to be predictable:
//! - numbers compare as numbers, strings as strings, booleans only by (in)equality;
//! - an ordering comparison between different types, or on a missing key, is false;
//! - `ne` and `nin` are true when the key is missing (nothing equals the value);
//! - `in`/`nin` take an array of values; an empty `and` is true, an empty `or` is false.
//!
//! Filters are parsed once ([`Filter::parse`]) so a malformed filter is a clear 400 before any
//! search work.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::model::Attributes;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompareOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Equal to one of an array of values.
    In,
    /// Equal to none of an array of values.
    Nin,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum Filter {
    /// Compare one attribute with a value.
    Compare {
        /// The operator.
        op: CompareOp,
        /// The attribute name.
        key: String,
        /// The value (an array for `in`/`nin`).
        value: Value,
    },
    /// All of the filters hold.
    And(Vec<Filter>),
    /// At least one of the filters holds.
    Or(Vec<Filter>),
}

impl TryFrom<Value> for Filter {
    type Error = StoreError;
    fn try_from(v: Value) -> Result<Self> {
        Filter::parse(&v)
    }
}

impl From<Filter> for Value {
    fn from(f: Filter) -> Value {
        match f {
            Filter::Compare { op, key, value } => {
                let op = serde_json::to_value(op).unwrap_or(Value::Null);
                serde_json::json!({"type": op, "key": key, "value": value})
            }
            Filter::And(fs) => serde_json::json!({"type": "and", "filters": fs.into_iter().map(Value::from).collect::<Vec<_>>()}),
            Filter::Or(fs) => serde_json::json!({"type": "or", "filters": fs.into_iter().map(Value::from).collect::<Vec<_>>()}),
        }
    }
}

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::Invalid(format!("filters: {}", msg.into()))
}

impl Filter {
    /// Parses the OpenAI JSON shape, with an error that says what is wrong.
    pub fn parse(v: &Value) -> Result<Filter> {
        let obj = v.as_object().ok_or_else(|| invalid("a filter must be an object"))?;
        let ty = obj.get("type").and_then(Value::as_str).ok_or_else(|| invalid("missing string field \"type\""))?;
        match ty {
            "and" | "or" => {
                let list = obj
                    .get("filters")
                    .and_then(Value::as_array)
                    .ok_or_else(|| invalid(format!("a {ty:?} filter needs an array \"filters\"")))?;
                let parsed = list.iter().map(Filter::parse).collect::<Result<Vec<_>>>()?;
                Ok(if ty == "and" { Filter::And(parsed) } else { Filter::Or(parsed) })
            }
            _ => {
                let op: CompareOp = serde_json::from_value(Value::String(ty.to_string()))
                    .map_err(|_| invalid(format!("unknown filter type {ty:?}")))?;
                let key = obj.get("key").and_then(Value::as_str).ok_or_else(|| invalid("missing string field \"key\""))?;
                let value = obj.get("value").ok_or_else(|| invalid("missing field \"value\""))?;
                let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
                match op {
                    CompareOp::In | CompareOp::Nin => {
                        let ok = value.as_array().is_some_and(|a| a.iter().all(scalar));
                        if !ok {
                            return Err(invalid(format!("{ty:?} needs an array of strings, numbers or booleans")));
                        }
                    }
                    _ if !scalar(value) => return Err(invalid(format!("{ty:?} needs a string, number or boolean"))),
                    _ => {}
                }
                Ok(Filter::Compare { op, key: key.to_string(), value: value.clone() })
            }
        }
    }

    /// Evaluates the filter against attributes; `overlay` (the chunk's) wins over `base` (the document's).
    pub fn matches(&self, base: &Attributes, overlay: &Attributes) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(base, overlay)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(base, overlay)),
            Filter::Compare { op, key, value } => {
                let actual = overlay.get(key).or_else(|| base.get(key));
                compare(*op, actual, value)
            }
        }
    }
}

fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn scalar_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compare(op: CompareOp, actual: Option<&Value>, value: &Value) -> bool {
    let in_list = |a: &Value| value.as_array().is_some_and(|l| l.iter().any(|v| scalar_eq(a, v)));
    match (op, actual) {
        (CompareOp::Ne | CompareOp::Nin, None) => true,
        (_, None) => false,
        (CompareOp::Eq, Some(a)) => scalar_eq(a, value),
        (CompareOp::Ne, Some(a)) => !scalar_eq(a, value),
        (CompareOp::In, Some(a)) => in_list(a),
        (CompareOp::Nin, Some(a)) => !in_list(a),
        (CompareOp::Gt, Some(a)) => scalar_cmp(a, value) == Some(Ordering::Greater),
        (CompareOp::Gte, Some(a)) => matches!(scalar_cmp(a, value), Some(Ordering::Greater | Ordering::Equal)),
        (CompareOp::Lt, Some(a)) => scalar_cmp(a, value) == Some(Ordering::Less),
        (CompareOp::Lte, Some(a)) => matches!(scalar_cmp(a, value), Some(Ordering::Less | Ordering::Equal)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Attributes {
        v.as_object().cloned().unwrap_or_default()
    }

    fn check(filter: Value, doc: Value, chunk: Value) -> bool {
        Filter::parse(&filter).unwrap().matches(&attrs(doc), &attrs(chunk))
    }

    #[test]
    fn comparisons() {
        let d = json!({"year": 2021, "lang": "en", "draft": false});
        assert!(check(json!({"type":"eq","key":"lang","value":"en"}), d.clone(), json!({})));
        assert!(!check(json!({"type":"eq","key":"lang","value":"de"}), d.clone(), json!({})));
        assert!(check(json!({"type":"ne","key":"lang","value":"de"}), d.clone(), json!({})));
        assert!(check(json!({"type":"gt","key":"year","value":2020}), d.clone(), json!({})));
        assert!(!check(json!({"type":"gt","key":"year","value":2021}), d.clone(), json!({})));
        assert!(check(json!({"type":"gte","key":"year","value":2021.0}), d.clone(), json!({})));
        assert!(check(json!({"type":"lt","key":"year","value":2022}), d.clone(), json!({})));
        assert!(check(json!({"type":"lte","key":"year","value":2021}), d.clone(), json!({})));
        assert!(check(json!({"type":"in","key":"lang","value":["fr","en"]}), d.clone(), json!({})));
        assert!(check(json!({"type":"nin","key":"lang","value":["fr","de"]}), d.clone(), json!({})));
        assert!(check(json!({"type":"eq","key":"draft","value":false}), d, json!({})));
    }

    #[test]
    fn missing_keys_and_mixed_types() {
        let d = json!({"year": "2021"});
        assert!(!check(json!({"type":"gt","key":"year","value":2000}), d.clone(), json!({})));
        assert!(!check(json!({"type":"eq","key":"nope","value":1}), d.clone(), json!({})));
        assert!(check(json!({"type":"ne","key":"nope","value":1}), d.clone(), json!({})));
        assert!(check(json!({"type":"nin","key":"nope","value":[1]}), d, json!({})));
    }

    #[test]
    fn compound_and_chunk_overlay() {
        let f = json!({"type":"and","filters":[
            {"type":"eq","key":"lang","value":"en"},
            {"type":"or","filters":[{"type":"eq","key":"page_kind","value":"table"},{"type":"gte","key":"year","value":2020}]}
        ]});
        assert!(check(f.clone(), json!({"lang":"en","year":2019}), json!({"page_kind":"table"})));
        assert!(!check(f.clone(), json!({"lang":"en","year":2019}), json!({"page_kind":"text"})));
        assert!(!check(f, json!({"lang":"en","year":2024}), json!({"lang":"de"})));
        assert!(check(json!({"type":"and","filters":[]}), json!({}), json!({})));
        assert!(!check(json!({"type":"or","filters":[]}), json!({}), json!({})));
    }

    #[test]
    fn malformed_filters_are_rejected_with_a_reason() {
        for bad in [
            json!("eq"),
            json!({"type":"like","key":"a","value":"b"}),
            json!({"type":"eq","value":"b"}),
            json!({"type":"eq","key":"a"}),
            json!({"type":"in","key":"a","value":"b"}),
            json!({"type":"eq","key":"a","value":{"x":1}}),
            json!({"type":"and","filters":{}}),
        ] {
            let e = Filter::parse(&bad).unwrap_err();
            assert!(e.is_user_error(), "{bad}: {e}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let v = json!({"type":"or","filters":[{"type":"in","key":"a","value":[1,2]}]});
        let f: Filter = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&f).unwrap(), v);
    }
}
