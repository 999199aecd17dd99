//! Structured output: OpenAI's `response_format` (`json_object`, `json_schema`) as a GBNF grammar
//! that llama.cpp's grammar sampler enforces token by token, so the output parses by
//! construction instead of by request.
//!
//! The conversion is llama.cpp's own (`common/json-schema-to-grammar.cpp`, through the
//! `hearth-grammar` crate), so hearth accepts what llama.cpp's server accepts: `pattern`, `format`
//! (`date`, `time`, `date-time`, `uuid`), `minimum`/`maximum` (and the exclusive forms),
//! `minLength`/`maxLength`, `minItems`/`maxItems`, `allOf`/`anyOf`/`oneOf`, `required` (optional
//! properties may be left out), `additionalProperties`, `$ref` into `$defs`/`definitions`,
//! `const`, `enum`, `prefixItems`. What pydantic writes for `datetime`, `UUID`, `conint` and
//! `Optional` fields converts. A schema the converter refuses is a 400 with its message.
//!
//! The schema is the client's and the converter cannot be interrupted, so the work is bounded
//! before it starts and checked after ([`Budget`], `[limits]`):
//! - **nodes** (`max_schema_nodes`): the schema's sub-schemas as the converter will visit them —
//!   a type list such as `["object", "object"]` visits its schema once per type (so nesting them
//!   multiplies), an `allOf` member that is a `$ref` visits its target again, every `enum`/`const`
//!   member counts. Counted in Rust before any C++ runs, so a schema built to explode is refused
//!   without being converted;
//! - **bytes** (`max_grammar_bytes`): the grammar's text plus what llama.cpp's grammar parser
//!   expands its repetitions (`x{0,500}`) to on the engine thread (16 bytes a repeat);
//! - **time** (`schema_time_budget_ms`): the conversion's wall time, checked when it returns.
//!
//! A schema over a budget is a 400 that names the budget and its value. Callers run the
//! conversion on a blocking thread, never on an HTTP worker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Why a schema cannot become a grammar.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// How much work one schema may cost (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Schema nodes the converter will visit, `enum` members included (`limits.max_schema_nodes`).
    pub max_nodes: usize,
    /// Bytes of GBNF text, repetitions expanded (`limits.max_grammar_bytes`).
    pub max_grammar_bytes: usize,
    /// Wall time of the conversion (`limits.schema_time_budget_ms`).
    pub max_time: Duration,
}

impl Budget {
    /// No limits beyond the converter's own (nesting depth): for a schema that already passed a
    /// bounded conversion.
    pub const UNLIMITED: Budget = Budget { max_nodes: usize::MAX, max_grammar_bytes: usize::MAX, max_time: Duration::MAX };
}

/// The grammar for `response_format`, or `None` for plain text, without a budget: only for a
/// `response_format` that [`checked_grammar_for`] already accepted.
pub fn grammar_for(response_format: &Value) -> Result<Option<String>, SchemaError> {
    checked_grammar_for(response_format, &Budget::UNLIMITED)
}

/// The grammar for `response_format`, or `None` for plain text, within `budget`.
pub fn checked_grammar_for(response_format: &Value, budget: &Budget) -> Result<Option<String>, SchemaError> {
    match response_format.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        // What llama.cpp's server does for `json_object`: any object.
        Some("json_object") => Ok(Some(schema_grammar(&serde_json::json!({"type": "object"}), budget)?)),
        Some("json_schema") => {
            let schema = response_format
                .pointer("/json_schema/schema")
                .ok_or_else(|| SchemaError("response_format.json_schema.schema is missing".into()))?;
            Ok(Some(schema_grammar(schema, budget)?))
        }
        Some(other) => Err(SchemaError(format!("response_format type {other:?} is not one of text, json_object, json_schema"))),
    }
}

/// A GBNF grammar whose `root` is exactly the documents `schema` accepts, within `budget`.
pub fn schema_grammar(schema: &Value, budget: &Budget) -> Result<String, SchemaError> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err(SchemaError(format!("a JSON schema is an object (or true/false), got {schema}")));
    }
    let nodes = Cost::new(schema, budget.max_nodes).of(schema, 0)?;
    debug_assert!(nodes <= budget.max_nodes);
    let started = Instant::now();
    let grammar = grammar::json_schema_to_grammar(&schema.to_string()).map_err(|e| SchemaError(e.0))?;
    let elapsed = started.elapsed();
    if elapsed > budget.max_time {
        return Err(SchemaError(format!(
            "the schema took {} ms to convert, more than limits.schema_time_budget_ms = {}",
            elapsed.as_millis(),
            budget.max_time.as_millis()
        )));
    }
    let bytes = expanded_bytes(&grammar);
    if bytes > budget.max_grammar_bytes {
        return Err(SchemaError(format!(
            "the schema's grammar is {bytes} bytes with its repetitions expanded, more than limits.max_grammar_bytes = {}",
            budget.max_grammar_bytes
        )));
    }
    Ok(grammar)
}

/// How deep sub-schemas (and `$ref` chains inside `allOf`) may nest.
const MAX_DEPTH: usize = 64;

/// Bytes a repetition adds per repeat when llama.cpp's grammar parser expands it.
const BYTES_PER_REPEAT: usize = 16;

/// The grammar's size as llama.cpp's parser will hold it: its text plus, for each `{m}`, `{m,n}`
/// or `{m,}` repetition, [`BYTES_PER_REPEAT`] per repeat of its largest bound.
fn expanded_bytes(grammar: &str) -> usize {
    let mut total = grammar.len();
    let mut rest = grammar;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let inner = &after[..close];
        if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit() || c == ',') {
            let largest = inner.split(',').filter_map(|n| n.parse::<usize>().ok()).max().unwrap_or(0);
            total = total.saturating_add(largest.saturating_mul(BYTES_PER_REPEAT));
        }
        rest = &after[close + 1..];
    }
    total
}

/// Counts the nodes the converter will visit, stopping as soon as the count passes the limit.
struct Cost<'a> {
    root: &'a Value,
    limit: usize,
    /// The cost of an `allOf` member's `$ref` target, by reference.
    refs: HashMap<&'a str, usize>,
}

impl<'a> Cost<'a> {
    fn new(root: &'a Value, limit: usize) -> Self {
        Self { root, limit, refs: HashMap::new() }
    }

    fn over(&self) -> SchemaError {
        SchemaError(format!("the schema has more than limits.max_schema_nodes = {} nodes as the converter visits them (enum members, and a type list's schema once per type, count)", self.limit))
    }

    fn check(&self, n: usize) -> Result<usize, SchemaError> {
        if n > self.limit {
            Err(self.over())
        } else {
            Ok(n)
        }
    }

    /// Nodes under `schema` (itself included), `depth` levels down.
    fn of(&mut self, schema: &'a Value, depth: usize) -> Result<usize, SchemaError> {
        if depth > MAX_DEPTH {
            return Err(SchemaError(format!("the schema nests more than {MAX_DEPTH} levels deep")));
        }
        let Some(obj) = schema.as_object() else { return Ok(1) };
        let mut n: usize = 1;
        for key in ["properties", "$defs", "definitions", "patternProperties"] {
            if let Some(Value::Object(children)) = obj.get(key) {
                for child in children.values() {
                    let cost = self.of(child, depth + 1)?;
                    n = self.check(n.saturating_add(cost))?;
                }
            }
        }
        for key in ["items", "additionalProperties", "not", "contains", "additionalItems", "propertyNames", "if", "then", "else"] {
            if let Some(child) = obj.get(key) {
                let cost = self.of(child, depth + 1)?;
                n = self.check(n.saturating_add(cost))?;
            }
        }
        for key in ["anyOf", "oneOf", "prefixItems", "items"] {
            if let Some(Value::Array(children)) = obj.get(key) {
                for child in children {
                    let cost = self.of(child, depth + 1)?;
                    n = self.check(n.saturating_add(cost))?;
                }
            }
        }
        if let Some(Value::Array(parts)) = obj.get("allOf") {
            for part in parts {
                // The converter merges `allOf` members, following a `$ref` into its target each time.
                let cost = match part.get("$ref").and_then(Value::as_str) {
                    Some(reference) => self.ref_cost(reference, depth + 1)?,
                    None => self.of(part, depth + 1)?,
                };
                n = self.check(n.saturating_add(cost))?;
            }
        }
        for key in ["enum", "required"] {
            if let Some(Value::Array(members)) = obj.get(key) {
                n = self.check(n.saturating_add(members.len()))?;
            }
        }
        if let Some(Value::Array(types)) = obj.get("type") {
            // llama.cpp's converter visits the whole schema once per listed type, repeats included.
            n = self.check(n.saturating_mul(types.len().max(1)))?;
        }
        Ok(n)
    }

    fn ref_cost(&mut self, reference: &'a str, depth: usize) -> Result<usize, SchemaError> {
        if let Some(&cost) = self.refs.get(reference) {
            return Ok(cost);
        }
        // A reference the converter cannot resolve is its error to report; it costs one node here.
        let target = reference.strip_prefix('#').and_then(|pointer| self.root.pointer(pointer));
        let cost = match target {
            Some(target) => self.of(target, depth)?,
            None => 1,
        };
        self.refs.insert(reference, cost);
        Ok(cost)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shipped defaults of `[limits]`.
    const BUDGET: Budget = Budget { max_nodes: 5_000, max_grammar_bytes: 65_536, max_time: Duration::from_secs(1) };

    fn grammar(schema: &Value) -> String {
        schema_grammar(schema, &BUDGET).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn text_and_json_object_formats() {
        assert_eq!(grammar_for(&json!({"type": "text"})), Ok(None));
        let g = grammar_for(&json!({"type": "json_object"})).unwrap_or_default().unwrap_or_default();
        assert!(g.contains("root ::= object") && g.contains("object ::="), "{g}");
        assert!(grammar_for(&json!({"type": "xml"})).is_err());
        assert!(grammar_for(&json!({"type": "json_schema", "json_schema": {"name": "x"}})).is_err());
    }

    #[test]
    fn an_object_schema_keeps_its_property_order_and_optional_fields_are_optional() {
        let schema = json!({"type": "object", "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "nickname": {"type": "string"},
        }, "required": ["name", "age"], "additionalProperties": false});
        let g = grammar(&schema);
        let root = g.lines().find(|l| l.starts_with("root ::=")).unwrap();
        assert!(root.find("name").unwrap() < root.find("age").unwrap(), "{g}");
        // The optional property sits in an optional group after the required ones.
        assert!(g.contains("nickname"), "{g}");
        assert!(root.contains(")?") || root.contains("]?") || g.contains("nickname-kv )?"), "{g}");
    }

    /// What pydantic 2 writes for a model with `datetime`, `UUID`, `conint(ge=1, le=5)`, a nested
    /// model and an `Optional` nested model: every piece the hand-written converter refused.
    #[test]
    fn a_pydantic_schema_with_formats_ranges_and_optional_nested_models_converts() {
        let schema = json!({
            "$defs": {"Address": {"properties": {"city": {"title": "City", "type": "string"}, "zip": {"pattern": "^[0-9]{5}$", "title": "Zip", "type": "string"}},
                                  "required": ["city", "zip"], "title": "Address", "type": "object", "additionalProperties": false}},
            "properties": {
                "id": {"format": "uuid", "title": "Id", "type": "string"},
                "when": {"format": "date-time", "title": "When", "type": "string"},
                "stars": {"maximum": 5, "minimum": 1, "title": "Stars", "type": "integer"},
                "home": {"$ref": "#/$defs/Address"},
                "work": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": null}
            },
            "required": ["id", "when", "stars", "home", "work"], "title": "Visit", "type": "object", "additionalProperties": false
        });
        let g = grammar(&schema);
        for needle in ["uuid", "date-time", "[1-5]", "Address", "null"] {
            assert!(g.contains(needle), "{needle} missing:\n{g}");
        }
        let all_of = json!({"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                                      {"type": "object", "properties": {"b": {"type": "number", "exclusiveMinimum": 0}}}]});
        assert!(grammar(&all_of).contains("root ::="));
    }

    #[test]
    fn the_converters_refusals_come_back_as_messages() {
        let err = schema_grammar(&json!({"$ref": "#/$defs/missing"}), &BUDGET).unwrap_err();
        assert!(!err.0.is_empty(), "{err}");
        let err = schema_grammar(&json!("a string"), &BUDGET).unwrap_err();
        assert!(err.0.contains("is an object"), "{err}");
    }

    /// `{"type": ["object", "object"], "properties": {"a": <the next level>}}`, `levels` deep.
    fn nested_type_lists(levels: usize) -> Value {
        let mut schema = json!({"type": "string"});
        for _ in 0..levels {
            schema = json!({"type": ["object", "string"], "properties": {"a": schema}});
        }
        schema
    }

    #[test]
    fn a_schema_that_multiplies_the_converters_work_is_refused_before_it_runs() {
        let started = Instant::now();
        let err = schema_grammar(&nested_type_lists(30), &BUDGET).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(100), "refused without converting: {:?}", started.elapsed());
        assert!(err.0.contains("limits.max_schema_nodes = 5000"), "{err}");
        // A few levels are fine.
        assert!(schema_grammar(&nested_type_lists(3), &BUDGET).is_ok());
        // allOf over references to references: each level visits its target twice.
        let mut defs = serde_json::Map::new();
        for i in 0..30 {
            let next = format!("#/$defs/d{}", i + 1);
            defs.insert(format!("d{i}"), json!({"allOf": [{"$ref": next}, {"$ref": next}]}));
        }
        defs.insert("d30".into(), json!({"type": "object", "properties": {"x": {"type": "string"}}}));
        let err = schema_grammar(&json!({"$defs": defs, "$ref": "#/$defs/d0"}), &BUDGET);
        assert!(err.is_ok() || err.as_ref().is_err_and(|e| e.0.contains("max_schema_nodes")), "{err:?}");
    }

    #[test]
    fn huge_enums_and_long_repetitions_are_refused_by_the_budget_they_break() {
        let members: Vec<Value> = (0..100_000).map(|i| json!(format!("member-{i}"))).collect();
        let format = json!({"type": "json_schema", "json_schema": {"name": "e", "schema": {"type": "object", "properties": {"pick": {"enum": members}}}}});
        let started = Instant::now();
        let err = checked_grammar_for(&format, &BUDGET).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(err.0.contains("limits.max_schema_nodes = 5000"), "{err}");
        let long: Vec<Value> = (0..2_000).map(|i| json!(format!("{i:0>100}"))).collect();
        let err = schema_grammar(&json!({"enum": long}), &BUDGET).unwrap_err();
        assert!(err.0.contains("limits.max_grammar_bytes = 65536"), "{err}");
        let long_strings: serde_json::Map<String, Value> = (0..4).map(|i| (format!("s{i}"), json!({"type": "string", "maxLength": 10_000 - i}))).collect();
        let err = schema_grammar(&json!({"type": "object", "properties": long_strings}), &BUDGET).unwrap_err();
        assert!(err.0.contains("limits.max_grammar_bytes"), "{err}");
        let wide: serde_json::Map<String, Value> = (0..6_000).map(|i| (format!("k{i}"), json!({"type": "integer"}))).collect();
        let err = schema_grammar(&json!({"type": "object", "properties": wide}), &BUDGET).unwrap_err();
        assert!(err.0.contains("limits.max_schema_nodes"), "{err}");
    }

    #[test]
    fn repetitions_count_as_their_expansion() {
        assert_eq!(expanded_bytes("a ::= x{2,5}"), 12 + 5 * BYTES_PER_REPEAT);
        assert_eq!(expanded_bytes("a ::= [0-9]{4} \"{\" y"), 20 + 4 * BYTES_PER_REPEAT);
    }
}
