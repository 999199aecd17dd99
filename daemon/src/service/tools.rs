//! Function tools: reading what a request offers (`tools`, `tool_choice`, `parallel_tool_calls`)
//! in Chat Completions' and the Responses API's shapes, with a 400 that names the field, and the
//! grammar that makes a call valid by construction. The types themselves and how a local model is
//! prompted with them (a template's own tool rendering, or a Hermes-style system block:
//! [`plain_messages`]) live with the model runtime, in `provider::tools`, re-exported here.
//!
//! Grammar ([`grammar`]): one call is a JSON object whose `name` is one of the offered functions
//! and whose `arguments` (Llama 3: `parameters`) follow that function's parameter schema,
//! converted by llama.cpp's converter within `[limits]`' schema budget. `required` and a named
//! choice allow only calls (one, or several with `parallel_tool_calls`); `auto` allows calls or
//! text that does not begin with the call opener, so a call, once begun, is always complete and
//! valid JSON for its schema. `none` offers no tools at all.

use engine::ToolFormat;
use serde_json::{json, Value};

use super::structured::{self, Budget};
use crate::fault::ServiceError;
pub use crate::provider::tools::{plain_messages, ChatTools, FunctionTool, History, ToolCall, ToolChoice, Tools};

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

impl Tools {
    /// Chat Completions' shapes: `tools: [{"type": "function", "function": {...}}]`,
    /// `tool_choice: "auto" | "none" | "required" | {"type": "function", "function": {"name"}}`.
    /// `None` when the request has no tools.
    pub fn from_chat(tools: Option<&Value>, choice: Option<&Value>, parallel: Option<&Value>) -> Result<Option<Tools>, ServiceError> {
        Self::parse(tools, choice, parallel, |i, tool| {
            let function = tool.get("function").ok_or_else(|| ServiceError::invalid(&format!("tools[{i}].function"), format!("tools[{i}] has no `function`")))?;
            function_tool(&format!("tools[{i}].function"), function)
        }, |choice| choice.pointer("/function/name"))
    }

    /// The Responses API's shapes: `tools: [{"type": "function", "name", "parameters", ...}]`
    /// (other tool types are the caller's to handle; `skip` says which to pass over) and
    /// `tool_choice: ... | {"type": "function", "name"}`.
    pub fn from_responses(tools: &[Value], choice: Option<&Value>, parallel: Option<&Value>) -> Result<Option<Tools>, ServiceError> {
        let functions: Vec<Value> = tools.iter().filter(|t| t.get("type").and_then(Value::as_str) == Some("function")).cloned().collect();
        let list = Value::Array(functions);
        Self::parse(Some(&list), choice, parallel, |i, tool| function_tool(&format!("tools[{i}]"), tool), |choice| choice.get("name"))
    }

    fn parse(
        tools: Option<&Value>,
        choice: Option<&Value>,
        parallel: Option<&Value>,
        function: impl Fn(usize, &Value) -> Result<FunctionTool, ServiceError>,
        named: impl Fn(&Value) -> Option<&Value>,
    ) -> Result<Option<Tools>, ServiceError> {
        let list = match tools {
            None | Some(Value::Null) => return check_choice_without_tools(choice),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(ServiceError::invalid("tools", "tools must be a list of tools")),
        };
        let mut functions = Vec::with_capacity(list.len());
        for (i, tool) in list.iter().enumerate() {
            match tool.get("type").and_then(Value::as_str) {
                Some("function") => {}
                other => return Err(ServiceError::invalid(&format!("tools[{i}].type"), format!("tools[{i}].type is {other:?}; hearth implements function tools"))),
            }
            let f = function(i, tool)?;
            if functions.iter().any(|g: &FunctionTool| g.name == f.name) {
                return Err(ServiceError::invalid(&format!("tools[{i}]"), format!("two tools are named {:?}", f.name)));
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
                other => return Err(ServiceError::invalid("tool_choice", format!("tool_choice {other:?} is not one of auto, none, required or a named function"))),
            },
            Some(object) => {
                let name = named(object).and_then(Value::as_str).ok_or_else(|| ServiceError::invalid("tool_choice", "a named tool_choice needs the function's name"))?;
                if !functions.iter().any(|f| f.name == name) {
                    return Err(ServiceError::invalid("tool_choice", format!("tool_choice names {name:?}, which is not among the tools")));
                }
                ToolChoice::Named(name.to_owned())
            }
        };
        let parallel = match parallel {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ServiceError::invalid("parallel_tool_calls", "parallel_tool_calls must be true or false")),
        };
        Ok(Some(Tools { functions, choice, parallel }))
    }
}

fn check_choice_without_tools(choice: Option<&Value>) -> Result<Option<Tools>, ServiceError> {
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "none" || s == "auto" => Ok(None),
        Some(_) => Err(ServiceError::invalid("tool_choice", "tool_choice asks for a tool, but the request has no tools")),
    }
}

fn function_tool(param: &str, f: &Value) -> Result<FunctionTool, ServiceError> {
    let name = f.get("name").and_then(Value::as_str).ok_or_else(|| ServiceError::invalid(&format!("{param}.name"), format!("{param} has no name")))?;
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(ServiceError::invalid(&format!("{param}.name"), format!("function name {name:?} must be 1 to 64 letters, digits, _ or -")));
    }
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(ServiceError::invalid(&format!("{param}.parameters"), format!("{param}.parameters must be a JSON schema object"))),
    };
    let description = f.get("description").and_then(Value::as_str).map(str::to_owned);
    Ok(FunctionTool { name: name.to_owned(), description, parameters })
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
pub fn grammar(tools: &Tools, format: ToolFormat, budget: &Budget) -> Result<Option<String>, ServiceError> {
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
    let converted = structured::schema_grammar(&schema, budget).map_err(|e| ServiceError::invalid("tools", format!("the tools' parameter schemas cannot be enforced: {e}")))?;
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
    use engine::ChatMessage;
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
