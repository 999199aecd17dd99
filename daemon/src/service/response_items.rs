//! The Responses API's items as a conversation, and the model's answer as output items.
//!
//! Input: `message` items become messages (`developer` is `system`); a replayed `function_call`
//! item joins the assistant message before it (or opens one) as a call; a
//! `function_call_output` becomes a `tool` message answering its `call_id`, which must name a
//! call earlier in the conversation (stored, through `previous_response_id`, or in this input):
//! otherwise a 400 naming `input[i].call_id`. Other item types (`file_search_call`, `reasoning`,
//! ...) are context the stored conversation already holds and are skipped.
//!
//! Prompt: [`chat_prompt`] turns the stored messages into the engine's messages and the tool
//! parts apart ([`History`], by message index), which is what the chat path's template and
//! Hermes-style prompt take (`service::tools`), so both APIs prompt a model for tools the same
//! way.
//!
//! Output: the answer's text (the message item) and its calls, each a `function_call` item whose
//! `id` is `fc_` + the call id's digits, so a streamed item, the finished response and the stored
//! one carry the same ids.

use engine::ChatMessage;
use serde_json::Value;

use super::response_object::FunctionCallItem;
use super::response_store::{Message, StoredCall};
use super::tools::{History, ToolCall};
use crate::fault::ServiceError;

/// What the model answered: its text (possibly empty) and its function calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub calls: Vec<ToolCall>,
}

impl Answer {
    /// The answer has a message item: it has text, or nothing else.
    pub fn has_message(&self) -> bool {
        !self.text.is_empty() || self.calls.is_empty()
    }

    /// The assistant message as stored.
    pub fn stored(&self) -> Message {
        Message { calls: self.calls.iter().map(stored_call).collect(), ..Message::text("assistant", &self.text) }
    }
}

fn stored_call(c: &ToolCall) -> StoredCall {
    StoredCall { call_id: c.id.clone(), name: c.name.clone(), arguments: c.arguments.clone() }
}

/// The `function_call` output item of `call`.
pub fn function_call_item(call: &ToolCall, arguments: &str, status: &'static str) -> FunctionCallItem {
    FunctionCallItem { id: item_id(call), call_id: call.id.clone(), name: call.name.clone(), arguments: arguments.to_owned(), status }
}

/// The output item id of a call: `fc_` and the call id's digits.
pub fn item_id(call: &ToolCall) -> String {
    format!("fc_{}", call.id.strip_prefix("call_").unwrap_or(&call.id))
}

/// The input items after `history` as messages.
pub fn input_messages(items: &[Value], history: &[Message]) -> Result<Vec<Message>, ServiceError> {
    let mut out: Vec<Message> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.get("type").and_then(Value::as_str).unwrap_or("message") {
            "message" => out.push(Message::text(role(i, item)?, &content(i, item)?)),
            "function_call" => {
                let call = replayed_call(i, item)?;
                match out.last_mut() {
                    Some(last) if last.role == "assistant" => last.calls.push(call),
                    _ => out.push(Message { calls: vec![call], ..Message::text("assistant", "") }),
                }
            }
            "function_call_output" => {
                let call_id = string(i, item, "call_id")?;
                let known = history.iter().chain(out.iter()).flat_map(|m| &m.calls).any(|c| c.call_id == call_id);
                if !known {
                    return Err(ServiceError::invalid(
                        &format!("input[{i}].call_id"),
                        format!("input[{i}] answers call_id {call_id:?}, but no function_call in this conversation has it: send the function_call item before it, or the previous_response_id of the response that made the call"),
                    ));
                }
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => text_parts(parts),
                    _ => return Err(ServiceError::invalid(&format!("input[{i}].output"), format!("input[{i}].output must be a string or a list of input_text parts"))),
                };
                out.push(Message { call_id: Some(call_id), ..Message::text("tool", &output) });
            }
            _ => {} // context the stored conversation holds (file_search_call, reasoning, ...)
        }
    }
    if !out.iter().any(|m| m.role == "user" || m.role == "tool") {
        return Err(ServiceError::invalid("input", "input needs at least one user message or function_call_output"));
    }
    Ok(out)
}

fn role(i: usize, item: &Value) -> Result<&'static str, ServiceError> {
    match item.get("role").and_then(Value::as_str) {
        Some("user") => Ok("user"),
        Some("assistant") => Ok("assistant"),
        Some("system" | "developer") => Ok("system"),
        other => Err(ServiceError::invalid(&format!("input[{i}].role"), format!("input[{i}].role {other:?} is not user, assistant, system or developer"))),
    }
}

fn content(i: usize, item: &Value) -> Result<String, ServiceError> {
    match item.get("content") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(text_parts(parts)),
        _ => Err(ServiceError::invalid(&format!("input[{i}].content"), format!("input[{i}].content must be a string or a list of text parts"))),
    }
}

fn text_parts(parts: &[Value]) -> String {
    parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
}

fn string(i: usize, item: &Value, key: &str) -> Result<String, ServiceError> {
    match item.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(ServiceError::invalid(&format!("input[{i}].{key}"), format!("input[{i}] ({}) needs a non-empty string {key}", item["type"]))),
    }
}

fn replayed_call(i: usize, item: &Value) -> Result<StoredCall, ServiceError> {
    let arguments = string(i, item, "arguments")?;
    if !serde_json::from_str::<Value>(&arguments).is_ok_and(|v| v.is_object()) {
        return Err(ServiceError::invalid(&format!("input[{i}].arguments"), format!("input[{i}].arguments must be the JSON text of an object")));
    }
    Ok(StoredCall { call_id: string(i, item, "call_id")?, name: string(i, item, "name")?, arguments })
}

/// The engine's messages and their tool parts, by index.
pub fn chat_prompt(messages: &[Message]) -> (Vec<ChatMessage>, History) {
    let mut history = History::default();
    let chat = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if !m.calls.is_empty() {
                let calls = m.calls.iter().map(|c| ToolCall { id: c.call_id.clone(), name: c.name.clone(), arguments: c.arguments.clone() }).collect();
                history.calls.push((i, calls));
            }
            if let Some(id) = &m.call_id {
                history.results.push((i, id.clone()));
            }
            ChatMessage { role: m.role.clone(), content: m.content.clone() }
        })
        .collect();
    (chat, history)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use serde_json::json;

    fn call_item(id: &str) -> Value {
        json!({"type": "function_call", "id": "fc_x", "call_id": id, "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}", "status": "completed"})
    }

    #[test]
    fn replayed_calls_join_the_assistant_message_and_outputs_answer_them() {
        let items = vec![
            json!({"role": "user", "content": "Weather in Oslo and Rome?"}),
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]}),
            call_item("call_1"),
            call_item("call_2"),
            json!({"type": "function_call_output", "call_id": "call_1", "output": "12 C"}),
            json!({"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "20 C"}]}),
            json!({"type": "reasoning", "summary": []}),
        ];
        let messages = input_messages(&items, &[]).unwrap();
        assert_eq!(messages.len(), 4);
        assert_eq!((messages[1].content.as_str(), messages[1].calls.len()), ("Checking.", 2));
        assert_eq!((messages[3].role.as_str(), messages[3].content.as_str(), messages[3].call_id.as_deref()), ("tool", "20 C", Some("call_2")));
        let (chat, history) = chat_prompt(&messages);
        assert_eq!(chat.len(), 4);
        assert_eq!(history.calls[0].0, 1);
        assert_eq!(history.calls[0].1[1].id, "call_2");
        assert_eq!(history.results, vec![(2, "call_1".to_owned()), (3, "call_2".to_owned())]);
    }

    #[test]
    fn an_output_must_answer_a_known_call_and_a_call_must_be_well_formed() {
        let orphan = vec![json!({"type": "function_call_output", "call_id": "call_9", "output": "x"})];
        let err = input_messages(&orphan, &[]).unwrap_err();
        assert!(matches!(&err, ServiceError::Invalid { field: Some(p), .. } if p == "input[0].call_id") && err.to_string().contains("call_9"), "{err}");
        // The call may come from the stored conversation.
        let stored = vec![Message { calls: vec![StoredCall { call_id: "call_9".into(), name: "f".into(), arguments: "{}".into() }], ..Message::text("assistant", "") }];
        assert_eq!(input_messages(&orphan, &stored).unwrap()[0].role, "tool");
        let mut bad = call_item("call_1");
        bad["arguments"] = json!("[1, 2]");
        let err = input_messages(&[json!({"role": "user", "content": "x"}), bad], &[]).unwrap_err();
        assert!(matches!(&err, ServiceError::Invalid { field: Some(p), .. } if p == "input[1].arguments"), "{err}");
        let err = input_messages(&[json!({"role": "assistant", "content": "only me"})], &[]).unwrap_err();
        assert!(err.to_string().contains("at least one user message or function_call_output"), "{err}");
    }

    #[test]
    fn output_items_share_ids_with_their_calls() {
        let call = ToolCall { id: "call_abc".into(), name: "f".into(), arguments: "{}".into() };
        let item = function_call_item(&call, "", "in_progress");
        assert_eq!((item.id.as_str(), item.call_id.as_str(), item.arguments.as_str()), ("fc_abc", "call_abc", ""));
        let answer = Answer { text: String::new(), calls: vec![call] };
        assert!(!answer.has_message() && Answer::default().has_message());
        assert_eq!(answer.stored().calls[0].call_id, "call_abc");
    }
}
