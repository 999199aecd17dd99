//! Turns token pieces (raw bytes) into text without ever splitting a UTF-8 character: bytes of an
//! incomplete character wait for the next piece; invalid bytes become U+FFFD.

/// Incremental UTF-8 assembly of token pieces.
#[derive(Debug, Default)]
pub struct Utf8Assembler {
    pending: Vec<u8>,
}

impl Utf8Assembler {
    /// Add a piece; returns the text that is complete so far.
    pub fn push(&mut self, piece: &[u8]) -> String {
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// End of stream: anything incomplete becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_passes_through() {
        let mut a = Utf8Assembler::default();
        assert_eq!(a.push(b"hello"), "hello");
        assert_eq!(a.finish(), "");
    }

    #[test]
    fn split_character_waits_for_its_rest() {
        let mut a = Utf8Assembler::default();
        let e = "é".as_bytes();
        assert_eq!(a.push(&e[..1]), "");
        assert_eq!(a.push(&e[1..]), "é");
    }

    #[test]
    fn invalid_bytes_become_replacement() {
        let mut a = Utf8Assembler::default();
        assert_eq!(a.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
    }

    proptest::proptest! {
        /// Random byte tokens (what random-weight models emit) split anywhere: the text is always
        /// valid UTF-8 and equals a lossy decoding of all the bytes at once.
        #[test]
        fn any_bytes_in_any_pieces_decode_like_lossy_utf8(pieces in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..6), 0..40)) {
            let mut a = Utf8Assembler::default();
            let mut text = String::new();
            for piece in &pieces {
                text.push_str(&a.push(piece));
            }
            text.push_str(&a.finish());
            let all: Vec<u8> = pieces.concat();
            proptest::prop_assert_eq!(text, String::from_utf8_lossy(&all).into_owned());
        }
    }

    #[test]
    fn truncated_character_at_end_is_replaced() {
        let mut a = Utf8Assembler::default();
        assert_eq!(a.push(&"€".as_bytes()[..2]), "");
        assert_eq!(a.finish(), "\u{fffd}");
    }
}
