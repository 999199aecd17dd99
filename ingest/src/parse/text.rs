//! Bytes to text for the text-like formats.
//!
//! A byte-order mark wins (UTF-8, UTF-16LE/BE); otherwise valid UTF-8 is UTF-8; HTML may name its
//! charset in a `<meta>`; anything else is read as Windows-1252 (a superset of Latin-1, the common
//! legacy encoding), which never fails. A file with NUL bytes and no UTF-16 mark is binary and is
//! refused rather than indexed as garbage. Line endings become `\n` so paragraph detection in the
//! chunker sees one convention.

use super::ParseError;
use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};

/// True for text that is UTF-8 (a multi-byte character cut off at the end of `head` is fine) with
/// no NUL bytes, or that starts with a UTF-16 byte-order mark.
pub(super) fn looks_like_utf8_text(head: &[u8]) -> bool {
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return true;
    }
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // `error_len() == None`: the input ended inside a character, which a head cut can do.
        Err(e) => e.error_len().is_none(),
    }
}

/// Decodes a plain-text or Markdown file.
pub(super) fn decode(bytes: &[u8]) -> Result<String, ParseError> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        return Ok(normalize_newlines(&text));
    }
    if bytes.contains(&0) {
        return Err(ParseError::Unsupported(
            "binary data (NUL bytes), not a text file".into(),
        ));
    }
    Ok(normalize_newlines(&decode_utf8_or_legacy(bytes, None)))
}

/// Decodes an HTML file, honouring a `charset` declared in its first 1024 bytes.
pub(super) fn decode_html(bytes: &[u8]) -> Result<String, ParseError> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        return Ok(text.into_owned());
    }
    Ok(decode_utf8_or_legacy(bytes, declared_charset(bytes)))
}

fn decode_utf8_or_legacy(bytes: &[u8], declared: Option<&'static Encoding>) -> String {
    match (std::str::from_utf8(bytes), declared) {
        (Ok(s), None) => s.to_owned(),
        (Ok(s), Some(enc)) if enc == UTF_8 => s.to_owned(),
        (_, Some(enc)) => enc.decode_without_bom_handling(bytes).0.into_owned(),
        (Err(_), None) => WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    }
}

/// `charset=...` in the first 1024 bytes (a `<meta charset>` or `http-equiv` content type).
fn declared_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = bytes[..bytes.len().min(1024)].to_ascii_lowercase();
    let at = head.windows(8).position(|w| w == b"charset=")? + 8;
    let rest = &head[at..];
    let rest = rest
        .strip_prefix(b"\"")
        .or_else(|| rest.strip_prefix(b"'"))
        .unwrap_or(rest);
    let end = rest
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .unwrap_or(rest.len());
    Encoding::for_label(&rest[..end])
}

fn normalize_newlines(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_owned();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn utf16_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "héllo\r\n".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        assert!(looks_like_utf8_text(&bytes));
        assert_eq!(decode(&bytes).unwrap(), "héllo\n");
    }

    #[test]
    fn latin1_fallback() {
        assert_eq!(decode(b"caf\xe9").unwrap(), "café");
        assert_eq!(decode(b"\xEF\xBB\xBFbom").unwrap(), "bom");
    }

    #[test]
    fn html_declared_charset() {
        let html = b"<html><head><meta charset=\"iso-8859-1\"></head><body>caf\xe9</body></html>";
        assert!(decode_html(html).unwrap().contains("café"));
        let html = b"<meta http-equiv=Content-Type content='text/html; charset=utf-8'>\xc3\xa9";
        assert!(decode_html(html).unwrap().ends_with('é'));
    }

    #[test]
    fn lone_cr_lines() {
        assert_eq!(decode(b"a\rb\r\nc").unwrap(), "a\nb\nc");
    }
}
