//! API keys and their scopes: what `[server] api_keys` and `[server] api_key_file` hold, and the
//! key ring the auth middleware checks a presented `Authorization: Bearer` key against.
//!
//! A key is written `KEY` (scope `admin`, the meaning of today's flat list) or `SCOPE:KEY`, in the
//! list, in the key file (one a line, `#` comments and blank lines ignored) and in
//! `HEARTH__SERVER__API_KEYS=k1,read:k2`; the list also takes tables `{ key = "...", scope = "read" }`.
//! A key therefore never contains `:`; text before the first `:` that is not a scope is an error,
//! never an admin key by accident.
//!
//! Scopes: `admin` grants everything; `ingest` and `infer` each grant their own routes and `read`;
//! `read` grants only itself. Invariants: the ring keeps SHA-256 digests, never the keys, so a key
//! cannot reach a log or a `Debug` print from here; a presented key is hashed and compared with
//! every digest in constant time, so neither where two keys differ nor their lengths show in the
//! time taken; error messages name a key by its position (`server.api_keys[2]`, `line 7 of FILE`),
//! never by its text.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest key accepted.
pub const MIN_KEY_CHARS: usize = 8;

/// What a key may do. See the module header for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// GET routes, vector store search, retrieving responses.
    Read,
    /// Chat, completions, embeddings, creating responses, tokenize.
    Infer,
    /// Files, vector stores and file batches: create, attach, upload, update, cancel.
    Ingest,
    /// Everything, deletes and `/metrics` included.
    Admin,
}

impl Scope {
    /// Every scope, in the order the documentation lists them.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Infer, Scope::Ingest, Scope::Admin];

    /// The name used in configuration and messages.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Infer => "infer",
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
        }
    }

    /// The scope called `name`.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a key of this scope may use a route that needs `needed`.
    pub fn grants(self, needed: Scope) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Ingest => matches!(needed, Scope::Ingest | Scope::Read),
            Scope::Infer => matches!(needed, Scope::Infer | Scope::Read),
            Scope::Read => needed == Scope::Read,
        }
    }

    fn names() -> String {
        Scope::ALL.map(Scope::name).join(", ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `[server] api_keys` entry as written: `"KEY"`, `"SCOPE:KEY"` or `{ key, scope }`.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyEntry {
    /// `KEY` or `SCOPE:KEY`.
    Text(String),
    /// `{ key = "...", scope = "..." }`.
    Table { key: String, scope: String },
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEntry(<redacted>)")
    }
}

/// `[server] api_keys`: the list as written. Its `Debug` and its deserialization errors never show
/// a key (serde's own errors quote the value they found).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyList(pub Vec<KeyEntry>);

impl fmt::Debug for KeyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyList(<{} redacted>)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for KeyList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = KeyList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of API keys")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<KeyList, E> {
                Err(E::custom("must be a list of keys, like [\"KEY\", \"read:KEY\"], not a single string"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyList, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = seq.next_element::<KeyEntry>()? {
                    entries.push(entry);
                }
                Ok(KeyList(entries))
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

impl<'de> Deserialize<'de> for KeyEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = KeyEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key string or a table { key = \"...\", scope = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyEntry, E> {
                Ok(KeyEntry::Text(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyEntry, E> {
                Ok(KeyEntry::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyEntry, E> {
                Ok(KeyEntry::Text(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyEntry, A::Error> {
                let (mut key, mut scope) = (None, None);
                while let Some(field) = map.next_key::<String>()? {
                    match field.as_str() {
                        "key" => key = Some(map.next_value::<String>().map_err(|_| <A::Error as de::Error>::custom("`key` must be a string"))?),
                        "scope" => scope = Some(map.next_value::<String>().map_err(|_| <A::Error as de::Error>::custom("`scope` must be a string"))?),
                        other => return Err(de::Error::custom(format!("unknown field `{other}` in an API key table; it has `key` and `scope`"))),
                    }
                }
                match (key, scope) {
                    (Some(key), Some(scope)) => Ok(KeyEntry::Table { key, scope }),
                    _ => Err(de::Error::custom("an API key table needs both `key` and `scope`")),
                }
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// Why the keys were refused. Every message names the key's place, never the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// An unknown scope name.
    #[error("{place}: unknown scope {scope:?}; the scopes are {}", Scope::names())]
    UnknownScope { place: String, scope: String },
    /// A key shorter than [`MIN_KEY_CHARS`].
    #[error("{place}: the key has fewer than {MIN_KEY_CHARS} characters")]
    TooShort { place: String },
    /// The same key twice.
    #[error("{first} and {second} hold the same key; give each key once, with one scope")]
    Duplicate { first: String, second: String },
    /// The key file cannot be read.
    #[error("cannot read the key file {path}: {reason}")]
    File { path: String, reason: String },
}

impl KeyError {
    /// The configuration key to blame: `server.api_key_file` for the file and its lines.
    pub fn setting(&self) -> &'static str {
        match self {
            KeyError::File { .. } => "server.api_key_file",
            KeyError::UnknownScope { place, .. } | KeyError::TooShort { place } | KeyError::Duplicate { second: place, .. } if place.starts_with("line ") => {
                "server.api_key_file"
            }
            _ => "server.api_keys",
        }
    }
}

/// The accepted keys, as digests with their scopes. Cheap to clone; `Debug` shows only the count.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: Vec<([u8; 32], Scope)>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRing(<{} keys>)", self.keys.len())
    }
}

impl KeyRing {
    /// The ring of the configured list and, when `file` is set, the key file's lines.
    pub fn build(list: &KeyList, file: Option<&Path>) -> Result<KeyRing, KeyError> {
        let mut ring = KeyRing::default();
        let mut places: Vec<String> = Vec::new();
        for (i, entry) in list.0.iter().enumerate() {
            let place = format!("server.api_keys[{i}]");
            let (scope, key) = match entry {
                KeyEntry::Text(text) => split_scope(text.trim(), &place)?,
                KeyEntry::Table { key, scope } => {
                    let scope = Scope::parse(scope.trim()).ok_or_else(|| KeyError::UnknownScope { place: place.clone(), scope: scope.clone() })?;
                    (scope, key.trim())
                }
            };
            ring.add(key, scope, place, &mut places)?;
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| KeyError::File { path: path.display().to_string(), reason: e.to_string() })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let place = format!("line {} of server.api_key_file {}", n + 1, path.display());
                let (scope, key) = split_scope(line, &place)?;
                ring.add(key, scope, place, &mut places)?;
            }
        }
        Ok(ring)
    }

    fn add(&mut self, key: &str, scope: Scope, place: String, places: &mut Vec<String>) -> Result<(), KeyError> {
        if key.chars().count() < MIN_KEY_CHARS {
            return Err(KeyError::TooShort { place });
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(i) = self.keys.iter().position(|(d, _)| bool::from(d[..].ct_eq(&digest[..]))) {
            return Err(KeyError::Duplicate { first: places[i].clone(), second: place });
        }
        self.keys.push((digest, scope));
        places.push(place);
        Ok(())
    }

    /// No keys: authentication is off.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys of each scope, for the start-up log.
    pub fn count(&self, scope: Scope) -> usize {
        self.keys.iter().filter(|(_, s)| *s == scope).count()
    }

    /// The scope of `presented`, if it is one of the keys. Every digest is compared, in constant
    /// time, whatever matches.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (d, scope) in &self.keys {
            if bool::from(d[..].ct_eq(&digest[..])) {
                found = Some(*scope);
            }
        }
        found
    }
}

/// `SCOPE:KEY` or `KEY` (admin).
fn split_scope<'a>(text: &'a str, place: &str) -> Result<(Scope, &'a str), KeyError> {
    match text.split_once(':') {
        None => Ok((Scope::Admin, text)),
        Some((scope, key)) => {
            let scope = Scope::parse(scope.trim()).ok_or_else(|| KeyError::UnknownScope { place: place.to_owned(), scope: scope.trim().to_owned() })?;
            Ok((scope, key.trim()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> KeyList {
        KeyList(entries.iter().map(|e| KeyEntry::Text((*e).to_owned())).collect())
    }

    #[test]
    fn scopes_grant_what_the_documentation_says() {
        use Scope::*;
        let granted = |s: Scope| Scope::ALL.into_iter().filter(|n| s.grants(*n)).collect::<Vec<_>>();
        assert_eq!(granted(Admin), vec![Read, Infer, Ingest, Admin]);
        assert_eq!(granted(Ingest), vec![Read, Ingest]);
        assert_eq!(granted(Infer), vec![Read, Infer]);
        assert_eq!(granted(Read), vec![Read]);
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.name()), Some(s));
        }
        assert_eq!(Scope::parse("Admin"), None, "scope names are lower case");
    }

    #[test]
    fn a_plain_key_is_admin_and_a_prefixed_one_has_its_scope() {
        let ring = KeyRing::build(&list(&["plain-key-123", "read:reader-key-1", " infer : inferring-key "]), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ring.scope_of("plain-key-123"), Some(Scope::Admin));
        assert_eq!(ring.scope_of("reader-key-1"), Some(Scope::Read));
        assert_eq!(ring.scope_of("inferring-key"), Some(Scope::Infer));
        assert_eq!(ring.scope_of("read:reader-key-1"), None, "the scope is not part of the key");
        assert_eq!(ring.scope_of("plain-key-12"), None);
        assert_eq!(ring.scope_of("plain-key-1234"), None);
        assert_eq!(ring.scope_of(""), None);
        assert_eq!((ring.count(Scope::Admin), ring.count(Scope::Read), ring.count(Scope::Ingest)), (1, 1, 0));
    }

    #[test]
    fn tables_carry_their_scope() {
        let keys = KeyList(vec![KeyEntry::Table { key: "ingesting-key".into(), scope: "ingest".into() }]);
        let ring = KeyRing::build(&keys, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ring.scope_of("ingesting-key"), Some(Scope::Ingest));
        let bad = KeyList(vec![KeyEntry::Table { key: "secret-value-1".into(), scope: "writer".into() }]);
        let err = KeyRing::build(&bad, None).err().unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("server.api_keys[0]") && err.contains("\"writer\"") && err.contains("read, infer, ingest, admin"), "{err}");
        assert!(!err.contains("secret-value-1"), "{err}");
    }

    #[test]
    fn errors_name_the_place_never_the_key() {
        let err = KeyRing::build(&list(&["good-key-1234", "raed:secret-value-1"]), None).err().unwrap_or_else(|| panic!("accepted"));
        assert_eq!(err, KeyError::UnknownScope { place: "server.api_keys[1]".into(), scope: "raed".into() });
        assert!(!err.to_string().contains("secret-value-1"));
        let err = KeyRing::build(&list(&["read:short"]), None).err().unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("server.api_keys[0]") && err.contains("fewer than 8") && !err.contains("short\""), "{err}");
        let err = KeyRing::build(&list(&["same-key-123", "read:same-key-123"]), None).err().unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("server.api_keys[0] and server.api_keys[1]") && !err.contains("same-key-123"), "{err}");
    }

    #[test]
    fn the_key_file_has_one_key_a_line_with_comments() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("keys");
        std::fs::write(&path, "# the team's keys\n\n  admin-file-key  \nread:file-reader-key\n   # indented comment\ningest:file-ingest-key\r\n").unwrap_or_else(|e| panic!("{e}"));
        let ring = KeyRing::build(&list(&["list-key-1234"]), Some(&path)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ring.scope_of("admin-file-key"), Some(Scope::Admin));
        assert_eq!(ring.scope_of("file-reader-key"), Some(Scope::Read));
        assert_eq!(ring.scope_of("file-ingest-key"), Some(Scope::Ingest));
        assert_eq!(ring.scope_of("list-key-1234"), Some(Scope::Admin));
        assert_eq!(ring.scope_of("# the team's keys"), None);

        std::fs::write(&path, "read:fine-key-1234\n\nwriter:secret-value-2\n").unwrap_or_else(|e| panic!("{e}"));
        let err = KeyRing::build(&KeyList::default(), Some(&path)).err().unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("line 3 of server.api_key_file") && err.contains("\"writer\"") && !err.contains("secret-value-2"), "{err}");

        std::fs::write(&path, "dup-key-12345\nread:dup-key-12345\n").unwrap_or_else(|e| panic!("{e}"));
        let err = KeyRing::build(&KeyList::default(), Some(&path)).err().unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("line 1 of") && err.contains("line 2 of") && !err.contains("dup-key"), "{err}");
    }

    #[test]
    fn an_unreadable_key_file_is_an_error_with_its_path() {
        let err = KeyRing::build(&KeyList::default(), Some(Path::new("/nonexistent/hearth-keys"))).err().unwrap_or_else(|| panic!("accepted"));
        assert!(matches!(&err, KeyError::File { path, .. } if path == "/nonexistent/hearth-keys"), "{err}");
    }

    #[test]
    fn debug_output_shows_no_key() {
        let keys = list(&["visible-if-leaked"]);
        let ring = KeyRing::build(&keys, None).unwrap_or_else(|e| panic!("{e}"));
        for text in [format!("{keys:?}"), format!("{ring:?}"), format!("{:?}", keys.0[0])] {
            assert!(!text.contains("visible-if-leaked"), "{text}");
        }
    }

    #[test]
    fn the_list_deserializes_strings_and_tables_without_quoting_a_key() {
        let parsed: toml::Value = toml::from_str("keys = [\"plain-key-1\", { key = \"table-key-1\", scope = \"read\" }]").unwrap_or_else(|e| panic!("{e}"));
        let keys: KeyList = parsed["keys"].clone().try_into().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.0, vec![KeyEntry::Text("plain-key-1".into()), KeyEntry::Table { key: "table-key-1".into(), scope: "read".into() }]);
        let single: toml::Value = toml::from_str("keys = \"lonely-secret\"").unwrap_or_else(|e| panic!("{e}"));
        let err = single["keys"].clone().try_into::<KeyList>().err().unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("must be a list") && !err.contains("lonely-secret"), "{err}");
        let extra: toml::Value = toml::from_str("keys = [{ key = \"k-secret-1\", scope = \"read\", note = \"x\" }]").unwrap_or_else(|e| panic!("{e}"));
        let err = extra["keys"].clone().try_into::<KeyList>().err().unwrap_or_else(|| panic!("accepted")).to_string();
        assert!(err.contains("`note`") && !err.contains("k-secret-1"), "{err}");
    }
}
