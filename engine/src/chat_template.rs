//! Chat templates from the GGUF file, rendered with minijinja.
//!
//! Models ship a Jinja template in `tokenizer.chat_template`; llama.cpp's own `apply_chat_template`
//! only knows a fixed list of formats, so hearth renders the model's real template. A model without
//! one falls back to ChatML, the most common format.

use minijinja::{context, Environment, ErrorKind};
use serde::Serialize;

use crate::EngineError;

/// ChatML, used when a model carries no template of its own.
const CHATML: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// One message of a conversation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// A compiled chat template with the special tokens it may refer to.
#[derive(Debug)]
pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compile `source` (or ChatML when `None`).
    pub(crate) fn new(source: Option<String>, bos_token: String, eos_token: String) -> Result<Self, EngineError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.unwrap_or_else(|| CHATML.to_owned()))
            .map_err(|e| EngineError::Template(e.to_string()))?;
        Ok(Self { env, bos_token, eos_token })
    }

    /// The prompt for these messages, ending where the assistant's reply begins.
    pub(crate) fn render(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let template = self.env.get_template("chat").map_err(|e| EngineError::Template(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| EngineError::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }

    #[test]
    fn chatml_fallback_renders_generation_prompt() {
        let t = ChatTemplate::new(None, String::new(), String::new()).unwrap_or_else(|e| panic!("{e}"));
        let out = t.render(&[msg("user", "hi")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_string_methods_work() {
        let src = "{% for m in messages %}{{ m.content.strip() | upper }}{% endfor %}".to_owned();
        let t = ChatTemplate::new(Some(src), String::new(), String::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.render(&[msg("user", "  hi  ")]).unwrap_or_else(|e| panic!("{e}")), "HI");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let src = "{{ raise_exception('no system role') }}".to_owned();
        let t = ChatTemplate::new(Some(src), String::new(), String::new()).unwrap_or_else(|e| panic!("{e}"));
        let err = t.render(&[msg("system", "x")]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("no system role"), "{err}");
    }
}
