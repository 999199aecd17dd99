//! E-mail (`.eml`, RFC 5322 / MIME) with mail-parser: the message is page 1 (its headers, then
//! its text body), and each attachment comes back as an [`Attachment`] for the daemon to ingest
//! as a document of its own (its own pages, its own citations).
//!
//! - Headers kept: From, To, Cc, Date, Subject, one line each; the subject is the page's label
//!   and its section.
//! - The body is every text part in order; an HTML-only message goes through mail-parser's HTML
//!   to text conversion. Encoded words, charsets and transfer encodings are mail-parser's.
//! - Attachments: every non-body part with its file name (`attachment-N` when it has none),
//!   at most [`MAX_ATTACHMENTS`]; their bytes are only carried, never parsed here.

use super::builder::PageBuilder;
use super::{Attachment, Format, ParseError, ParsedDocument};
use mail_parser::{Address, MessageParser, MimeHeaders};

/// Most attachments taken from one message; the rest are listed in the warnings.
pub const MAX_ATTACHMENTS: usize = 50;

pub(super) fn parse(bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    let msg = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| ParseError::Malformed("e-mail: no message headers found".into()))?;
    let mut page = PageBuilder::new();
    let subject = msg.subject().map(str::to_owned);
    if let Some(s) = &subject {
        page.heading(s, 1);
    }
    let mut header = Vec::new();
    let mut field = |name: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            header.push(format!("{name}: {v}"));
        }
    };
    field("From", msg.from().map(addresses));
    field("To", msg.to().map(addresses));
    field("Cc", msg.cc().map(addresses));
    field("Date", msg.date().map(|d| d.to_rfc3339()));
    field("Subject", subject.clone());
    page.paragraph(&header.join("\n"));
    for i in 0..msg.text_body_count() {
        if let Some(body) = msg.body_text(i) {
            page.paragraph(&body.replace("\r\n", "\n"));
        }
    }
    let mut attachments = Vec::new();
    let mut warnings = Vec::new();
    for (i, part) in msg.attachments().enumerate() {
        let filename = part
            .attachment_name()
            .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_owned())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("attachment-{}", i + 1));
        if attachments.len() >= MAX_ATTACHMENTS {
            warnings.push(format!("attachment {filename} skipped: more than {MAX_ATTACHMENTS}"));
            continue;
        }
        attachments.push(Attachment { filename, bytes: part.contents().to_vec() });
    }
    let label = subject.filter(|s| !s.trim().is_empty());
    let mut doc = super::finish(Format::Email, "mail-parser", vec![page.finish(1, label)], warnings)?;
    doc.attachments = attachments;
    Ok(doc)
}

fn addresses(a: &Address<'_>) -> String {
    a.iter()
        .map(|addr| match (&addr.name, &addr.address) {
            (Some(n), Some(e)) => format!("{n} <{e}>"),
            (None, Some(e)) => e.to_string(),
            (Some(n), None) => n.to_string(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    const MAIL: &str = "From: Ada Lovelace <ada@example.org>\r\nTo: bob@example.org\r\nSubject: =?utf-8?q?Quarterly_r=C3=A9port?=\r\nDate: Tue, 1 Oct 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe numbers are attached.\r\n--XX\r\nContent-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gYXR0YWNobWVudA==\r\n--XX--\r\n";

    #[test]
    fn headers_body_and_attachments() {
        let doc = parse(MAIL.as_bytes()).unwrap();
        assert_eq!(doc.format, Format::Email);
        let page = &doc.pages[0];
        assert_eq!(page.label.as_deref(), Some("Quarterly réport"));
        assert!(page.text.starts_with("Quarterly réport\n\nFrom: Ada Lovelace <ada@example.org>\nTo: bob@example.org\nDate: 2024-10-01T10:00:00Z\nSubject: Quarterly réport\n\n"), "{:?}", page.text);
        assert!(page.text.contains("The numbers are attached."));
        assert!(!page.text.contains("hello attachment"));
        assert_eq!(doc.attachments.len(), 1);
        assert_eq!(doc.attachments[0].filename, "notes.txt");
        assert_eq!(doc.attachments[0].bytes, b"hello attachment");
    }

    #[test]
    fn not_mail_is_malformed() {
        let err = parse(b"").unwrap_err();
        assert!(matches!(err, ParseError::Malformed(_)), "{err:?}");
    }
}
