//! The tools in a generation's prompt: what a request offers (functions, `tool_choice`,
//! `parallel_tool_calls`), the tool parts of its history, and how a local model is told about
//! them: a chat template that renders tools itself gets them as [`ToolPrompt`]
//! ([`ChatTools::template_tools`]); one that does not (SmolLM2's plain ChatML) gets a Hermes-style
//! system block, with calls and results written into the turns ([`plain_messages`]), which is how
//! Qwen and Hermes templates lay them out.
//!
//! Plain data and prompt layout, no validation: the service layer (`service::tools`) reads these
//! out of a request, checks them, and builds the grammar that makes a call valid by construction.

use engine::{ChatMessage, ToolPrompt};
use serde_json::{json, Value};

/// One function the client offers.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTool {
    pub name: String,
    pub description: Option<String>,
    /// The arguments' JSON schema (`{"type": "object"}` when the client gave none).
    pub parameters: Value,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Named(String),
}

/// A call the model made, or one from the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text, as OpenAI sends it.
    pub arguments: String,
}

/// The tools a request offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    pub functions: Vec<FunctionTool>,
    pub choice: ToolChoice,
    pub parallel: bool,
}

impl Tools {
    /// The functions the model is told about: none for `tool_choice: "none"`, only the named one
    /// for a named choice.
    pub fn offered(&self) -> Vec<&FunctionTool> {
        match &self.choice {
            ToolChoice::None => Vec::new(),
            ToolChoice::Named(name) => self.functions.iter().filter(|f| &f.name == name).collect(),
            ToolChoice::Auto | ToolChoice::Required => self.functions.iter().collect(),
        }
    }
}

/// The tool parts of a conversation, by message index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// An assistant message's calls.
    pub calls: Vec<(usize, Vec<ToolCall>)>,
    /// A `tool` message's call id.
    pub results: Vec<(usize, String)>,
}

/// What a chat generation knows about tools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatTools {
    pub tools: Option<Tools>,
    pub history: History,
}

impl ChatTools {
    /// Nothing about tools: the prompt is plain messages.
    pub fn is_empty(&self) -> bool {
        self.tools.is_none() && self.history.calls.is_empty() && self.history.results.is_empty()
    }

    /// The functions offered to the model.
    pub fn offered(&self) -> Vec<&FunctionTool> {
        self.tools.as_ref().map(Tools::offered).unwrap_or_default()
    }

    /// For a template that renders tools itself.
    pub fn template_tools(&self) -> ToolPrompt {
        let tools = self
            .offered()
            .into_iter()
            .map(|f| json!({"type": "function", "function": {"name": f.name, "description": f.description.clone().unwrap_or_default(), "parameters": f.parameters}}))
            .collect();
        let tool_calls = self
            .history
            .calls
            .iter()
            .map(|(i, calls)| {
                let list: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        let arguments = serde_json::from_str::<Value>(&c.arguments).unwrap_or_else(|_| json!(c.arguments));
                        json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": arguments}})
                    })
                    .collect();
                (*i, Value::Array(list))
            })
            .collect();
        ToolPrompt { tools, tool_calls, tool_call_ids: self.history.results.clone() }
    }
}

/// The conversation as plain messages for a template without tools: a Hermes-style system block
/// listing the offered tools, calls written into their assistant turns, results as
/// `<tool_response>` user turns.
pub fn plain_messages(messages: &[ChatMessage], tools: &ChatTools) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if let Some((_, calls)) = tools.history.calls.iter().find(|(j, _)| *j == i) {
                let written: Vec<String> = calls.iter().map(|c| hermes_call(&c.name, &c.arguments)).collect();
                let content = if m.content.is_empty() { written.join("\n") } else { format!("{}\n{}", m.content, written.join("\n")) };
                ChatMessage { role: m.role.clone(), content }
            } else if m.role == "tool" {
                ChatMessage { role: "user".into(), content: format!("<tool_response>\n{}\n</tool_response>", m.content) }
            } else {
                m.clone()
            }
        })
        .collect();
    let offered = tools.offered();
    if !offered.is_empty() {
        let block = hermes_system_block(&offered);
        match out.first_mut() {
            Some(first) if first.role == "system" => first.content = format!("{}\n\n{block}", first.content),
            _ => out.insert(0, ChatMessage { role: "system".into(), content: block }),
        }
    }
    out
}

fn hermes_call(name: &str, arguments: &str) -> String {
    let arguments = serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!(arguments));
    format!("<tool_call>\n{}\n</tool_call>", json!({"name": name, "arguments": arguments}))
}

fn hermes_system_block(offered: &[&FunctionTool]) -> String {
    let listed: Vec<String> = offered
        .iter()
        .map(|f| json!({"type": "function", "function": {"name": f.name, "description": f.description.clone().unwrap_or_default(), "parameters": f.parameters}}).to_string())
        .collect();
    format!(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{}\n</tools>\n\n\
         For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n\
         <tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>",
        listed.join("\n")
    )
}
