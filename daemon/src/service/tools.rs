//! Function tools: what a request offers (`tools`, `tool_choice`, `parallel_tool_calls`), the tool
//! parts of its history (assistant `tool_calls`, `tool` results), how a local model is prompted for
//! them, and the grammar that makes a call valid by construction.
//!
//! Prompting: a chat template that renders `tools` itself gets them (`engine::ToolPrompt`); one
//! that does not (SmolLM2's plain ChatML) gets a Hermes-style system block listing the tools and
//! asking for `<tool_call>{"name": …, "arguments": …}</tool_call>`, with earlier calls written the
//! same way in the assistant turns and results as `<tool_response>` user turns ([`plain_messages`]),
//! which is how Qwen and Hermes templates lay them out.
//!
//! Grammar ([`grammar`]): one call is a JSON object whose `name` is one of the offered functions
//! and whose `arguments` (Llama 3: `parameters`) follow that function's parameter schema,
//! converted by llama.cpp's converter within `[limits]`' schema budget. `required` and a named
//! choice allow only calls (one, or several with `parallel_tool_calls`); `auto` allows calls or
//! text that does not begin with the call opener, so a call, once begun, is always complete and
//! valid JSON for its schema. `none` offers no tools at all.

use engine::{ChatMessage, ToolFormat, ToolPrompt};
use serde_json::{json, Value};

use super::structured::{self, Budget};
use crate::error::ApiError;

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

impl ToolCall {
    /// OpenAI's `tool_calls[]` entry.
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}})
    }
}

/// A fresh call id (`call_` and 24 hex digits).
pub fn new_call_id() -> String {
    format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
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

    /// Chat Completions' shapes: `tools: [{"type": "function", "function": {...}}]`,
    /// `tool_choice: "auto" | "none" | "required" | {"type": "function", "function": {"name"}}`.
    /// `None` when the request has no tools.
    pub fn from_chat(tools: Option<&Value>, choice: Option<&Value>, parallel: Option<&Value>) -> Result<Option<Tools>, ApiError> {
        Self::parse(tools, choice, parallel, |i, tool| {
            let function = tool.get("function").ok_or_else(|| ApiError::invalid(&format!("tools[{i}].function"), format!("tools[{i}] has no `function`")))?;
            function_tool(&format!("tools[{i}].function"), function)
        }, |choice| choice.pointer("/function/name"))
    }

    /// The Responses API's shapes: `tools: [{"type": "function", "name", "parameters", ...}]`
    /// (other tool types are the caller's to handle; `skip` says which to pass over) and
    /// `tool_choice: ... | {"type": "function", "name"}`.
    pub fn from_responses(tools: &[Value], choice: Option<&Value>, parallel: Option<&Value>) -> Result<Option<Tools>, ApiError> {
        let functions: Vec<Value> = tools.iter().filter(|t| t.get("type").and_then(Value::as_str) == Some("function")).cloned().collect();
        let list = Value::Array(functions);
        Self::parse(Some(&list), choice, parallel, |i, tool| function_tool(&format!("tools[{i}]"), tool), |choice| choice.get("name"))
    }

    fn parse(
        tools: Option<&Value>,
        choice: Option<&Value>,
        parallel: Option<&Value>,
        function: impl Fn(usize, &Value) -> Result<FunctionTool, ApiError>,
        named: impl Fn(&Value) -> Option<&Value>,
    ) -> Result<Option<Tools>, ApiError> {
        let list = match tools {
            None | Some(Value::Null) => return check_choice_without_tools(choice),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(ApiError::invalid("tools", "tools must be a list of tools")),
        };
        let mut functions = Vec::with_capacity(list.len());
        for (i, tool) in list.iter().enumerate() {
            match tool.get("type").and_then(Value::as_str) {
                Some("function") => {}
                other => return Err(ApiError::invalid(&format!("tools[{i}].type"), format!("tools[{i}].type is {other:?}; hearth implements function tools"))),
            }
            let f = function(i, tool)?;
            if functions.iter().any(|g: &FunctionTool| g.name == f.name) {
                return Err(ApiError::invalid(&format!("tools[{i}]"), format!("two tools are named {:?}", f.name)));
            }
            functions.push(f);
        }
        if functions.is_empty() {
            return check_choice_without_tools(choice);
        }
        let choice = match choice {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                other => return Err(ApiError::invalid("tool_choice", format!("tool_choice {other:?} is not one of auto, none, required or a named function"))),
            },
            Some(object) => {
                let name = named(object).and_then(Value::as_str).ok_or_else(|| ApiError::invalid("tool_choice", "a named tool_choice needs the function's name"))?;
                if !functions.iter().any(|f| f.name == name) {
                    return Err(ApiError::invalid("tool_choice", format!("tool_choice names {name:?}, which is not among the tools")));
                }
                ToolChoice::Named(name.to_owned())
            }
        };
        let parallel = match parallel {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::invalid("parallel_tool_calls", "parallel_tool_calls must be true or false")),
        };
        Ok(Some(Tools { functions, choice, parallel }))
    }
}

fn check_choice_without_tools(choice: Option<&Value>) -> Result<Option<Tools>, ApiError> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "none" || s == "auto" => Ok(None),
        Some(_) => Err(ApiError::invalid("tool_choice", "tool_choice asks for a tool, but the request has no tools")),
    }
}

fn function_tool(param: &str, f: &Value) -> Result<FunctionTool, ApiError> {
    let name = f.get("name").and_then(Value::as_str).ok_or_else(|| ApiError::invalid(&format!("{param}.name"), format!("{param} has no name")))?;
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ApiError::invalid(&format!("{param}.name"), format!("function name {name:?} must be 1 to 64 letters, digits, _ or -")));
    }
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(ApiError::invalid(&format!("{param}.parameters"), format!("{param}.parameters must be a JSON schema object"))),
    };
    let description = f.get("description").and_then(Value::as_str).map(str::to_owned);
    Ok(FunctionTool { name: name.to_owned(), description, parameters })
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

/// The name of the arguments' key in a call object of this format.
pub fn arguments_key(format: ToolFormat) -> &'static str {
    match format {
        ToolFormat::Llama3 => "parameters",
        ToolFormat::Hermes | ToolFormat::Mistral => "arguments",
    }
}

/// The rule the converter's `root` becomes inside a tool grammar.
const CALL_RULE: &str = "hearth-tool-call";

/// The grammar that constrains a generation offered `tools`, or `None` when nothing is offered.
pub fn grammar(tools: &Tools, format: ToolFormat, budget: &Budget) -> Result<Option<String>, ApiError> {
    let offered = tools.offered();
    if offered.is_empty() {
        return Ok(None);
    }
    let key = arguments_key(format);
    let alternatives: Vec<Value> = offered
        .iter()
        .map(|f| json!({"type": "object", "properties": {"name": {"const": f.name}, key: f.parameters}, "required": ["name", key], "additionalProperties": false}))
        .collect();
    let schema = if alternatives.len() == 1 { alternatives[0].clone() } else { json!({"anyOf": alternatives}) };
    let converted = structured::schema_grammar(&schema, budget).map_err(|e| ApiError::BadRequest {
        message: format!("the tools' parameter schemas cannot be enforced: {e}"),
        param: Some("tools".into()),
        code: "invalid_value",
    })?;
    let mut rules: Vec<String> = converted
        .lines()
        .map(|line| match line.strip_prefix("root ::= ") {
            Some(body) => format!("{CALL_RULE} ::= {body}"),
            None => line.to_owned(),
        })
        .collect();
    let (one, many) = match format {
        ToolFormat::Hermes => {
            let one = format!(r#""<tool_call>\n" {CALL_RULE} "\n</tool_call>""#);
            (one.clone(), format!(r#"{one} ( "\n" {one} )*"#))
        }
        ToolFormat::Llama3 => (CALL_RULE.to_owned(), CALL_RULE.to_owned()),
        ToolFormat::Mistral => (format!(r#""[TOOL_CALLS][" {CALL_RULE} "]""#), format!(r#""[TOOL_CALLS][" {CALL_RULE} ( "," {CALL_RULE} )* "]""#)),
    };
    let calls = if tools.parallel { many } else { one };
    let root = match tools.choice {
        ToolChoice::Required | ToolChoice::Named(_) => format!("root ::= {calls}"),
        ToolChoice::Auto => format!("root ::= {calls} | hearth-free-text\nhearth-free-text ::= [^{}] [^\\x00]*", first_char_class(format)),
        ToolChoice::None => return Ok(None),
    };
    rules.insert(0, root);
    Ok(Some(rules.join("\n") + "\n"))
}

/// The first character of a call in this format, as a GBNF character-class member.
fn first_char_class(format: ToolFormat) -> &'static str {
    match format {
        ToolFormat::Hermes => "<",
        ToolFormat::Llama3 => "{",
        ToolFormat::Mistral => "\\[",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;
    use std::time::Duration;

    const BUDGET: Budget = Budget { max_nodes: 5_000, max_grammar_bytes: 65_536, max_time: Duration::from_secs(1) };

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}])
    }

    #[test]
    fn tool_choice_forms_parse_and_mistakes_are_named() {
        let t = Tools::from_chat(Some(&weather()), None, None).unwrap().unwrap();
        assert_eq!((t.choice.clone(), t.parallel, t.functions.len()), (ToolChoice::Auto, true, 2));
        let named = json!({"type": "function", "function": {"name": "get_time"}});
        let t = Tools::from_chat(Some(&weather()), Some(&named), Some(&json!(false))).unwrap().unwrap();
        assert_eq!(t.choice, ToolChoice::Named("get_time".into()));
        assert_eq!(t.offered().len(), 1);
        let none = Tools::from_chat(Some(&weather()), Some(&json!("none")), None).unwrap().unwrap();
        assert!(none.offered().is_empty());
        let err = Tools::from_chat(Some(&weather()), Some(&json!({"type": "function", "function": {"name": "nope"}})), None).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(Tools::from_chat(None, Some(&json!("required")), None).is_err());
        assert!(Tools::from_chat(Some(&json!([{"type": "code_interpreter"}])), None, None).is_err());
        let responses = json!([{"type": "function", "name": "f", "parameters": {"type": "object"}}, {"type": "file_search", "vector_store_ids": []}]);
        let t = Tools::from_responses(responses.as_array().unwrap(), Some(&json!({"type": "function", "name": "f"})), None).unwrap().unwrap();
        assert_eq!(t.choice, ToolChoice::Named("f".into()));
    }

    #[test]
    fn required_grammars_hold_only_calls_and_auto_also_free_text() {
        let mut t = Tools::from_chat(Some(&weather()), Some(&json!("required")), Some(&json!(false))).unwrap().unwrap();
        let g = grammar(&t, ToolFormat::Hermes, &BUDGET).unwrap().unwrap();
        assert!(g.starts_with("root ::= \"<tool_call>\\n\" hearth-tool-call \"\\n</tool_call>\"\n"), "{g}");
        assert!(g.contains("hearth-tool-call ::= ") && !g.contains("\nroot ::= ") && g.contains("get_weather") && g.contains("get_time"), "{g}");
        t.choice = ToolChoice::Auto;
        t.parallel = true;
        let g = grammar(&t, ToolFormat::Hermes, &BUDGET).unwrap().unwrap();
        assert!(g.lines().next().unwrap().ends_with("| hearth-free-text") && g.contains("( \"\\n\" \"<tool_call>"), "{g}");
        let g = grammar(&t, ToolFormat::Llama3, &BUDGET).unwrap().unwrap();
        assert!(g.contains("parameters") && g.contains("[^{]"), "{g}");
        t.choice = ToolChoice::None;
        assert_eq!(grammar(&t, ToolFormat::Hermes, &BUDGET).unwrap(), None);
    }

    #[test]
    fn plain_messages_list_the_tools_and_write_calls_and_results_hermes_style() {
        let tools = ChatTools {
            tools: Tools::from_chat(Some(&weather()), None, None).unwrap(),
            history: History { calls: vec![(1, vec![ToolCall { id: "call_1".into(), name: "get_weather".into(), arguments: r#"{"city":"Oslo"}"#.into() }])], results: vec![(2, "call_1".into())] },
        };
        let messages = vec![
            ChatMessage { role: "user".into(), content: "Weather in Oslo?".into() },
            ChatMessage { role: "assistant".into(), content: String::new() },
            ChatMessage { role: "tool".into(), content: "12 C".into() },
        ];
        let plain = plain_messages(&messages, &tools);
        assert_eq!(plain.len(), 4);
        assert_eq!(plain[0].role, "system");
        assert!(plain[0].content.contains("<tools>") && plain[0].content.contains("\"get_weather\""), "{}", plain[0].content);
        assert_eq!(plain[2].content, "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}\n</tool_call>");
        assert_eq!((plain[3].role.as_str(), plain[3].content.as_str()), ("user", "<tool_response>\n12 C\n</tool_response>"));
        let native = tools.template_tools();
        assert_eq!(native.tools.len(), 2);
        assert_eq!(native.tool_calls[0].1[0]["function"]["arguments"]["city"], "Oslo");
    }
}
