//! The store's one error type.
//!
//! Variants split the caller's mistakes (unknown collection, bad filter, wrong dimension: a 4xx in
//! the daemon) from our faults (sled, usearch, tantivy, I/O: a 5xx, logged with context) and from a
//! temporary state (an index still rebuilding: a 503 with `Retry-After`). [`StoreError::is_user_error`]
//! tells the daemon which side of that line an error falls on.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No collection with this id.
    #[error("vector store {0:?} not found")]
    CollectionNotFound(String),
    /// No document with this id in the collection.
    #[error("file {document:?} not found in vector store {collection:?}")]
    DocumentNotFound {
        /// The collection searched.
        collection: String,
        /// The missing document id.
        document: String,
    },
    /// A document id that is already taken in the collection.
    #[error("file {document:?} already exists in vector store {collection:?}")]
    DocumentExists {
        /// The collection.
        collection: String,
        /// The taken document id.
        document: String,
    },
    /// Input the caller must fix: a wrong dimension, a zero or non-finite vector, a bad filter.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The data directory was written by a newer hearth (or is not a hearth store).
    #[error("{path}: on-disk format version {found} is not supported (this build reads up to {supported})")]
    UnsupportedFormat {
        /// The file or directory carrying the version.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// A derived index is still being rebuilt or caught up; try again shortly.
    #[error("the {index} index of vector store {collection:?} is rebuilding; retry shortly")]
    IndexNotReady {
        /// The collection.
        collection: String,
        /// "keyword" or "vector".
        index: &'static str,
    },
    /// A record in sled that does not decode: a bug or on-disk damage of the source of truth.
    #[error("corrupt record in {tree}: {detail}")]
    Corrupt {
        /// The sled tree holding the record.
        tree: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The source of truth failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The vector index library failed.
    #[error("usearch: {0}")]
    Vector(String),
    /// The keyword index library failed.
    #[error("tantivy: {0}")]
    Keyword(#[from] tantivy::TantivyError),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// JSON (de)serialisation of a record failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Creating one more collection would pass [`crate::StoreConfig::max_collections`].
    #[error("the limit of {limit} vector stores is reached; delete one first")]
    CollectionLimit {
        /// The limit.
        limit: usize,
    },
    /// New content would leave less free disk space than the reserve
    /// ([`crate::StoreConfig::min_free_bytes`]).
    #[error(transparent)]
    NoSpace(#[from] crate::space::NoSpace),
}

impl StoreError {
    /// True for errors the caller caused and can fix (HTTP 4xx); false for our faults (5xx) and
    /// for [`StoreError::IndexNotReady`] (503).
    pub fn is_user_error(&self) -> bool {
        match self {
            StoreError::CollectionNotFound(_)
            | StoreError::DocumentNotFound { .. }
            | StoreError::DocumentExists { .. }
            | StoreError::Invalid(_)
            | StoreError::CollectionLimit { .. } => true,
            StoreError::UnsupportedFormat { .. }
            | StoreError::IndexNotReady { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Sled(_)
            | StoreError::Vector(_)
            | StoreError::Keyword(_)
            | StoreError::Io { .. }
            | StoreError::Json(_)
            | StoreError::NoSpace(_) => false,
        }
    }

    /// True when the disk is full or the reserve is reached: [`StoreError::NoSpace`], or a
    /// file-system error ENOSPC or EDQUOT from sled, tantivy or the store's own files. Such a
    /// failure goes away when space comes back; retrying later is the answer.
    pub fn is_out_of_space(&self) -> bool {
        fn full(e: &std::io::Error) -> bool {
            matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        }
        match self {
            StoreError::NoSpace(_) => true,
            StoreError::Io { source, .. } => full(source),
            StoreError::Sled(sled::Error::Io(e)) => full(e),
            StoreError::Keyword(e) => {
                // tantivy wraps the io::Error in several variants; its message is the only common ground.
                let text = e.to_string();
                ["No space left on device", "Disk quota exceeded", "StorageFull", "QuotaExceeded"].iter().any(|m| text.contains(m))
            }
            _ => false,
        }
    }

    /// Wraps an I/O error with what the store was doing.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io { context: context.into(), source }
    }
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any error")]
mod tests {
    use super::*;

    #[test]
    fn user_errors_are_told_apart_from_faults() {
        assert!(StoreError::Invalid("x".into()).is_user_error());
        assert!(StoreError::CollectionNotFound("vs_1".into()).is_user_error());
        assert!(!StoreError::Vector("boom".into()).is_user_error());
        let busy = StoreError::IndexNotReady { collection: "vs_1".into(), index: "keyword" };
        assert!(!busy.is_user_error());
        assert!(busy.to_string().contains("rebuilding"));
        assert!(StoreError::CollectionLimit { limit: 3 }.to_string().contains("limit of 3 vector stores"));
    }

    #[test]
    fn out_of_space_is_recognised_in_every_layer() {
        let enospc = || std::io::Error::from_raw_os_error(28);
        assert!(StoreError::io("saving", enospc()).is_out_of_space());
        assert!(StoreError::Sled(sled::Error::Io(enospc())).is_out_of_space());
        assert!(StoreError::Keyword(tantivy::TantivyError::from(enospc())).is_out_of_space());
        assert!(!StoreError::io("saving", std::io::Error::from_raw_os_error(13)).is_out_of_space());
        let no_space = crate::space::NoSpace { path: "/d".into(), free: 1, needed: 2, reserve: 3 };
        assert!(StoreError::from(no_space).is_out_of_space());
        assert!(!StoreError::Invalid("x".into()).is_out_of_space());
    }
}
