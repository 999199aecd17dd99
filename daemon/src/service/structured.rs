//! Structured output: OpenAI's `response_format` (`json_object`, `json_schema`) as a GBNF grammar
//! that llama.cpp's grammar sampler enforces token by token, so the output parses by
//! construction instead of by request.
//!
//! The schema subset is the one OpenAI's strict mode accepts: `object` (every listed property,
//! in order, as strict mode requires them all), `array` (`items`, `minItems`, `maxItems`),
//! `string` (`enum`), `number`, `integer`, `boolean`, `null`, `enum`, `const`, `anyOf`/`oneOf`,
//! type lists such as `["string", "null"]`, and `$ref` into `$defs`/`definitions`. Anything else
//! is a 400 that names the keyword, never a silently looser grammar.
//!
//! The schema is the client's, so the conversion is bounded ([`Budget`], `[limits]`): linear in
//! the schema (each sub-schema is converted once, found again by its address in the request's
//! JSON tree, and a type list like `["object", "object"]` is deduplicated, so nesting cannot
//! double the work per level), at most `max_schema_nodes` schema nodes visited (every `enum`
//! member counts), at most `max_grammar_bytes` of GBNF text (which also bounds what llama.cpp's
//! grammar parser does with it on the engine thread) and at most `schema_time_budget_ms` of
//! work. A schema over a budget is a 400 that names the budget and its value. Callers run the
//! conversion on a blocking thread, never on an HTTP worker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Rules shared by every grammar: JSON's primitives and free-form values.
const PRIMITIVES: &str = r#"ws ::= [ \t\n]{0,20}
char ::= [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
string ::= "\"" char* "\""
number ::= "-"? ( [0] | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
integer ::= "-"? ( [0] | [1-9] [0-9]{0,15} )
boolean ::= "true" | "false"
null ::= "null"
value ::= object | array | string | number | boolean | null
object ::= "{" ws ( string ws ":" ws value ws ( "," ws string ws ":" ws value ws )* )? "}"
array ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
"#;

/// Why a schema cannot become a grammar.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct SchemaError(String);

/// How much work one schema may cost (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Schema nodes visited, `enum` members included (`limits.max_schema_nodes`).
    pub max_nodes: usize,
    /// Bytes of GBNF text (`limits.max_grammar_bytes`).
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
/// `response_format` that [`checked_grammar_for`] already accepted (the conversion is linear, so
/// repeating it costs what the bounded run cost).
pub fn grammar_for(response_format: &Value) -> Result<Option<String>, SchemaError> {
    checked_grammar_for(response_format, &Budget::UNLIMITED)
}

/// The grammar for `response_format`, or `None` for plain text, within `budget`.
pub fn checked_grammar_for(response_format: &Value, budget: &Budget) -> Result<Option<String>, SchemaError> {
    match response_format.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(format!("root ::= object\n{PRIMITIVES}"))),
        Some("json_schema") => {
            let schema = response_format
                .pointer("/json_schema/schema")
                .ok_or_else(|| SchemaError("response_format.json_schema.schema is missing".into()))?;
            Ok(Some(schema_grammar(schema, budget)?))
        }
        Some(other) => Err(SchemaError(format!("response_format type {other:?} is not one of text, json_object, json_schema"))),
    }
}

/// A GBNF grammar whose `root` is exactly the documents `schema` accepts (in the subset above).
pub fn schema_grammar(schema: &Value, budget: &Budget) -> Result<String, SchemaError> {
    let mut b = Builder {
        root: schema,
        rules: BTreeMap::new(),
        by_body: HashMap::new(),
        next_number: HashMap::new(),
        memo: HashMap::new(),
        depth: 0,
        nodes: 0,
        bytes: PRIMITIVES.len(),
        budget: *budget,
        started: Instant::now(),
    };
    let root = b.rule_for(schema, "root-value")?;
    let mut out = String::with_capacity(b.bytes + root.len() + 16);
    out.push_str(&format!("root ::= {root}\n"));
    for (name, body) in &b.rules {
        out.push_str(&format!("{name} ::= {body}\n"));
    }
    out.push_str(PRIMITIVES);
    b.check_bytes(out.len())?;
    Ok(out)
}

/// Inline expressions longer than this become named rules.
const MAX_INLINE: usize = 64;

/// Rule names longer than this are shortened (deep nesting would otherwise make each name as long
/// as its path).
const MAX_NAME: usize = 48;

struct Builder<'a> {
    root: &'a Value,
    /// Rule name -> body.
    rules: BTreeMap<String, String>,
    /// Body -> rule name: identical bodies share one rule.
    by_body: HashMap<String, String>,
    /// Rule name stem -> the next number to try after it.
    next_number: HashMap<String, usize>,
    /// A sub-schema's expression, by the sub-schema's address in `root`'s tree: each is converted
    /// once however often it is reached.
    memo: HashMap<*const Value, String>,
    depth: usize,
    /// Schema nodes visited so far (`enum` members included).
    nodes: usize,
    /// GBNF bytes produced so far (rules and inline expressions).
    bytes: usize,
    budget: Budget,
    started: Instant,
}

impl<'a> Builder<'a> {
    /// A rule name (or inline expression) for `schema`, defining named rules as needed.
    fn rule_for(&mut self, schema: &'a Value, hint: &str) -> Result<String, SchemaError> {
        let key: *const Value = schema;
        if let Some(done) = self.memo.get(&key) {
            return Ok(done.clone());
        }
        self.visit(1)?;
        self.depth += 1;
        if self.depth > 64 {
            return Err(SchemaError("the schema nests deeper than 64 levels (a $ref cycle?)".into()));
        }
        let out = self.expression(schema, hint);
        self.depth -= 1;
        let mut out = out?;
        if out.len() > MAX_INLINE && !is_rule_name(&out) {
            // A long inline expression (an enum, a union) reached again would be copied into
            // every rule that uses it: name it once instead.
            out = self.define(hint, "alt", out)?;
        }
        self.memo.insert(key, out.clone());
        Ok(out)
    }

    /// Count `n` visited nodes against the node and time budgets.
    fn visit(&mut self, n: usize) -> Result<(), SchemaError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.budget.max_nodes {
            return Err(SchemaError(format!(
                "the schema is larger than limits.max_schema_nodes = {} (schema nodes, each enum member counting as one)",
                self.budget.max_nodes
            )));
        }
        if self.started.elapsed() > self.budget.max_time {
            return Err(SchemaError(format!(
                "converting the schema took longer than limits.schema_time_budget_ms = {}",
                self.budget.max_time.as_millis()
            )));
        }
        Ok(())
    }

    fn check_bytes(&self, bytes: usize) -> Result<(), SchemaError> {
        if bytes > self.budget.max_grammar_bytes {
            return Err(SchemaError(format!(
                "the schema's grammar is larger than limits.max_grammar_bytes = {} bytes",
                self.budget.max_grammar_bytes
            )));
        }
        Ok(())
    }

    /// Define a named rule; an identical body already defined is reused under its name.
    fn define(&mut self, hint: &str, suffix: &str, body: String) -> Result<String, SchemaError> {
        if let Some(name) = self.by_body.get(&body) {
            return Ok(name.clone());
        }
        let mut base = sanitize(hint);
        if base.len() > MAX_NAME {
            base.truncate(MAX_NAME);
        }
        // `stem`, then `stem2`, `stem3`...: the next free number is remembered, so a thousand
        // rules whose (shortened) names collide cost a thousand steps, not half a million.
        let stem = format!("{base}-{suffix}");
        let mut n = self.next_number.get(&stem).copied().unwrap_or(1);
        let mut name = if n == 1 { stem.clone() } else { format!("{stem}{n}") };
        while self.rules.contains_key(&name) {
            n += 1;
            name = format!("{stem}{n}");
        }
        self.next_number.insert(stem, n + 1);
        self.bytes += name.len() + body.len() + 6;
        self.check_bytes(self.bytes)?;
        self.by_body.insert(body.clone(), name.clone());
        self.rules.insert(name.clone(), body);
        Ok(name)
    }

    fn expression(&mut self, schema: &'a Value, hint: &str) -> Result<String, SchemaError> {
        let Some(obj) = schema.as_object() else {
            return match schema {
                Value::Bool(true) => Ok("value".into()),
                _ => Err(SchemaError(format!("schema at {hint} must be an object"))),
            };
        };
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            return self.reference(reference);
        }
        if let Some(values) = obj.get("enum").and_then(Value::as_array) {
            self.visit(values.len())?;
            let mut parts = Vec::with_capacity(values.len());
            let mut seen = HashSet::new();
            let mut running = self.bytes;
            for v in values {
                let lit = literal(v)?;
                running += lit.len() + 3;
                self.check_bytes(running)?;
                if seen.insert(lit.clone()) {
                    parts.push(lit);
                }
            }
            return Ok(alternatives(parts));
        }
        if let Some(value) = obj.get("const") {
            return literal(value);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = obj.get(key).and_then(Value::as_array) {
                let mut parts = Vec::with_capacity(options.len());
                for (i, o) in options.iter().enumerate() {
                    let part = self.rule_for(o, &child_hint(hint, &i.to_string()))?;
                    if !parts.contains(&part) {
                        parts.push(part);
                    }
                }
                return Ok(alternatives(parts));
            }
        }
        for unsupported in ["allOf", "not", "if", "patternProperties", "pattern", "format", "minimum", "maximum"] {
            if obj.contains_key(unsupported) {
                return Err(SchemaError(format!("the JSON schema keyword `{unsupported}` (at {hint}) is not supported in response_format")));
            }
        }
        match obj.get("type") {
            Some(Value::Array(types)) => {
                self.visit(types.len())?;
                let mut parts: Vec<String> = Vec::with_capacity(types.len());
                let mut seen: Vec<&str> = Vec::with_capacity(types.len());
                for t in types {
                    let Some(t) = t.as_str() else {
                        return Err(SchemaError(format!("`type` at {hint} lists {t}, which is not a type name")));
                    };
                    if seen.contains(&t) {
                        continue; // ["object", "object"] is "object", converted once
                    }
                    seen.push(t);
                    let part = self.typed(obj, t, hint)?;
                    if !parts.contains(&part) {
                        parts.push(part);
                    }
                }
                if parts.is_empty() {
                    return Err(SchemaError(format!("`type` at {hint} is an empty list")));
                }
                Ok(alternatives(parts))
            }
            Some(Value::String(t)) => self.typed(obj, t, hint),
            None if obj.contains_key("properties") => self.object(obj, hint),
            None => Ok("value".into()),
            Some(other) => Err(SchemaError(format!("`type` at {hint} must be a string or a list, not {other}"))),
        }
    }

    /// `obj` read as a schema of type `t` (one member of a type list, or its `type`).
    fn typed(&mut self, obj: &'a serde_json::Map<String, Value>, t: &str, hint: &str) -> Result<String, SchemaError> {
        match t {
            "object" => self.object(obj, hint),
            "array" => self.array(obj, hint),
            "string" if obj.contains_key("minLength") || obj.contains_key("maxLength") => {
                let (body, repeats) = bounded_string(obj, hint)?;
                self.expanded("char".len(), repeats)?;
                self.define(hint, "str", body)
            }
            "string" | "number" | "integer" | "boolean" | "null" => Ok(t.to_owned()),
            other => Err(SchemaError(format!("unknown JSON schema type {other:?} at {hint}"))),
        }
    }

    fn object(&mut self, obj: &'a serde_json::Map<String, Value>, hint: &str) -> Result<String, SchemaError> {
        let Some(properties) = obj.get("properties").and_then(Value::as_object) else {
            return Ok("object".into());
        };
        let mut parts = Vec::with_capacity(properties.len());
        for (i, (key, sub)) in properties.iter().enumerate() {
            let value = self.rule_for(sub, &child_hint(hint, key))?;
            let name = serde_json::to_string(key).map_err(|e| SchemaError(e.to_string()))?;
            let sep = if i == 0 { "" } else { "\",\" ws " };
            parts.push(format!("{sep}{} ws \":\" ws {value} ws", gbnf_string(&name)));
        }
        self.define(hint, "obj", format!("\"{{\" ws {} \"}}\"", parts.join(" ")))
    }

    fn array(&mut self, obj: &'a serde_json::Map<String, Value>, hint: &str) -> Result<String, SchemaError> {
        let item = match obj.get("items") {
            Some(items) => self.rule_for(items, &child_hint(hint, "item"))?,
            None => "value".into(),
        };
        let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        let max = obj.get("maxItems").and_then(Value::as_u64);
        if min > 64 || max.is_some_and(|m| m > 256 || m < min) {
            return Err(SchemaError(format!("minItems/maxItems at {hint} must satisfy minItems <= 64, minItems <= maxItems <= 256")));
        }
        let more = |n: u64| format!("( \",\" ws {item} ws ){{{n}}}");
        let body = match (min, max) {
            (0, Some(0)) => "\"[\" ws \"]\"".to_owned(),
            (0, None) => format!("\"[\" ws ( {item} ws ( \",\" ws {item} ws )* )? \"]\""),
            (0, Some(m)) => format!("\"[\" ws ( {item} ws ( \",\" ws {item} ws ){{0,{}}} )? \"]\"", m - 1),
            (n, None) => format!("\"[\" ws {item} ws {} ( \",\" ws {item} ws )* \"]\"", more(n - 1)),
            (n, Some(m)) => format!("\"[\" ws {item} ws ( \",\" ws {item} ws ){{{},{}}} \"]\"", n - 1, m - 1),
        };
        self.expanded(item.len() + 12, max.unwrap_or(min))?;
        self.define(hint, "arr", body)
    }

    /// llama.cpp expands `x{m,n}` into about `n` rules when it parses the grammar: count that
    /// against the byte budget as `n` copies of `x`.
    fn expanded(&mut self, unit: usize, repeats: u64) -> Result<(), SchemaError> {
        let extra = usize::try_from(repeats).unwrap_or(usize::MAX).saturating_mul(unit);
        self.bytes = self.bytes.saturating_add(extra);
        self.check_bytes(self.bytes)
    }

    fn reference(&mut self, reference: &str) -> Result<String, SchemaError> {
        let path = reference.strip_prefix('#').ok_or_else(|| SchemaError(format!("only local $refs (\"#/$defs/...\") are supported, not {reference:?}")))?;
        let name = format!("ref-{}", sanitize(path));
        if self.rules.contains_key(&name) {
            return Ok(name);
        }
        let target = self.root.pointer(path).ok_or_else(|| SchemaError(format!("$ref {reference:?} points at nothing")))?;
        self.rules.insert(name.clone(), "value".into()); // placeholder: lets recursive schemas refer to it
        let body = self.rule_for(target, &name)?;
        self.bytes += name.len() + body.len() + 6;
        self.check_bytes(self.bytes)?;
        self.rules.insert(name.clone(), body);
        Ok(name)
    }
}

/// A string of `minLength..=maxLength` characters (escapes count as one), and the repetition
/// count llama.cpp expands it to.
fn bounded_string(obj: &serde_json::Map<String, Value>, hint: &str) -> Result<(String, u64), SchemaError> {
    let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let max = obj.get("maxLength").and_then(Value::as_u64);
    if max.is_some_and(|m| m < min || m > 10_000) || min > 10_000 {
        return Err(SchemaError(format!("minLength/maxLength at {hint} must satisfy minLength <= maxLength <= 10000")));
    }
    Ok(match max {
        Some(m) => (format!("\"\\\"\" char{{{min},{m}}} \"\\\"\""), m),
        None => (format!("\"\\\"\" char{{{min},}} \"\\\"\""), min + 1),
    })
}

/// `a | b | c`, grouped.
fn alternatives(parts: Vec<String>) -> String {
    if parts.len() == 1 {
        parts.into_iter().next().unwrap_or_default()
    } else {
        format!("( {} )", parts.join(" | "))
    }
}

/// A JSON value as a literal the grammar must produce exactly.
fn literal(value: &Value) -> Result<String, SchemaError> {
    let json = serde_json::to_string(value).map_err(|e| SchemaError(e.to_string()))?;
    Ok(gbnf_string(&json))
}

/// A GBNF string literal matching `text` exactly.
fn gbnf_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The naming hint of a sub-schema: `hint-part`, sanitized and at most [`MAX_NAME`] bytes (only
/// names depend on it, and a long property name would otherwise be copied at every level below).
fn child_hint(hint: &str, part: &str) -> String {
    let mut child = String::with_capacity(MAX_NAME + 1);
    child.extend(hint.chars().take(MAX_NAME));
    child.push('-');
    child.extend(part.chars().take(MAX_NAME).map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }));
    child.truncate(MAX_NAME);
    child
}

/// True for a bare rule name (`[a-zA-Z0-9-]+`), false for any other expression.
fn is_rule_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Rule names allow `[a-zA-Z0-9-]`.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
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
        assert!(g.starts_with("root ::= object\n") && g.contains("object ::="), "{g}");
        assert!(grammar_for(&json!({"type": "xml"})).is_err());
        assert!(grammar_for(&json!({"type": "json_schema", "json_schema": {"name": "x"}})).is_err());
    }

    #[test]
    fn an_object_schema_lists_its_properties_in_order() {
        let schema = json!({"type": "object", "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "kind": {"enum": ["cat", "dog"]},
            "owner": {"type": ["string", "null"]},
        }, "required": ["name", "age", "tags", "kind", "owner"], "additionalProperties": false});
        let g = grammar(&schema);
        assert!(g.starts_with("root ::= root-value-obj\n"), "{g}");
        assert!(g.contains(r#"root-value-obj ::= "{" ws "\"name\"" ws ":" ws string ws "," ws "\"age\"" ws ":" ws integer ws"#), "{g}");
        assert!(g.contains(r#"( "\"cat\"" | "\"dog\"" )"#), "{g}");
        assert!(g.contains("( string | null )"), "{g}");
        assert!(g.contains(r#"root-value-tags-arr ::= "[" ws ( string ws ( "," ws string ws ){0,2} )? "]""#), "{g}");
    }

    #[test]
    fn refs_and_recursion_resolve_and_unsupported_keywords_are_named() {
        let schema = json!({"$defs": {"node": {"type": "object", "properties": {"v": {"type": "number"}, "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}}},
                            "$ref": "#/$defs/node"});
        let g = grammar(&schema);
        assert!(g.contains("ref---defs-node ::= ref---defs-node-obj"), "{g}");
        assert!(g.contains("( ref---defs-node | null )"), "{g}");
        let bounded = grammar(&json!({"type": "string", "minLength": 1, "maxLength": 12}));
        assert!(bounded.contains("root-value-str ::= \"\\\"\" char{1,12} \"\\\"\"\n"), "{bounded}");
        let err = schema_grammar(&json!({"type": "string", "pattern": "^a+$"}), &BUDGET).unwrap_err();
        assert!(err.0.contains("`pattern`"), "{err}");
        assert!(schema_grammar(&json!({"$ref": "https://example.com/s.json"}), &BUDGET).is_err());
    }

    /// `{"type": ["object", "object"], "properties": {"a": <the next level>}}`, `levels` deep.
    fn nested_type_lists(levels: usize) -> Value {
        let mut schema = json!({"type": "string"});
        for _ in 0..levels {
            schema = json!({"type": ["object", "object"], "properties": {"a": schema}});
        }
        schema
    }

    #[test]
    fn nested_type_lists_cost_linear_work_not_two_to_the_depth() {
        // Before: 2^30 conversions of the innermost level; now each level is converted once.
        let started = Instant::now();
        let result = schema_grammar(&nested_type_lists(30), &BUDGET);
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
        let g = result.unwrap_or_else(|e| panic!("{e}"));
        let objects = g.lines().filter(|l| l.split(" ::= ").next().is_some_and(|name| name.contains("-obj"))).count();
        assert_eq!(objects, 30, "one rule per level:\n{g}");
        assert!(g.len() < PRIMITIVES.len() + 30 * 200, "{} bytes", g.len());
        // Even unbounded, 60 levels (the depth limit is 64) stay quick.
        let started = Instant::now();
        assert!(schema_grammar(&nested_type_lists(60), &Budget::UNLIMITED).is_ok());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_huge_enum_is_refused_by_the_node_budget_which_it_names() {
        let members: Vec<Value> = (0..100_000).map(|i| json!(format!("member-{i}"))).collect();
        let format = json!({"type": "json_schema", "json_schema": {"name": "e", "schema": {"type": "object", "properties": {"pick": {"enum": members}}}}});
        let started = Instant::now();
        let err = checked_grammar_for(&format, &BUDGET).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(err.0.contains("limits.max_schema_nodes = 5000"), "{err}");
        // Within the node budget but over the byte budget: named too.
        let long: Vec<Value> = (0..2_000).map(|i| json!(format!("{i:0>100}"))).collect();
        let err = schema_grammar(&json!({"enum": long}), &BUDGET).unwrap_err();
        assert!(err.0.contains("limits.max_grammar_bytes = 65536"), "{err}");
        // Many nodes: a wide object.
        let wide: serde_json::Map<String, Value> = (0..6_000).map(|i| (format!("k{i}"), json!({"type": "integer"}))).collect();
        let err = schema_grammar(&json!({"type": "object", "properties": wide}), &BUDGET).unwrap_err();
        assert!(err.0.contains("limits.max_schema_nodes"), "{err}");
    }

    #[test]
    fn a_shared_definition_is_one_rule_however_often_it_is_used() {
        let colors: Vec<Value> = (0..50).map(|i| json!(format!("color-{i}"))).collect();
        let properties: serde_json::Map<String, Value> = (0..40).map(|i| (format!("p{i}"), json!({"$ref": "#/$defs/color"}))).collect();
        let schema = json!({"$defs": {"color": {"enum": colors}}, "type": "object", "properties": properties});
        let g = grammar(&schema);
        assert_eq!(g.matches("\"\\\"color-49\\\"\"").count(), 1, "{g}");
        // The same long enum written out twice is also one rule (identical bodies are merged).
        let twice = json!({"type": "object", "properties": {"a": {"enum": colors}, "b": {"enum": colors}}});
        assert_eq!(grammar(&twice).matches("color-49").count(), 1);
    }

    #[test]
    fn distinct_schemas_whose_names_collide_keep_distinct_rules() {
        let schema = json!({"type": "object", "properties": {
            "a-b": {"type": "object", "properties": {"x": {"type": "integer"}}},
            "a_b": {"type": "object", "properties": {"y": {"type": "string"}}},
        }});
        let g = grammar(&schema);
        assert!(g.contains("root-value-a-b-obj ::=") && g.contains("root-value-a-b-obj2 ::="), "{g}");
        assert!(g.contains("\"\\\"x\\\"\"") && g.contains("\"\\\"y\\\"\""), "{g}");
    }

    #[test]
    fn a_pydantic_style_schema_converts() {
        // What `Model.model_json_schema()` gives for a model with a nested model, an optional
        // field, a literal and a list.
        let schema = json!({
            "$defs": {
                "Address": {"properties": {"street": {"title": "Street", "type": "string"}, "zip": {"title": "Zip", "type": "string", "maxLength": 10}},
                            "required": ["street", "zip"], "title": "Address", "type": "object", "additionalProperties": false}
            },
            "properties": {
                "name": {"title": "Name", "type": "string"},
                "age": {"anyOf": [{"type": "integer"}, {"type": "null"}], "title": "Age"},
                "role": {"enum": ["admin", "user"], "title": "Role", "type": "string"},
                "addresses": {"items": {"$ref": "#/$defs/Address"}, "title": "Addresses", "type": "array"},
                "home": {"$ref": "#/$defs/Address"}
            },
            "required": ["name", "age", "role", "addresses", "home"], "title": "Person", "type": "object", "additionalProperties": false
        });
        let g = grammar(&schema);
        assert!(g.contains("ref---defs-Address ::= ref---defs-Address-obj"), "{g}");
        assert!(g.contains("( integer | null )"), "{g}");
        assert!(g.contains(r#"root-value-addresses-arr ::= "[" ws ( ref---defs-Address ws"#), "{g}");
        assert!(g.contains("char{0,10}"), "{g}");
        // Repetitions count as what llama.cpp expands them to.
        let long_strings: serde_json::Map<String, Value> = (0..4).map(|i| (format!("s{i}"), json!({"type": "string", "maxLength": 10_000 - i}))).collect();
        let err = schema_grammar(&json!({"type": "object", "properties": long_strings}), &BUDGET).unwrap_err();
        assert!(err.0.contains("limits.max_grammar_bytes"), "{err}");
    }
}
