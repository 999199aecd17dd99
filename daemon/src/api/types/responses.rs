//! The events of a streamed response (`POST /v1/responses` with `stream`), as typed structs: each
//! event's data is one of these, with `type` (the event's name) and `sequence_number` appended
//! after its own fields ([`Envelope`]), the order hearth sent before these types existed. The
//! response object and its output items are the service's (`service::response_object`: the
//! stored record is the same JSON), re-exported here for `api::openapi`. The events are not in the
//! OpenAPI document one by one: it describes a stream as its server-sent events (`StreamEvent`).

use serde::Serialize;
use serde_json::Value;

pub use crate::service::response_object::{MessageItem, OutputItem, OutputText, ResponseObject};

/// One event's data: `data`'s fields, then `type` and `sequence_number`.
#[derive(Debug, Serialize)]
pub struct Envelope<'a, T: Serialize> {
    #[serde(flatten)]
    pub data: &'a T,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub sequence_number: u64,
}

/// `response.created`, `response.in_progress`, `response.completed`, `response.failed`.
#[derive(Debug, Serialize)]
pub struct ResponseEvent<'a> {
    pub response: &'a ResponseObject,
}

/// `response.output_item.added` and `response.output_item.done`.
#[derive(Debug, Serialize)]
pub struct OutputItemEvent<'a> {
    pub output_index: usize,
    pub item: &'a OutputItem,
}

/// `response.file_search_call.in_progress`, `.searching` and `.completed`.
#[derive(Debug, Serialize)]
pub struct FileSearchEvent<'a> {
    pub output_index: usize,
    pub item_id: &'a str,
}

/// `response.output_text.delta`.
#[derive(Debug, Serialize)]
pub struct TextDelta<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    pub delta: &'a str,
}

/// `response.output_text.done`.
#[derive(Debug, Serialize)]
pub struct TextDone<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    pub text: &'a str,
}

/// `response.content_part.added` and `response.content_part.done`.
#[derive(Debug, Serialize)]
pub struct ContentPartEvent<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    pub part: &'a OutputText,
}

/// `response.output_text.annotation.added`.
#[derive(Debug, Serialize)]
pub struct AnnotationAdded<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub content_index: usize,
    pub annotation_index: usize,
    pub annotation: &'a Value,
}

/// `response.function_call_arguments.delta`.
#[derive(Debug, Serialize)]
pub struct ArgumentsDelta<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub delta: &'a str,
}

/// `response.function_call_arguments.done`.
#[derive(Debug, Serialize)]
pub struct ArgumentsDone<'a> {
    pub item_id: &'a str,
    pub output_index: usize,
    pub arguments: &'a str,
}

/// `error`: the error body's `code`, `message` and `param` (before `response.failed`).
#[derive(Debug, Serialize)]
pub struct StreamError {
    pub code: Value,
    pub message: Value,
    pub param: Value,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn an_events_type_and_sequence_number_come_after_its_fields() {
        let delta = TextDelta { item_id: "msg_1", output_index: 1, content_index: 0, delta: "Hi" };
        let envelope = Envelope { data: &delta, kind: "response.output_text.delta", sequence_number: 7 };
        assert_eq!(
            serde_json::to_string(&envelope).unwrap(),
            r#"{"item_id":"msg_1","output_index":1,"content_index":0,"delta":"Hi","type":"response.output_text.delta","sequence_number":7}"#
        );
        let part = OutputText::opening();
        let added = ContentPartEvent { item_id: "msg_1", output_index: 0, content_index: 0, part: &part };
        let envelope = Envelope { data: &added, kind: "response.content_part.added", sequence_number: 3 };
        assert_eq!(
            serde_json::to_value(&envelope).unwrap().to_string(),
            r#"{"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]},"type":"response.content_part.added","sequence_number":3}"#
        );
    }
}
