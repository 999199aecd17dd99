//! A small server-sent-events parser: bytes in, the `data` of each complete event out. Used by
//! `hearth bench` (reading a target's streams) and by the remote provider (reading an upstream's).
//!
//! Only what OpenAI-style streams use: `data:` fields (several lines of one event are joined with
//! `\n`), events dispatched on a blank line, `\r\n` or `\n` line ends, comments (`:`) and other
//! fields (`event:`, `id:`, `retry:`) ignored. Bytes are buffered until a line is complete, so a
//! network chunk may split an event, a line, or a UTF-8 sequence anywhere.

/// Incremental parser state: the unfinished line and the data lines of the unfinished event.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes after the last line end.
    line: Vec<u8>,
    /// `data` lines of the event being read.
    data: Vec<String>,
}

impl SseParser {
    /// Feed bytes; returns the data of every event they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(std::mem::take(&mut self.data).join("\n"));
                }
                continue;
            }
            if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                self.data.push(String::from_utf8_lossy(value).into_owned());
            }
        }
        events
    }

    /// The event left when the stream ends without a final blank line, if any.
    pub fn finish(&mut self) -> Option<String> {
        let mut tail = self.push(b"\n");
        if tail.is_empty() {
            tail = self.push(b"\n");
        }
        tail.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = b"data: {\"a\":1}\n\n: comment\r\ndata: {\"b\":\r\ndata: 2}\r\n\r\nevent: x\ndata: [DONE]\n\n";
        for split in 0..stream.len() {
            let mut parser = SseParser::default();
            let mut events = parser.push(&stream[..split]);
            events.extend(parser.push(&stream[split..]));
            assert_eq!(events, vec!["{\"a\":1}", "{\"b\":\n2}", "[DONE]"], "split at {split}");
        }
    }

    #[test]
    fn an_unterminated_last_event_is_returned_by_finish() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"data: tail").is_empty());
        assert_eq!(parser.finish().as_deref(), Some("tail"));
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn data_without_a_space_and_utf8_split_across_chunks() {
        let text = "data:héllo\n\n".as_bytes();
        let mut parser = SseParser::default();
        let mut events = parser.push(&text[..7]);
        events.extend(parser.push(&text[7..]));
        assert_eq!(events, vec!["héllo"]);
    }
}
