//! Structured output: OpenAI's `response_format` (`json_object`, `json_schema`) as a GBNF grammar
//! that llama.cpp's grammar sampler enforces token by token, so the output parses by
//! construction instead of by request.
//!
//! The schema subset is the one OpenAI's strict mode accepts: `object` (every listed property,
//! in order, as strict mode requires them all), `array` (`items`, `minItems`, `maxItems`),
//! `string` (`enum`), `number`, `integer`, `boolean`, `null`, `enum`, `const`, `anyOf`/`oneOf`,
//! type lists such as `["string", "null"]`, and `$ref` into `$defs`/`definitions`. Anything else
//! is a 400 that names the keyword, never a silently looser grammar.

use std::collections::BTreeMap;

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

/// The grammar for `response_format`, or `None` for plain text.
pub fn grammar_for(response_format: &Value) -> Result<Option<String>, SchemaError> {
    match response_format.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(format!("root ::= object\n{PRIMITIVES}"))),
        Some("json_schema") => {
            let schema = response_format
                .pointer("/json_schema/schema")
                .ok_or_else(|| SchemaError("response_format.json_schema.schema is missing".into()))?;
            Ok(Some(schema_grammar(schema)?))
        }
        Some(other) => Err(SchemaError(format!("response_format type {other:?} is not one of text, json_object, json_schema"))),
    }
}

/// A GBNF grammar whose `root` is exactly the documents `schema` accepts (in the subset above).
pub fn schema_grammar(schema: &Value) -> Result<String, SchemaError> {
    let mut b = Builder { root: schema, rules: BTreeMap::new(), depth: 0 };
    let root = b.rule_for(schema, "root-value")?;
    let mut out = format!("root ::= {root}\n");
    for (name, body) in &b.rules {
        out.push_str(&format!("{name} ::= {body}\n"));
    }
    out.push_str(PRIMITIVES);
    Ok(out)
}

struct Builder<'a> {
    root: &'a Value,
    rules: BTreeMap<String, String>,
    depth: usize,
}

impl Builder<'_> {
    /// A rule name (or inline expression) for `schema`, defining named rules as needed.
    fn rule_for(&mut self, schema: &Value, hint: &str) -> Result<String, SchemaError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(SchemaError("the schema nests deeper than 64 levels (a $ref cycle?)".into()));
        }
        let out = self.expression(schema, hint);
        self.depth -= 1;
        out
    }

    fn expression(&mut self, schema: &Value, hint: &str) -> Result<String, SchemaError> {
        let Some(obj) = schema.as_object() else {
            return match schema {
                Value::Bool(true) => Ok("value".into()),
                _ => Err(SchemaError(format!("schema at {hint} must be an object")))
            };
        };
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            return self.reference(reference);
        }
        if let Some(values) = obj.get("enum").and_then(Value::as_array) {
            return Ok(alternatives(values.iter().map(literal).collect::<Result<Vec<_>, _>>()?));
        }
        if let Some(value) = obj.get("const") {
            return literal(value);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = obj.get(key).and_then(Value::as_array) {
                let parts = options.iter().enumerate().map(|(i, o)| self.rule_for(o, &format!("{hint}-{i}"))).collect::<Result<Vec<_>, _>>()?;
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
                let parts = types
                    .iter()
                    .map(|t| {
                        let mut single = obj.clone();
                        single.insert("type".into(), t.clone());
                        self.rule_for(&Value::Object(single), hint)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(alternatives(parts))
            }
            Some(Value::String(t)) => match t.as_str() {
                "object" => self.object(obj, hint),
                "array" => self.array(obj, hint),
                "string" if obj.contains_key("minLength") || obj.contains_key("maxLength") => bounded_string(obj, hint),
                "string" | "number" | "integer" | "boolean" | "null" => Ok(t.clone()),
                other => Err(SchemaError(format!("unknown JSON schema type {other:?} at {hint}"))),
            },
            None if obj.contains_key("properties") => self.object(obj, hint),
            None => Ok("value".into()),
            Some(other) => Err(SchemaError(format!("`type` at {hint} must be a string or a list, not {other}"))),
        }
    }

    fn object(&mut self, obj: &serde_json::Map<String, Value>, hint: &str) -> Result<String, SchemaError> {
        let Some(properties) = obj.get("properties").and_then(Value::as_object) else {
            return Ok("object".into());
        };
        let mut parts = Vec::new();
        for (i, (key, sub)) in properties.iter().enumerate() {
            let value = self.rule_for(sub, &format!("{hint}-{}", sanitize(key)))?;
            let name = serde_json::to_string(key).map_err(|e| SchemaError(e.to_string()))?;
            let sep = if i == 0 { "" } else { "\",\" ws " };
            parts.push(format!("{sep}{} ws \":\" ws {value} ws", gbnf_string(&name)));
        }
        let name = format!("{}-obj", sanitize(hint));
        self.rules.insert(name.clone(), format!("\"{{\" ws {} \"}}\"", parts.join(" ")));
        Ok(name)
    }

    fn array(&mut self, obj: &serde_json::Map<String, Value>, hint: &str) -> Result<String, SchemaError> {
        let item = match obj.get("items") {
            Some(items) => self.rule_for(items, &format!("{hint}-item"))?,
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
        let name = format!("{}-arr", sanitize(hint));
        self.rules.insert(name.clone(), body);
        Ok(name)
    }

    fn reference(&mut self, reference: &str) -> Result<String, SchemaError> {
        let path = reference.strip_prefix('#').ok_or_else(|| SchemaError(format!("only local $refs (\"#/$defs/...\") are supported, not {reference:?}")))?;
        let name = format!("ref-{}", sanitize(path));
        if self.rules.contains_key(&name) {
            return Ok(name);
        }
        let target = self.root.pointer(path).ok_or_else(|| SchemaError(format!("$ref {reference:?} points at nothing")))?.clone();
        self.rules.insert(name.clone(), "value".into()); // placeholder: lets recursive schemas refer to it
        let body = self.rule_for(&target, &name)?;
        self.rules.insert(name.clone(), body);
        Ok(name)
    }
}

/// A string of `minLength..=maxLength` characters (escapes count as one).
fn bounded_string(obj: &serde_json::Map<String, Value>, hint: &str) -> Result<String, SchemaError> {
    let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let max = obj.get("maxLength").and_then(Value::as_u64);
    if max.is_some_and(|m| m < min || m > 10_000) || min > 10_000 {
        return Err(SchemaError(format!("minLength/maxLength at {hint} must satisfy minLength <= maxLength <= 10000")));
    }
    Ok(match max {
        Some(m) => format!("\"\\\"\" char{{{min},{m}}} \"\\\"\""),
        None => format!("\"\\\"\" char{{{min},}} \"\\\"\""),
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

/// Rule names allow `[a-zA-Z0-9-]`.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let g = schema_grammar(&schema).unwrap_or_else(|e| panic!("{e}"));
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
        let g = schema_grammar(&schema).unwrap_or_else(|e| panic!("{e}"));
        assert!(g.contains("ref---defs-node ::= ref---defs-node-obj"), "{g}");
        assert!(g.contains("( ref---defs-node | null )"), "{g}");
        let bounded = schema_grammar(&json!({"type": "string", "minLength": 1, "maxLength": 12})).unwrap_or_else(|e| panic!("{e}"));
        assert!(bounded.starts_with("root ::= \"\\\"\" char{1,12} \"\\\"\"\n"), "{bounded}");
        let err = schema_grammar(&json!({"type": "string", "pattern": "^a+$"})).unwrap_err();
        assert!(err.0.contains("`pattern`"), "{err}");
        assert!(schema_grammar(&json!({"$ref": "https://example.com/s.json"})).is_err());
    }
}
