//! JSON schema → GBNF under the default budget: any JSON is a grammar or a clear error within the
//! time budget (plus slack for a loaded machine), never a panic, and a grammar stays within its
//! byte budget.
#![no_main]

#[path = "../../daemon/src/service/structured.rs"]
#[allow(dead_code)]
mod structured;

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

/// The defaults of `[limits]` (config/hearth.toml): nodes, grammar bytes, conversion time.
const BUDGET: structured::Budget =
    structured::Budget { max_nodes: 5_000, max_grammar_bytes: 131_072, max_time: Duration::from_millis(1_000) };

fuzz_target!(|data: &[u8]| {
    let Ok(schema) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let started = Instant::now();
    let result = structured::schema_grammar(&schema, &BUDGET);
    assert!(started.elapsed() < BUDGET.max_time + Duration::from_secs(2), "conversion ran {:?}", started.elapsed());
    if let Ok(grammar) = result {
        assert!(grammar.len() <= BUDGET.max_grammar_bytes + 4096, "grammar of {} bytes", grammar.len());
        assert!(grammar.starts_with("root ::= "), "no root rule");
    }
});
