//! Page images for the console's citation preview, rendered by the same sandboxed worker that
//! parses files (`ingest::Sandbox::render_page`): PDFium runs on an untrusted PDF only inside the
//! confined child, never in the daemon and never on an actix worker thread (the parent side is
//! async: it spawns the child and waits for its reply).
//!
//! Concurrency has its own small bound ([`MAX_RENDERS`], a semaphore), apart from the ingestion
//! workers', so previews neither wait behind a long ingestion queue nor take its slots: a render
//! waits at most [`ADMISSION_WAIT`] for a slot, then the request is refused as busy (429). The
//! renderer's errors become [`ServiceError`]s here: no such page → not found, PDFium missing →
//! unavailable, a file PDFium cannot open → invalid, a crash or limit on a hostile file → invalid
//! with the reason, a worker that could not start → internal.

use std::sync::Arc;
use std::time::Duration;

use ingest::{PageImage, RenderError, RenderFailure, RenderRequest, Sandbox};
use tokio::sync::Semaphore;

use crate::fault::ServiceError;

/// Renders at once; each is one child process with one CPU-bound PDFium render.
pub const MAX_RENDERS: usize = 2;

/// How long a render waits for a slot before it is refused.
pub const ADMISSION_WAIT: Duration = Duration::from_secs(10);

/// The renderer: the ingestion's sandbox and its own slots.
#[derive(Debug, Clone)]
pub struct PageRenderer {
    sandbox: Sandbox,
    slots: Arc<Semaphore>,
}

impl PageRenderer {
    /// A renderer running `sandbox`'s worker, [`MAX_RENDERS`] at a time.
    pub fn new(sandbox: Sandbox) -> Self {
        PageRenderer { sandbox, slots: Arc::new(Semaphore::new(MAX_RENDERS)) }
    }

    /// Page `request.page` of the PDF `file` as a PNG, with `request.highlight` painted over.
    pub async fn render(&self, file: std::fs::File, request: RenderRequest) -> Result<PageImage, ServiceError> {
        let page = request.page;
        let permit = tokio::time::timeout(ADMISSION_WAIT, self.slots.clone().acquire_owned()).await;
        let Ok(Ok(_permit)) = permit else {
            return Err(ServiceError::Busy(format!("{MAX_RENDERS} page images are being rendered; retry shortly")));
        };
        self.sandbox.render_page(file, request).await.map_err(|e| failure(e, page))
    }
}

/// What a client reads for each way a render fails.
fn failure(e: RenderFailure, page: u32) -> ServiceError {
    match e {
        RenderFailure::Render(RenderError::Invalid(message)) => ServiceError::Invalid { field: None, message, code: "invalid_value" },
        RenderFailure::Render(e @ RenderError::PageOutOfRange { .. }) => ServiceError::NotFound { what: "page", id: page.to_string(), message: e.to_string() },
        RenderFailure::Render(e @ RenderError::PdfiumUnavailable(_)) => ServiceError::Unavailable(e.to_string()),
        RenderFailure::Render(RenderError::Document(e)) => {
            ServiceError::Invalid { field: None, message: format!("the file cannot be rendered: {e}"), code: "unreadable_file" }
        }
        RenderFailure::Render(RenderError::Failed(why)) => ServiceError::Internal(format!("rendering page {page} failed: {why}")),
        RenderFailure::Worker(e) if e.is_file_problem() => {
            ServiceError::Invalid { field: None, message: format!("rendering page {page} of this file failed: {e}"), code: "render_failed" }
        }
        // The worker could not start or answered nonsense: ours to fix.
        RenderFailure::Worker(e) => ServiceError::Internal(format!("the page renderer: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest::ParseFailure;

    #[test]
    fn each_failure_gets_its_kind() {
        let out_of_range = failure(RenderFailure::Render(RenderError::PageOutOfRange { page: 9, page_count: 3 }), 9);
        assert!(matches!(&out_of_range, ServiceError::NotFound { what: "page", id, .. } if id == "9"), "{out_of_range:?}");
        assert!(out_of_range.to_string().contains("has 3 page(s)"));
        let missing = failure(RenderFailure::Render(RenderError::PdfiumUnavailable("no libpdfium.so".into())), 1);
        assert!(matches!(missing, ServiceError::Unavailable(_)), "{missing:?}");
        let encrypted = failure(RenderFailure::Render(RenderError::Document(ingest::ParseError::Encrypted)), 1);
        assert!(matches!(encrypted, ServiceError::Invalid { code: "unreadable_file", .. }), "{encrypted:?}");
        let crash = failure(RenderFailure::Worker(ParseFailure::Crashed { signal: Some(11), exit_code: None, stderr_tail: String::new() }), 2);
        assert!(matches!(crash, ServiceError::Invalid { code: "render_failed", .. }), "{crash:?}");
        let no_worker = failure(RenderFailure::Worker(ParseFailure::Io("could not start".into())), 2);
        assert!(matches!(no_worker, ServiceError::Internal(_)), "{no_worker:?}");
    }
}
