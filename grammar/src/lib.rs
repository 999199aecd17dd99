//! JSON schema to GBNF with llama.cpp's own converter (`common/json-schema-to-grammar.cpp`, the
//! one llama.cpp's server uses for `response_format` and tool calls), so hearth accepts the same
//! schemas: `pattern`, `format` (`date`, `time`, `date-time`, `uuid`), `minimum`/`maximum` and the
//! exclusive forms, `minLength`/`maxLength`, `minItems`/`maxItems`, `allOf`/`anyOf`/`oneOf`,
//! `required` (optional properties may be left out), `additionalProperties`, `$ref` into `$defs`
//! or `definitions`, `const`, `enum`, tuples (`prefixItems`).
//!
//! The converter is C++ compiled by this crate's build script; [`json_schema_to_grammar`] is the
//! only way in. Its C shim catches every C++ exception (a malformed schema, an unknown `$ref`, an
//! unsupported regex construct) and returns the message, so no exception ever unwinds into Rust and
//! no schema aborts the process. The root rule of the grammar is `root`.

use std::ffi::c_char;

/// Why a schema could not be converted: the converter's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

extern "C" {
    fn hearth_json_schema_to_grammar(schema: *const c_char, schema_len: usize, out: *mut *mut c_char, out_len: *mut usize) -> i32;
    fn hearth_grammar_free(p: *mut c_char);
}

/// The GBNF grammar (root rule `root`) for the JSON schema `schema` (JSON text).
pub fn json_schema_to_grammar(schema: &str) -> Result<String, SchemaError> {
    let mut out: *mut c_char = std::ptr::null_mut();
    let mut out_len = 0usize;
    // SAFETY: `schema` is valid for `schema.len()` bytes for the call; the shim writes a malloc'd
    // buffer of `out_len` bytes (plus a NUL) to `out`, or null, and catches every C++ exception.
    let status = unsafe { hearth_json_schema_to_grammar(schema.as_ptr().cast(), schema.len(), &mut out, &mut out_len) };
    if out.is_null() {
        return Err(SchemaError("the schema converter ran out of memory".into()));
    }
    // SAFETY: `out` is non-null and points to `out_len` initialized bytes owned by us until freed.
    let bytes = unsafe { std::slice::from_raw_parts(out.cast::<u8>(), out_len) };
    let text = String::from_utf8_lossy(bytes).into_owned();
    // SAFETY: `out` came from the shim's malloc and is freed once, here.
    unsafe { hearth_grammar_free(out) };
    match status {
        0 => Ok(text),
        _ => Err(SchemaError(text.trim().to_owned())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn a_simple_object_keeps_its_property_order_and_has_a_root() {
        let g = json_schema_to_grammar(r#"{"type":"object","properties":{"zeta":{"type":"string"},"alpha":{"type":"integer"}},"required":["zeta","alpha"]}"#).unwrap();
        assert!(g.contains("root ::= "), "{g}");
        let (z, a) = (g.find("zeta").unwrap(), g.find("alpha").unwrap());
        let root = g.lines().find(|l| l.starts_with("root ::=")).unwrap();
        assert!(root.find("zeta").unwrap() < root.find("alpha").unwrap(), "order kept: {root} ({z} {a})");
    }

    #[test]
    fn formats_ranges_patterns_and_all_of_convert() {
        let schema = r#"{"type":"object","properties":{
            "when":{"type":"string","format":"date-time"},
            "id":{"type":"string","format":"uuid"},
            "n":{"type":"integer","minimum":1,"maximum":10},
            "code":{"type":"string","pattern":"^[A-Z]{3}$"},
            "both":{"allOf":[{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]},
                             {"type":"object","properties":{"b":{"type":"number"}}}]}},
            "required":["when","id","n","code"],"additionalProperties":false}"#;
        let g = json_schema_to_grammar(schema).unwrap();
        for needle in ["root ::=", "uuid", "date-time", "[A-Z]"] {
            assert!(g.contains(needle), "{needle} missing from\n{g}");
        }
    }

    #[test]
    fn errors_thrown_inside_the_converter_come_back_as_messages() {
        // Not JSON: nlohmann's parse error, thrown in C++.
        let err = json_schema_to_grammar("{not json").unwrap_err();
        assert!(!err.0.is_empty(), "{err}");
        // A reference to nothing: the converter's own error, thrown as std::invalid_argument.
        let err = json_schema_to_grammar(r##"{"type":"object","properties":{"a":{"$ref":"#/$defs/missing"}}}"##).unwrap_err();
        assert!(err.0.contains("missing") || err.0.to_lowercase().contains("ref"), "{err}");
        // And the converter still works afterwards.
        assert!(json_schema_to_grammar(r#"{"type":"boolean"}"#).is_ok());
    }
}
