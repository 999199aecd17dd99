//! Why a file could not be ingested, typed from where it happens to the API's `last_error.code`:
//! the ingestion pipeline fails a document with a [`Failure`] (`unsupported_file` when no parser
//! takes its format, `invalid_file` for every other reason it could not be read, parsed, chunked,
//! embedded or stored), the store keeps the code beside the message
//! (`Document::last_error_code`), and the services read it back as a [`FailureKind`]; no code is
//! derived from the message's words. A failure recorded without a code (by a release before codes
//! were kept, or a queueing failure) reads as `invalid_file`.

use std::fmt;

use store::Document;

/// The kind of an ingestion failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No parser takes the file's format.
    UnsupportedFile,
    /// The file could not be read, parsed, chunked, embedded or stored.
    InvalidFile,
}

impl FailureKind {
    /// The stable code, as stored and as the API answers it.
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::UnsupportedFile => "unsupported_file",
            FailureKind::InvalidFile => "invalid_file",
        }
    }

    /// The kind a stored code names; `None` for a code this release does not know.
    pub fn from_code(code: &str) -> Option<FailureKind> {
        [FailureKind::UnsupportedFile, FailureKind::InvalidFile].into_iter().find(|k| k.code() == code)
    }
}

/// A failed ingestion: its kind and what a person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    /// No parser for the file's format.
    pub fn unsupported(message: impl Into<String>) -> Failure {
        Failure { kind: FailureKind::UnsupportedFile, message: message.into() }
    }

    /// Any other reason the file could not be ingested.
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure { kind: FailureKind::InvalidFile, message: message.into() }
    }

    /// The failure a stored document records, if it failed.
    pub fn of(document: &Document) -> Option<Failure> {
        let message = document.last_error.clone()?;
        let kind = document.last_error_code.as_deref().and_then(FailureKind::from_code).unwrap_or(FailureKind::InvalidFile);
        Some(Failure { kind, message })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_a_document_without_one_is_an_invalid_file() {
        for kind in [FailureKind::UnsupportedFile, FailureKind::InvalidFile] {
            assert_eq!(FailureKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(FailureKind::from_code("nope"), None);
        let mut doc = Document {
            id: "file-1".into(),
            name: "a.bin".into(),
            content_hash: String::new(),
            size: 1,
            attributes: store::Attributes::new(),
            status: store::DocumentStatus::Failed,
            // Words that once decided the code: the stored code decides now.
            last_error: Some("unsupported file type: `a.bin`".into()),
            last_error_code: None,
            chunk_count: 0,
            created_at: 0,
        };
        assert_eq!(Failure::of(&doc).map(|f| f.kind), Some(FailureKind::InvalidFile));
        doc.last_error_code = Some("unsupported_file".into());
        assert_eq!(Failure::of(&doc), Some(Failure::unsupported("unsupported file type: `a.bin`")));
        doc.last_error = None;
        assert_eq!(Failure::of(&doc), None);
    }
}
