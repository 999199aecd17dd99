//! A small, owned view of XML for the office, e-book and e-mail parsers: [`events`] turns a
//! document into [`Node`]s (start with attributes, end, text with entities resolved), so each
//! format parser is a plain loop over a `Vec` and never touches quick-xml's borrowed types.
//!
//! - Names are local names (`w:p` → `p`): the formats use fixed prefixes and nothing here needs
//!   namespaces. Attribute keys keep their prefix (`r:id`), which the formats do rely on.
//! - Empty elements (`<w:br/>`) come out as a start and an end, so parsers see one shape.
//! - Only the five predefined entities and character references are resolved; DTDs are never
//!   read (no external entities, no billion laughs). An unknown entity is kept as `&name;`.
//! - Malformed XML ends the document with [`ParseError::Malformed`] naming `what`.

use super::ParseError;
use quick_xml::events::Event;
use quick_xml::Reader;

/// One piece of an XML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    /// An element starts: its local name and its attributes (`key` as written, value unescaped).
    Start {
        name: String,
        attrs: Vec<(String, String)>,
    },
    /// An element ends (also emitted right after the start of an empty element).
    End { name: String },
    /// Character data, entities resolved.
    Text(String),
}

impl Node {
    /// The value of attribute `key` (as written, with its prefix) on a start node.
    pub(super) fn attr(&self, key: &str) -> Option<&str> {
        match self {
            Node::Start { attrs, .. } => attrs
                .iter()
                .find(|(k, _)| k == key || local(k) == key)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// True for a start node with local name `name`.
    pub(super) fn is_start(&self, name: &str) -> bool {
        matches!(self, Node::Start { name: n, .. } if n == name)
    }

    /// True for an end node with local name `name`.
    #[cfg(test)]
    pub(super) fn is_end(&self, name: &str) -> bool {
        matches!(self, Node::End { name: n } if n == name)
    }
}

fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// Parses `bytes` (UTF-8, with or without a BOM) into nodes; `what` names the part in errors
/// ("DOCX word/document.xml").
pub(super) fn events(bytes: &[u8], what: &str) -> Result<Vec<Node>, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ParseError::Malformed(format!("{what}: not UTF-8 XML ({e})")))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    let bad = |e: &dyn std::fmt::Display| ParseError::Malformed(format!("{what}: {e}"));
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let mut attrs = Vec::new();
                for a in e.attributes().flatten() {
                    let key = a.key.as_ref().to_owned();
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| bad(&e))?
                        .into_owned();
                    attrs.push((key, value));
                }
                out.push(Node::Start {
                    name: e.local_name().as_ref().to_owned(),
                    attrs,
                });
            }
            Ok(Event::End(e)) => out.push(Node::End {
                name: e.local_name().as_ref().to_owned(),
            }),
            Ok(Event::Text(t)) => push_text(&mut out, &t.xml10_content()),
            Ok(Event::CData(t)) => push_text(&mut out, &t.xml10_content()),
            Ok(Event::GeneralRef(r)) => {
                let name: &str = &r;
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(name)
                        .map_or_else(|| format!("&{name};"), str::to_owned),
                    Err(e) => return Err(bad(&e)),
                };
                push_text(&mut out, &resolved);
            }
            Ok(Event::Eof) => return Ok(out),
            Ok(_) => {}
            Err(e) => return Err(bad(&e)),
        }
    }
}

fn push_text(out: &mut Vec<Node>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Node::Text(prev)) = out.last_mut() {
        prev.push_str(text);
    } else {
        out.push(Node::Text(text.to_owned()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn entities_empty_elements_and_prefixes() {
        let nodes = events(
            br#"<?xml version="1.0"?><w:p a:x="1 &amp; 2"><w:t>a &lt;b&gt; &#233;&#x20AC;</w:t><w:br/></w:p>"#,
            "test",
        )
        .unwrap();
        assert!(nodes[0].is_start("p"));
        assert_eq!(nodes[0].attr("a:x"), Some("1 & 2"));
        assert_eq!(nodes[0].attr("x"), Some("1 & 2"));
        assert_eq!(nodes[2], Node::Text("a <b> é€".into()));
        assert!(nodes[4].is_start("br") && nodes[5].is_end("br"));
    }

    #[test]
    fn malformed_names_the_part() {
        let err = events(b"<a><b></a>", "DOCX word/document.xml").unwrap_err();
        assert!(
            matches!(&err, ParseError::Malformed(m) if m.starts_with("DOCX word/document.xml")),
            "{err:?}"
        );
    }
}
