//! Tool calls out of a model's text, by the convention its template uses ([`ToolFormat`]):
//! Hermes/Qwen `<tool_call>{"name", "arguments"}</tool_call>` blocks, Llama 3.x bare
//! `{"name", "parameters"}` objects (optionally after `<|python_tag|>`, several separated by `;`),
//! Mistral `[TOOL_CALLS][{"name", "arguments"}, ...]`.
//!
//! A call counts only when its JSON parses, its name is one of the offered functions and its
//! arguments are an object; otherwise the whole output stays text (with a grammar in force this
//! does not happen: see `tools.rs`). Text before the first call is the message's `content`.
//!
//! [`StreamParser`] does the same over a stream of deltas: it holds back text while the output
//! could still be the start of a call, passes text through once it cannot, and emits each call
//! as soon as its block is complete.

use engine::ToolFormat;
use serde_json::Value;

use super::tools::{arguments_key, new_call_id, ToolCall};

/// A model's output, split into text and calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Text outside the calls (before the first), trimmed; `None` when there is none.
    pub content: Option<String>,
    pub calls: Vec<ToolCall>,
}

/// Split `text` into content and calls to the functions named in `names`.
pub fn parse(text: &str, format: ToolFormat, names: &[String]) -> Parsed {
    let as_text = || Parsed { content: Some(text.to_owned()), calls: Vec::new() };
    let Some((before, calls)) = (match format {
        ToolFormat::Hermes => hermes(text, names),
        ToolFormat::Llama3 => llama3(text, names),
        ToolFormat::Mistral => mistral(text, names),
    }) else {
        return as_text();
    };
    if calls.is_empty() {
        return as_text();
    }
    let before = before.trim();
    Parsed { content: (!before.is_empty()).then(|| before.to_owned()), calls }
}

/// One call object: `{"name": ..., <key>: {...}}` (the arguments may also come as a JSON string).
fn call(value: &Value, key: &str, names: &[String]) -> Option<ToolCall> {
    let name = value.get("name")?.as_str()?;
    if !names.iter().any(|n| n == name) {
        return None;
    }
    let arguments = match value.get(key).or_else(|| value.get("arguments")).or_else(|| value.get("parameters"))? {
        object @ Value::Object(_) => object.to_string(),
        Value::String(s) if serde_json::from_str::<Value>(s).is_ok_and(|v| v.is_object()) => s.clone(),
        _ => return None,
    };
    Some(ToolCall { id: new_call_id(), name: name.to_owned(), arguments })
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

fn hermes<'t>(text: &'t str, names: &[String]) -> Option<(&'t str, Vec<ToolCall>)> {
    let first = text.find(OPEN)?;
    let mut calls = Vec::new();
    let mut rest = &text[first..];
    while let Some(after) = rest.trim_start().strip_prefix(OPEN) {
        let (body, next) = match after.find(CLOSE) {
            Some(end) => (&after[..end], &after[end + CLOSE.len()..]),
            None => (after, ""), // the closing tag may be cut off by the end of generation
        };
        let value: Value = serde_json::from_str(body.trim()).ok()?;
        calls.push(call(&value, "arguments", names)?);
        rest = next;
    }
    rest.trim().is_empty().then_some((&text[..first], calls))
}

fn llama3<'t>(text: &'t str, names: &[String]) -> Option<(&'t str, Vec<ToolCall>)> {
    let trimmed = text.trim_start();
    let body = trimmed.strip_prefix("<|python_tag|>").unwrap_or(trimmed).trim();
    if !body.starts_with('{') {
        return None;
    }
    let mut calls = Vec::new();
    let stream = serde_json::Deserializer::from_str(body).into_iter::<Value>();
    let mut end = 0;
    for value in stream {
        let value = value.ok()?;
        calls.push(call(&value, arguments_key(ToolFormat::Llama3), names)?);
        end = body.len();
    }
    (end > 0).then_some(("", calls))
}

fn mistral<'t>(text: &'t str, names: &[String]) -> Option<(&'t str, Vec<ToolCall>)> {
    let start = text.find("[TOOL_CALLS]")?;
    let list: Value = serde_json::from_str(text[start + "[TOOL_CALLS]".len()..].trim()).ok()?;
    let calls = list.as_array()?.iter().map(|v| call(v, "arguments", names)).collect::<Option<Vec<_>>>()?;
    Some((&text[..start], calls))
}

/// What a [`StreamParser`] lets out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// The `index`-th call of the message.
    Call { index: usize, call: ToolCall },
}

/// [`parse`] over a stream of text deltas.
#[derive(Debug)]
pub struct StreamParser {
    format: ToolFormat,
    names: Vec<String>,
    mode: Mode,
    /// Text held back (undecided) or the calls' text so far.
    buffer: String,
    /// Calls already let out.
    emitted: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only whitespace, or a prefix of the call opener, so far.
    Undecided,
    Text,
    Calls,
}

impl StreamParser {
    pub fn new(format: ToolFormat, names: Vec<String>) -> Self {
        Self { format, names, mode: Mode::Undecided, buffer: String::new(), emitted: 0 }
    }

    fn opener(&self) -> &'static str {
        match self.format {
            ToolFormat::Hermes => OPEN,
            ToolFormat::Llama3 => "{",
            ToolFormat::Mistral => "[TOOL_CALLS]",
        }
    }

    /// Feed one delta; returns what can be let out now.
    pub fn push(&mut self, delta: &str) -> Vec<Piece> {
        if self.mode == Mode::Text {
            return vec![Piece::Text(delta.to_owned())];
        }
        self.buffer.push_str(delta);
        if self.mode == Mode::Undecided {
            let head = self.buffer.trim_start();
            let head = if self.format == ToolFormat::Llama3 { head.strip_prefix("<|python_tag|>").unwrap_or(head) } else { head };
            let opener = self.opener();
            if head.is_empty() || (opener.starts_with(head) && head.len() < opener.len()) || (self.format == ToolFormat::Llama3 && "<|python_tag|>".starts_with(head)) {
                return Vec::new();
            }
            if head.starts_with(opener) {
                self.mode = Mode::Calls;
            } else {
                self.mode = Mode::Text;
                return vec![Piece::Text(std::mem::take(&mut self.buffer))];
            }
        }
        self.complete_calls()
    }

    /// Calls whose blocks are complete and not yet let out (Hermes: closed by `</tool_call>`;
    /// the other formats are parsed whole at the end).
    fn complete_calls(&mut self) -> Vec<Piece> {
        if self.format != ToolFormat::Hermes {
            return Vec::new();
        }
        let closed = self.buffer.rfind(CLOSE).map_or(0, |end| end + CLOSE.len());
        let parsed = parse(&self.buffer[..closed], self.format, &self.names);
        self.take_new(parsed.calls)
    }

    fn take_new(&mut self, calls: Vec<ToolCall>) -> Vec<Piece> {
        let new: Vec<Piece> = calls.into_iter().enumerate().skip(self.emitted).map(|(index, call)| Piece::Call { index, call }).collect();
        self.emitted += new.len();
        new
    }

    /// The end of the stream: the calls left, or the held-back text when it was no call after all.
    pub fn finish(&mut self) -> Vec<Piece> {
        match self.mode {
            Mode::Text => Vec::new(),
            Mode::Undecided => {
                let text = std::mem::take(&mut self.buffer);
                if text.is_empty() { Vec::new() } else { vec![Piece::Text(text)] }
            }
            Mode::Calls => {
                let parsed = parse(&self.buffer, self.format, &self.names);
                if parsed.calls.is_empty() {
                    // Never a valid call: the text as it came (this is what the client sees
                    // without tools, so nothing is lost).
                    self.mode = Mode::Text;
                    return vec![Piece::Text(std::mem::take(&mut self.buffer))];
                }
                self.take_new(parsed.calls)
            }
        }
    }

    /// Calls let out so far.
    pub fn calls(&self) -> usize {
        self.emitted
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["get_weather".into(), "get_time".into()]
    }

    #[test]
    fn hermes_blocks_become_calls_with_text_before_them_as_content() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}\n</tool_call>";
        let p = parse(text, ToolFormat::Hermes, &names());
        assert_eq!(p.content.as_deref(), Some("Let me check."));
        assert_eq!(p.calls.len(), 2);
        assert_eq!((p.calls[0].name.as_str(), p.calls[0].arguments.as_str()), ("get_weather", r#"{"city":"Oslo"}"#));
        assert!(p.calls[0].id.starts_with("call_") && p.calls[0].id != p.calls[1].id);
        // An unclosed last block (generation ended) still counts.
        let p = parse("<tool_call>{\"name\": \"get_time\", \"arguments\": {}}", ToolFormat::Hermes, &names());
        assert_eq!(p.calls.len(), 1);
    }

    #[test]
    fn unknown_names_broken_json_or_non_object_arguments_leave_text() {
        for text in [
            "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"get_time\", \"arguments\": {\"zone\": </tool_call>",
            "<tool_call>{\"name\": \"get_time\", \"arguments\": [1]}</tool_call>",
            "just text",
        ] {
            let p = parse(text, ToolFormat::Hermes, &names());
            assert_eq!((p.content.as_deref(), p.calls.len()), (Some(text), 0), "{text}");
        }
    }

    #[test]
    fn llama3_and_mistral_conventions_parse() {
        let p = parse("<|python_tag|>{\"name\": \"get_time\", \"parameters\": {\"zone\": \"UTC\"}}", ToolFormat::Llama3, &names());
        assert_eq!((p.calls.len(), p.calls[0].arguments.as_str()), (1, r#"{"zone":"UTC"}"#));
        let p = parse("{\"name\": \"get_time\", \"parameters\": {}} {\"name\": \"get_weather\", \"parameters\": {\"city\": \"X\"}}", ToolFormat::Llama3, &names());
        assert_eq!(p.calls.len(), 2);
        assert!(parse("The answer is {not json}", ToolFormat::Llama3, &names()).calls.is_empty());
        let p = parse("[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]", ToolFormat::Mistral, &names());
        assert_eq!((p.calls.len(), p.calls[0].name.as_str()), (1, "get_weather"));
    }

    fn feed(parser: &mut StreamParser, text: &str, step: usize) -> Vec<Piece> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        for chunk in chars.chunks(step) {
            out.extend(parser.push(&chunk.iter().collect::<String>()));
        }
        out.extend(parser.finish());
        out
    }

    #[test]
    fn the_stream_parser_lets_calls_out_as_their_blocks_close_and_text_through_at_once() {
        let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        for step in [1, 3, 7, 1000] {
            let mut p = StreamParser::new(ToolFormat::Hermes, names());
            let out = feed(&mut p, text, step);
            let calls: Vec<(usize, String)> = out
                .iter()
                .map(|piece| match piece {
                    Piece::Call { index, call } => (*index, call.name.clone()),
                    Piece::Text(t) => panic!("text {t:?} at step {step}"),
                })
                .collect();
            assert_eq!(calls, vec![(0, "get_weather".to_owned()), (1, "get_time".to_owned())], "step {step}");
        }
        // The first call is out before the second block starts.
        let mut p = StreamParser::new(ToolFormat::Hermes, names());
        let first_block = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        assert_eq!(p.push(first_block).len(), 1);
        // Text: held only while it could still open a call.
        let mut p = StreamParser::new(ToolFormat::Hermes, names());
        assert!(p.push("  <to").is_empty());
        assert_eq!(p.push("day is nice"), vec![Piece::Text("  <today is nice".into())]);
        assert_eq!(p.push(" indeed"), vec![Piece::Text(" indeed".into())]);
        // A broken call comes out as the text it was.
        let mut p = StreamParser::new(ToolFormat::Hermes, names());
        let out = feed(&mut p, "<tool_call>{\"name\": \"nope\"}", 4);
        assert_eq!(out, vec![Piece::Text("<tool_call>{\"name\": \"nope\"}".into())]);
    }
}
