//! Markdown: the source text is the page text (Markdown reads well as it is, and an embedding model
//! sees what a person reads); pulldown-cmark finds the headings (ATX `#` and setext underlines,
//! not `#` lines inside code blocks) and their offsets.

use super::Section;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Headings of `source`, in order, with `char` offsets into `source`.
pub(super) fn sections(source: &str) -> Vec<Section> {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_HEADING_ATTRIBUTES;
    let mut sections = Vec::new();
    let mut current: Option<(u8, usize, String)> = None;
    // Offsets arrive in increasing order: count characters incrementally.
    let (mut byte_pos, mut char_pos) = (0usize, 0usize);
    for (event, range) in Parser::new_ext(source, options).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                let start = range.start.max(byte_pos);
                char_pos += source.get(byte_pos..start).map_or(0, |s| s.chars().count());
                byte_pos = start;
                current = Some((level as u8, char_pos, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, char_start, text)) = current.take() {
                    let heading = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !heading.is_empty() {
                        sections.push(Section {
                            heading,
                            level,
                            char_start,
                        });
                    }
                }
            }
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) => {
                if let Some((_, _, text)) = current.as_mut() {
                    text.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some((_, _, text)) = current.as_mut() {
                    text.push(' ');
                }
            }
            _ => {}
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atx_and_setext_headings_with_offsets() {
        let src = "Intro line\n\n# Título *uno*\n\ntext\n\nSecond `code`\n-------------\n\n```\n# not a heading\n```\n### Three ###\n";
        let s = sections(src);
        let got: Vec<_> = s.iter().map(|s| (s.heading.as_str(), s.level)).collect();
        assert_eq!(got, [("Título uno", 1), ("Second code", 2), ("Three", 3)]);
        for sec in &s {
            let at: String = src.chars().skip(sec.char_start).take(3).collect();
            assert!(
                at.starts_with('#') || at.starts_with("Sec"),
                "{:?} starts at {:?}",
                sec.heading,
                at
            );
        }
    }

    #[test]
    fn no_headings() {
        assert!(sections("just text\n\n- a list\n").is_empty());
    }
}
