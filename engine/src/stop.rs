//! Stop strings matched across token boundaries.
//!
//! Text is pushed as it is produced. Whatever could still be the start of a stop string is held
//! back; everything before it is released. When a stop string completes, the text before it is
//! released and the match (and anything after it) is discarded, as OpenAI does.

/// Holds back text that may be the beginning of a stop string.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// The result of pushing text.
#[derive(Debug, PartialEq, Eq)]
pub struct Pushed {
    /// Text safe to emit now.
    pub emit: String,
    /// A stop string was found: generation must end.
    pub stopped: bool,
}

impl StopMatcher {
    /// A matcher for these stop strings (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new() }
    }

    /// Add generated text.
    pub fn push(&mut self, text: &str) -> Pushed {
        if self.stops.is_empty() {
            return Pushed { emit: text.to_owned(), stopped: false };
        }
        self.held.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let emit = self.held[..at].to_owned();
            self.held.clear();
            return Pushed { emit, stopped: true };
        }
        let keep = self.partial_suffix_len();
        let emit = self.held[..self.held.len() - keep].to_owned();
        self.held.drain(..self.held.len() - keep);
        Pushed { emit, stopped: false }
    }

    /// Release whatever is held (generation ended for another reason).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length in bytes of the longest suffix of `held` that is a proper prefix of a stop string.
    fn partial_suffix_len(&self) -> usize {
        self.held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.len() > tail.len() && s.starts_with(tail))
            })
            .map_or(0, |i| self.held.len() - i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let r = m.push(p);
            out.push_str(&r.emit);
            if r.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn no_stops_passes_everything() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn stop_inside_one_piece() {
        assert_eq!(run(&["END"], &["helloENDworld"]), ("hello".into(), true));
    }

    #[test]
    fn stop_across_pieces_is_not_emitted() {
        assert_eq!(run(&["END"], &["hel", "lo E", "N", "D more"]), ("hello ".into(), true));
    }

    #[test]
    fn partial_match_that_fails_is_released() {
        assert_eq!(run(&["END"], &["EN", "x"]), ("ENx".into(), false));
    }

    #[test]
    fn held_text_released_at_finish() {
        assert_eq!(run(&["END"], &["abc E"]), ("abc E".into(), false));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run(&["bb", "a"], &["xxbba"]), ("xx".into(), true));
    }

    #[test]
    fn multibyte_text_never_split() {
        let (out, stopped) = run(&["é!"], &["caf", "é", "é", "!"]);
        assert_eq!((out.as_str(), stopped), ("café", true));
    }

    #[test]
    fn holds_back_only_a_possible_prefix() {
        let stops = vec!["STOP".to_owned()];
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("abcST").emit, "abc");
        assert_eq!(m.push("x").emit, "STx");
    }
}
