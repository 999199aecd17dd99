//! Vector-store search filters from any JSON: a filter or a clear error, never a panic; a parsed
//! filter evaluates against any attributes without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::model::Attributes;
use store::Filter;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(filter) = Filter::parse(&value) {
        let attributes: Attributes = serde_json::from_value(serde_json::json!({"a": 1, "b": "x", "c": true})).unwrap_or_default();
        let _ = filter.matches(&attributes, &Attributes::default());
    }
});
