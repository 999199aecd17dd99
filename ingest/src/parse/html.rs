//! HTML to plain text with headings as sections.
//!
//! html5ever (through scraper) builds the tree the way browsers do, so broken markup still yields
//! text. The walk is iterative (`traverse`), so deep nesting cannot overflow the stack. html5ever's
//! tree building is quadratic in nesting depth, though (10k levels: ~0.5 s, 100k: ~60 s of CPU), so
//! HTML goes through the sandbox like PDF, whose CPU limit stops such a file. Rules:
//! - `script`, `style`, `noscript`, `template`, `head`, `svg`, `math`, `iframe`, `object`, `canvas`
//!   and anything `hidden` contribute nothing;
//! - whitespace collapses as a browser shows it, except inside `pre`/`textarea`;
//! - block elements become blank-line paragraphs, list items / rows / `<br>` single lines, table
//!   cells ` | `, so the chunker's paragraph and line boundaries follow the page's structure;
//! - `h1`–`h6` become [`Section`]s whose `char_start` is their first character in the text.

use super::Section;
use ego_tree::iter::Edge;
use scraper::{Html, Node};

/// Text and headings of an HTML document.
pub(super) fn extract(source: &str) -> (String, Vec<Section>) {
    let html = Html::parse_document(source);
    let mut out = Writer::default();
    let mut skip_depth = 0usize;
    let mut pre_depth = 0usize;
    for edge in html.tree.root().traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(el) => {
                    let name = el.name();
                    if skip_depth > 0 || is_skipped(name) || el.attr("hidden").is_some() {
                        skip_depth += 1;
                        continue;
                    }
                    if matches!(name, "pre" | "textarea" | "listing") {
                        pre_depth += 1;
                    }
                    out.open(name);
                }
                Node::Text(t) if skip_depth == 0 => out.text(t, pre_depth > 0),
                _ => {}
            },
            Edge::Close(node) => {
                if let Node::Element(el) = node.value() {
                    if skip_depth > 0 {
                        skip_depth -= 1;
                        continue;
                    }
                    let name = el.name();
                    if matches!(name, "pre" | "textarea" | "listing") {
                        pre_depth = pre_depth.saturating_sub(1);
                    }
                    out.close(name);
                }
            }
        }
    }
    (out.text, out.sections)
}

fn is_skipped(name: &str) -> bool {
    matches!(
        name,
        "script"
            | "style"
            | "noscript"
            | "template"
            | "head"
            | "svg"
            | "math"
            | "iframe"
            | "object"
            | "canvas"
    )
}

/// How an element separates its content from its neighbours.
fn break_of(name: &str) -> Break {
    match name {
        "p" | "div" | "section" | "article" | "main" | "header" | "footer" | "nav" | "aside"
        | "blockquote" | "pre" | "listing" | "ul" | "ol" | "dl" | "table" | "figure"
        | "figcaption" | "form" | "fieldset" | "address" | "details" | "hr" | "h1" | "h2"
        | "h3" | "h4" | "h5" | "h6" | "body" | "html" => Break::Paragraph,
        "li" | "tr" | "dt" | "dd" | "br" | "summary" | "caption" | "option" | "legend"
        | "thead" | "tbody" | "tfoot" | "textarea" => Break::Line,
        "td" | "th" => Break::Cell,
        _ => Break::None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Break {
    None,
    Space,
    Cell,
    Line,
    Paragraph,
}

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

#[derive(Default)]
struct Writer {
    text: String,
    chars: usize,
    pending: Option<Break>,
    sections: Vec<Section>,
    /// The heading being written: level, `char_start` once its first character is out, its text.
    heading: Option<(u8, Option<usize>, String)>,
}

impl Writer {
    fn request(&mut self, b: Break) {
        if b != Break::None {
            self.pending = Some(self.pending.map_or(b, |p| p.max(b)));
        }
    }

    fn open(&mut self, name: &str) {
        let b = break_of(name);
        self.request(b);
        if let Some(level) = heading_level(name) {
            self.heading = Some((level, None, String::new()));
        }
    }

    fn close(&mut self, name: &str) {
        if heading_level(name).is_some() {
            if let Some((level, Some(char_start), text)) = self.heading.take() {
                let heading = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if !heading.is_empty() {
                    self.sections.push(Section {
                        heading,
                        level,
                        char_start,
                    });
                }
            }
            self.heading = None;
        }
        match break_of(name) {
            Break::Cell => {} // the next cell's opening separates; a row's end is a line
            b => self.request(b),
        }
    }

    fn text(&mut self, t: &str, preformatted: bool) {
        if preformatted {
            if !t.is_empty() {
                self.flush_pending();
                self.push(t);
            }
            return;
        }
        let mut words = t.split_ascii_whitespace().peekable();
        if t.starts_with(|c: char| c.is_ascii_whitespace()) {
            self.request(Break::Space);
        }
        while let Some(word) = words.next() {
            self.flush_pending();
            self.push(word);
            if words.peek().is_some() {
                self.push(" ");
            }
        }
        if t.ends_with(|c: char| c.is_ascii_whitespace()) {
            self.request(Break::Space);
        }
    }

    fn flush_pending(&mut self) {
        let Some(b) = self.pending.take() else { return };
        if self.text.is_empty() {
            return;
        }
        let sep = match b {
            Break::None => "",
            Break::Space if self.text.ends_with(char::is_whitespace) => "",
            Break::Space => " ",
            Break::Cell if self.text.ends_with('\n') => "",
            Break::Cell => " | ",
            Break::Line => "\n",
            Break::Paragraph => "\n\n",
        };
        let sep = match b {
            Break::Line | Break::Paragraph => {
                // Replace trailing spaces; never more than one blank line.
                while self.text.ends_with(' ') {
                    self.text.pop();
                    self.chars -= 1;
                }
                let have = self.text.len() - self.text.trim_end_matches('\n').len();
                &sep[have.min(sep.len())..]
            }
            _ => sep,
        };
        self.push(sep);
    }

    fn push(&mut self, s: &str) {
        if let Some((_, start, text)) = self.heading.as_mut() {
            if start.is_none() && !s.trim().is_empty() {
                *start = Some(self.chars + (s.chars().count() - s.trim_start().chars().count()));
            }
            if start.is_some() {
                text.push_str(s);
            }
        }
        self.text.push_str(s);
        self.chars += s.chars().count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_scripts_keeps_headings() {
        let src = r#"<!doctype html><html><head><title>T</title><style>p{}</style></head>
<body><script>var x = "secret";</script>
<h1>Main  <em>title</em></h1><p>First   paragraph
 text.</p><div hidden>gone</div>
<h2>Sub</h2><ul><li>one</li><li>two</li></ul>
<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>
<pre>  keep
   this</pre><p>caf&eacute; &amp; more</p></body></html>"#;
        let (text, sections) = extract(src);
        assert!(!text.contains("secret") && !text.contains("p{}") && !text.contains("gone"));
        assert!(!text.contains('T') || !text.starts_with('T'));
        assert_eq!(
            text,
            "Main title\n\nFirst paragraph text.\n\nSub\n\none\ntwo\n\na | b\nc | d\n\n  keep\n   this\n\ncafé & more"
        );
        let heads: Vec<_> = sections
            .iter()
            .map(|s| (s.heading.as_str(), s.level))
            .collect();
        assert_eq!(heads, [("Main title", 1), ("Sub", 2)]);
        for s in &sections {
            let at: String = text
                .chars()
                .skip(s.char_start)
                .take(s.heading.chars().count())
                .collect();
            assert_eq!(at, s.heading);
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let depth = 5_000;
        let mut src = "<div>".repeat(depth);
        src.push_str("deep text");
        src.push_str(&"</div>".repeat(depth));
        let (text, _) = extract(&src);
        assert!(text.contains("deep text"));
    }

    #[test]
    fn inline_elements_keep_spacing() {
        let (text, _) = extract("<p>a<b>b</b> <i>c</i>d</p>");
        assert_eq!(text, "ab cd");
    }
}
