//! The SSE parser (remote upstreams and `hearth bench` read streams with it): any bytes, split
//! anywhere, must parse without a panic, and splitting must not change what comes out.
#![no_main]

#[path = "../../client/src/sse_parser.rs"]
#[allow(dead_code)]
mod sse_parser;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let mut whole = sse_parser::SseParser::default();
    let all = whole.push(bytes);
    let at = usize::from(cut) % (bytes.len() + 1);
    let mut split = sse_parser::SseParser::default();
    let mut parts = split.push(&bytes[..at]);
    parts.extend(split.push(&bytes[at..]));
    assert_eq!(all, parts, "splitting the input at {at} changed the events");
});
