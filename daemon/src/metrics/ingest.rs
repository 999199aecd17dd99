//! Ingestion series: `hearth_ingest_files_total{status}` (files finished, `completed` or
//! `failed`), `hearth_ingest_pages_total` and `hearth_ingest_chunks_total` (what completed files
//! contributed), `hearth_ingest_parse_failures_total{reason}` (files the sandboxed parser could
//! not turn into text, by [`PARSE_FAILURE_REASONS`]), and the gauge `hearth_ingest_queue_files`
//! (files waiting or being ingested). `status` and `reason` are closed sets, every value present
//! from the start so rates work from zero.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use ingest::{ParseError, ParseFailure};

/// The `reason` of a parse failure: what the parser said about the file (`encrypted`, `no_text`,
/// `malformed`, `unsupported`, `parser_failed`), how the sandbox ended it (`crashed`, `timeout`,
/// `out_of_memory`), our side (`io`, `bad_output`), or `unknown_format` for a file that is not
/// PDF, Markdown, HTML or UTF-8 text.
pub const PARSE_FAILURE_REASONS: [&str; 11] =
    ["encrypted", "no_text", "malformed", "unsupported", "parser_failed", "crashed", "timeout", "out_of_memory", "io", "bad_output", "unknown_format"];

/// The closed-set reason of a failed parse.
pub fn parse_failure_reason(failure: &ParseFailure) -> &'static str {
    match failure {
        ParseFailure::Parse(ParseError::Encrypted) => "encrypted",
        ParseFailure::Parse(ParseError::NoText) => "no_text",
        ParseFailure::Parse(ParseError::Malformed(_)) => "malformed",
        ParseFailure::Parse(ParseError::Unsupported(_)) => "unsupported",
        ParseFailure::Parse(ParseError::ParserFailed(_)) => "parser_failed",
        ParseFailure::Crashed { .. } => "crashed",
        ParseFailure::TimedOut { .. } => "timeout",
        ParseFailure::OutOfMemory { .. } => "out_of_memory",
        ParseFailure::Io(_) => "io",
        ParseFailure::BadOutput(_) => "bad_output",
    }
}

/// Label set of `hearth_ingest_parse_failures_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// One of [`PARSE_FAILURE_REASONS`].
    pub reason: &'static str,
}

/// Label set of `hearth_ingest_files_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `completed` or `failed`.
    pub status: &'static str,
}

/// The ingestion families.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    files: Family<StatusLabel, Counter>,
    pages: Counter,
    chunks: Counter,
    parse_failures: Family<ReasonLabel, Counter>,
    queue: Gauge,
}

impl IngestMetrics {
    /// Create the families and register them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = IngestMetrics {
            files: Family::default(),
            pages: Counter::default(),
            chunks: Counter::default(),
            parse_failures: Family::default(),
            queue: Gauge::default(),
        };
        registry.register("hearth_ingest_files", "Files whose ingestion finished, by outcome", m.files.clone());
        registry.register("hearth_ingest_pages", "Pages parsed from ingested files", m.pages.clone());
        registry.register("hearth_ingest_chunks", "Chunks embedded and stored from ingested files", m.chunks.clone());
        registry.register("hearth_ingest_parse_failures", "Files the sandboxed parser could not read, by reason", m.parse_failures.clone());
        registry.register("hearth_ingest_queue_files", "Files waiting for or in ingestion", m.queue.clone());
        for status in ["completed", "failed"] {
            let _ = m.files.get_or_create(&StatusLabel { status });
        }
        for reason in PARSE_FAILURE_REASONS {
            let _ = m.parse_failures.get_or_create(&ReasonLabel { reason });
        }
        m
    }

    /// One file could not be parsed; `reason` is one of [`PARSE_FAILURE_REASONS`].
    pub fn parse_failed(&self, reason: &'static str) {
        debug_assert!(PARSE_FAILURE_REASONS.contains(&reason), "{reason}");
        self.parse_failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// One file finished.
    pub fn finished(&self, status: &'static str, pages: usize, chunks: usize) {
        self.files.get_or_create(&StatusLabel { status }).inc();
        self.pages.inc_by(pages as u64);
        self.chunks.inc_by(chunks as u64);
    }

    /// The queue's current length.
    pub fn set_queue(&self, files: usize) {
        self.queue.set(i64::try_from(files).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parse_failure_maps_into_the_closed_set() {
        let failures = [
            ParseFailure::Parse(ParseError::Encrypted),
            ParseFailure::Parse(ParseError::NoText),
            ParseFailure::Parse(ParseError::Malformed("PDF".into())),
            ParseFailure::Parse(ParseError::Unsupported("x".into())),
            ParseFailure::Parse(ParseError::ParserFailed("x".into())),
            ParseFailure::Crashed { signal: Some(11), exit_code: None, stderr_tail: String::new() },
            ParseFailure::TimedOut { kind: ingest::sandbox::TimeLimit::Cpu, limit: std::time::Duration::from_secs(1) },
            ParseFailure::OutOfMemory { limit_bytes: 1 << 20 },
            ParseFailure::Io("x".into()),
            ParseFailure::BadOutput("x".into()),
        ];
        let reasons: Vec<&str> = failures.iter().map(parse_failure_reason).collect();
        assert!(reasons.iter().all(|r| PARSE_FAILURE_REASONS.contains(r)), "{reasons:?}");
        let distinct: std::collections::HashSet<_> = reasons.iter().collect();
        assert_eq!(distinct.len(), failures.len(), "each kind of failure has its own reason: {reasons:?}");
    }

    #[test]
    fn parse_failures_are_counted_by_reason_from_zero() {
        let mut registry = Registry::default();
        let m = IngestMetrics::register(&mut registry);
        m.parse_failed("malformed");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("hearth_ingest_parse_failures_total{reason=\"malformed\"} 1\n"), "{out}");
        assert!(out.contains("hearth_ingest_parse_failures_total{reason=\"crashed\"} 0\n"), "{out}");
    }
}
