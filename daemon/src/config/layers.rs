//! How the `[[models]]` lists of the configuration layers combine, and what `hearth serve`'s
//! command line (`--model`, `--listen`, `--port`) lays over every layer.
//!
//! The config crate replaces an array whole, so a `[[models]]` list in a user's file used to drop
//! the default list, the embedding model included (and with it the watched folder). Here each
//! layer's entries are merged into the list before it **by `name`**:
//! - an entry with a new name is appended;
//! - an entry with a name already listed lays its keys over that entry, so
//!   `[[models]] name = "smollm2-135m-instruct"` with `max_num_seqs = 4` retunes the default model.
//!   A different `kind` or `provider` replaces the entry whole instead (a remote model keeps none
//!   of a local one's keys), and a new `path` without a `sha256` drops the old pin, which belonged
//!   to the old file;
//! - a layer with `replace_default_models = true` replaces the list whole: only its entries count.
//!
//! `--model PATH` then puts one chat model, named after the file, in place of every configured chat
//! model; the embedding models stay. The merged list and the command line's values are one more
//! source, laid last, built from the layers' own values: each value keeps the origin (file) that
//! set it, so an error still names the file.

use std::path::{Path, PathBuf};

use config::{Map, Source, Value, ValueKind};

/// The top-level key that makes a layer's `[[models]]` replace the list instead of merging.
pub const REPLACE_KEY: &str = "replace_default_models";

/// What `hearth serve`'s command line sets, laid over every other layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// `--model PATH`: the one chat model (named after the file's stem) in place of the configured
    /// chat models; the embedding models stay.
    pub chat_model: Option<PathBuf>,
    /// `--listen ADDR`: the address to listen on.
    pub listen: Option<String>,
    /// `--port N`: the configured (or `--listen`) address with this port.
    pub port: Option<u16>,
}

impl CommandLine {
    /// Whether the command line sets anything.
    pub fn is_empty(&self) -> bool {
        *self == CommandLine::default()
    }
}

/// The address a client command (`hearth status`, `ask`, `bench`, `eval`) reaches the daemon at:
/// `server.listen` of the layers it can read, with an every-interface address (`0.0.0.0`, `[::]`)
/// turned into loopback. Nothing is validated and an unreadable file (the root-only
/// `/etc/hearth/hearth.toml` of a package install) is skipped: `None` when the layers do not build
/// or the value is not an address, and the caller falls back to `http://127.0.0.1:8080`.
pub fn client_listen(sources: &super::Sources) -> Option<std::net::SocketAddr> {
    let mut builder = super::default_builder();
    for file in [Some(&sources.system), sources.file.as_ref()].into_iter().flatten() {
        if let Ok(layer) = super::file_source(file) {
            builder = builder.add_source(layer);
        }
    }
    let listen = builder.add_source(super::env_source()).build().ok()?.get_string("server.listen").ok()?;
    let mut addr: std::net::SocketAddr = listen.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    Some(addr)
}

/// The last source: the merged `[[models]]` list and the command line's values.
#[derive(Debug, Clone)]
pub(super) struct Overrides {
    values: Map<String, Value>,
}

impl Source for Overrides {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.values.clone())
    }
}

/// The source laid over `layers` (the embedded default first): the `[[models]]` list merged by name
/// and the command line's values; `listen` is the listen address the layers give.
pub(super) fn overrides(layers: &[&Map<String, Value>], command_line: &CommandLine, listen: &str) -> Result<Overrides, String> {
    let mut values = Map::new();
    let mut models = merge_models(layers);
    if let Some(path) = &command_line.chat_model {
        models = with_chat_model(models, path)?;
    }
    values.insert("models".to_owned(), Value::new(None, ValueKind::Array(models)));
    let origin = Some("the command line".to_owned());
    let listen = match (&command_line.listen, command_line.port) {
        (Some(addr), None) => Some(addr.clone()),
        (base, Some(port)) => Some(with_port(base.as_deref().unwrap_or(listen), port)?),
        (None, None) => None,
    };
    if let Some(listen) = listen {
        let mut server = Map::new();
        server.insert("listen".to_owned(), Value::new(origin.as_ref(), ValueKind::String(listen)));
        values.insert("server".to_owned(), Value::new(origin.as_ref(), ValueKind::Table(server)));
    }
    Ok(Overrides { values })
}

/// The `[[models]]` entries of `layers` merged by name (see the module header).
pub(super) fn merge_models(layers: &[&Map<String, Value>]) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::new();
    for layer in layers {
        let Some(ValueKind::Array(entries)) = layer.get("models").map(|v| &v.kind) else { continue };
        let replace = layer.get(REPLACE_KEY).is_some_and(|v| matches!(v.kind, ValueKind::Boolean(true)));
        if replace {
            merged.clear();
        }
        for entry in entries {
            let existing = text(entry, "name").and_then(|name| merged.iter_mut().find(|m| text(m, "name") == Some(name)));
            match existing {
                Some(existing) => *existing = overlay(existing, entry),
                None => merged.push(entry.clone()),
            }
        }
    }
    merged
}

/// `entry` laid over `base` (both `[[models]]` tables with the same name).
fn overlay(base: &Value, entry: &Value) -> Value {
    let (ValueKind::Table(base_table), ValueKind::Table(entry_table)) = (&base.kind, &entry.kind) else {
        return entry.clone();
    };
    let differs = |key: &str, default: &str| {
        entry_table.contains_key(key) && text(entry, key).unwrap_or(default) != text(base, key).unwrap_or(default)
    };
    if differs("kind", "") || differs("provider", "local") {
        return entry.clone();
    }
    let mut table = base_table.clone();
    if entry_table.contains_key("path") && !entry_table.contains_key("sha256") {
        table.remove("sha256");
    }
    for (key, value) in entry_table {
        table.insert(key.clone(), value.clone());
    }
    Value::new(entry.origin().map(str::to_owned).as_ref(), ValueKind::Table(table))
}

/// The string at `key` of a table value.
fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    match &value.kind {
        ValueKind::Table(table) => match &table.get(key)?.kind {
            ValueKind::String(s) => Some(s.as_str()),
            _ => None,
        },
        _ => None,
    }
}

/// `models` with every chat model replaced by one for the GGUF file at `path`.
fn with_chat_model(models: Vec<Value>, path: &Path) -> Result<Vec<Value>, String> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("--model {}: not the path of a GGUF file", path.display()))?;
    let path_text = path.to_str().ok_or_else(|| format!("--model {}: the path is not UTF-8", path.display()))?;
    let origin = Some("the command line (--model)".to_owned());
    let mut table = Map::new();
    let mut set = |key: &str, kind: ValueKind| {
        table.insert(key.to_owned(), Value::new(origin.as_ref(), kind));
    };
    set("name", ValueKind::String(name.to_owned()));
    set("kind", ValueKind::String("chat".to_owned()));
    set("path", ValueKind::String(path_text.to_owned()));
    let mut out = vec![Value::new(origin.as_ref(), ValueKind::Table(table))];
    out.extend(models.into_iter().filter(|m| text(m, "kind") != Some("chat")));
    Ok(out)
}

/// `listen` (`HOST:PORT`, `[V6]:PORT`) with its port replaced by `port`.
fn with_port(listen: &str, port: u16) -> Result<String, String> {
    let host = listen
        .rsplit_once(':')
        .map(|(host, _)| host)
        .filter(|host| !host.is_empty())
        .ok_or_else(|| format!("--port {port}: the listen address {listen:?} is not like 127.0.0.1:8080"))?;
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, ModelKindSetting, Settings, Sources};

    /// The settings with `toml` as the `--config` file (no system file) and `command_line`.
    fn load(toml: &str, command_line: CommandLine) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let file = dir.path().join("user.toml");
        std::fs::write(&file, toml).unwrap_or_else(|e| panic!("write: {e}"));
        Settings::load(&Sources { system: dir.path().join("absent.toml"), file: Some(file), command_line })
    }

    fn names(settings: &Settings) -> Vec<(&str, ModelKindSetting)> {
        settings.models.iter().map(|m| (m.name.as_str(), m.kind)).collect()
    }

    const EXTRA_CHAT: &str = "[[models]]\nname = \"my-chat\"\nkind = \"chat\"\npath = \"models/mine.gguf\"\n";

    #[test]
    fn a_new_model_is_added_to_the_defaults() {
        let settings = load(EXTRA_CHAT, CommandLine::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            names(&settings),
            [("smollm2-135m-instruct", ModelKindSetting::Chat), ("all-minilm-l6-v2", ModelKindSetting::Embedding), ("my-chat", ModelKindSetting::Chat)]
        );
    }

    #[test]
    fn a_known_name_retunes_that_model_and_keeps_its_other_keys() {
        let settings = load("[[models]]\nname = \"all-minilm-l6-v2\"\nmax_num_seqs = 4\n", CommandLine::default()).unwrap_or_else(|e| panic!("{e}"));
        let embed = &settings.models[1];
        assert_eq!((embed.name.as_str(), embed.kind, embed.max_num_seqs), ("all-minilm-l6-v2", ModelKindSetting::Embedding, 4));
        assert_eq!(embed.path, PathBuf::from("models/all-MiniLM-L6-v2.f16.gguf"));
        assert!(embed.sha256.is_some(), "the pin of the unchanged file stays");
        assert_eq!(settings.models.len(), 2);
    }

    #[test]
    fn a_new_path_drops_the_old_pin() {
        let settings = load("[[models]]\nname = \"smollm2-135m-instruct\"\npath = \"models/other.gguf\"\n", CommandLine::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.models[0].path, PathBuf::from("models/other.gguf"));
        assert_eq!(settings.models[0].sha256, None);
    }

    #[test]
    fn replace_default_models_keeps_only_the_files_list() {
        let settings = load(&format!("replace_default_models = true\n{EXTRA_CHAT}"), CommandLine::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names(&settings), [("my-chat", ModelKindSetting::Chat)]);
        assert!(settings.replace_default_models);
    }

    #[test]
    fn an_unknown_key_in_a_merged_entry_names_the_file() {
        let err = load("[[models]]\nname = \"all-minilm-l6-v2\"\nmax_num_seq = 4\n", CommandLine::default()).map(drop).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("max_num_seq") && err.contains("user.toml"), "{err}");
    }

    #[test]
    fn model_replaces_the_chat_models_and_keeps_the_embedding_model() {
        let command_line = CommandLine { chat_model: Some(PathBuf::from("/srv/models/qwen2.5-0.5b.Q4_K_M.gguf")), ..CommandLine::default() };
        let settings = load(EXTRA_CHAT, command_line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names(&settings), [("qwen2.5-0.5b.Q4_K_M", ModelKindSetting::Chat), ("all-minilm-l6-v2", ModelKindSetting::Embedding)]);
        assert_eq!(settings.models[0].sha256, None);
    }

    #[test]
    fn listen_and_port_override_the_files() {
        let file = "[server]\nlisten = \"127.0.0.2:9000\"\n";
        let port = load(file, CommandLine { port: Some(9100), ..CommandLine::default() }).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(port.server.listen, "127.0.0.2:9100");
        let listen = load(file, CommandLine { listen: Some("127.0.0.3:7000".into()), ..CommandLine::default() }).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listen.server.listen, "127.0.0.3:7000");
        let both = load(file, CommandLine { listen: Some("[::1]:7000".into()), port: Some(0), ..CommandLine::default() }).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(both.server.listen, "[::1]:0");
    }

    #[test]
    fn a_bad_listen_address_is_refused_naming_the_command_line() {
        let err = load("", CommandLine { listen: Some("localhost".into()), ..CommandLine::default() }).map(drop).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("server.listen") && err.contains("the command line"), "{err}");
    }
}
