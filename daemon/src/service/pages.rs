//! A stored file's page as an image, for the console's citation preview
//! (`GET /v1/files/{id}/pages/{page}/image?highlight=...&width=...`).
//!
//! The file is looked up in the registry (`crate::files`: an unknown id is 404), its format
//! detected from its first bytes and name as ingestion does; only a PDF has page images (anything
//! else is a 400 that points at the chunk text). The query is checked here, with the field at
//! fault named: the page a whole number from 1, the width within the renderer's bounds, the
//! passage at most [`ingest::parse::MAX_HIGHLIGHT_CHARS`] characters. The open file goes to the
//! ingestion's page renderer (`crate::ingest::pages`), which renders in the sandboxed worker.

use std::sync::Arc;

use ingest::parse::{MAX_HIGHLIGHT_CHARS, MAX_WIDTH, MIN_WIDTH};
use ingest::{Format, PageImage, RenderRequest};
use serde::Deserialize;

use crate::blocking::blocking;
use crate::fault::ServiceError;
use crate::ingest::Ingestion;

/// Width when the request names none: a preview pane's width at twice its CSS pixels.
pub const DEFAULT_WIDTH: u32 = 1000;

/// The query string of the page image route.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageImageQuery {
    /// The passage to highlight (a citation's chunk text, or its first words), at most 2,000
    /// characters.
    #[param(max_length = 2000)]
    pub highlight: Option<String>,
    /// Image width in pixels, 100 to 1600 (default 1000); a very tall page may come out narrower
    /// to stay within 4 megapixels.
    #[param(minimum = 100, maximum = 1600)]
    pub width: Option<u32>,
}

/// Page `page` (as written in the path) of file `id`, rendered.
pub async fn page_image(ingestion: Arc<Ingestion>, id: String, page: String, query: PageImageQuery) -> Result<PageImage, ServiceError> {
    let request = request(&page, query)?;
    let library = ingestion.library().clone();
    let file = blocking(move || {
        let record = library.files().get(&id)?;
        let path = library.files().content_path(&record.id)?;
        let file = std::fs::File::open(&path).map_err(|e| ServiceError::Internal(format!("cannot open file {}: {e}", record.id)))?;
        let head = crate::files::read_head(&file).map_err(|e| ServiceError::Internal(format!("cannot read file {}: {e}", record.id)))?;
        match Format::detect(Some(&record.filename), &head) {
            Some(Format::Pdf) => Ok(file),
            other => Err(ServiceError::Invalid {
                field: None,
                message: format!(
                    "page images exist only for PDFs; `{}` is {}: use the chunk text (GET /v1/vector_stores/{{vector_store_id}}/files/{}/content)",
                    record.filename,
                    other.map_or("not a known document format", |f| f.as_str()),
                    record.id
                ),
                code: "not_a_pdf",
            }),
        }
    })
    .await?;
    ingestion.pages().render(file, request).await
}

/// The render request from the path's page and the query, or the 400 that names the field.
fn request(page: &str, query: PageImageQuery) -> Result<RenderRequest, ServiceError> {
    let page = page
        .parse::<u32>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| ServiceError::invalid("page", format!("the page must be a whole number from 1, not {page:?}")))?;
    let width = query.width.unwrap_or(DEFAULT_WIDTH);
    if !(MIN_WIDTH..=MAX_WIDTH).contains(&width) {
        return Err(ServiceError::invalid("width", format!("width must be {MIN_WIDTH} to {MAX_WIDTH} pixels, not {width}")));
    }
    let highlight = query.highlight.filter(|h| !h.trim().is_empty());
    if let Some(text) = &highlight {
        let n = text.chars().count();
        if n > MAX_HIGHLIGHT_CHARS {
            return Err(ServiceError::invalid("highlight", format!("highlight is {n} characters; at most {MAX_HIGHLIGHT_CHARS} are accepted (send the passage's first words)")));
        }
    }
    // A NUL cannot travel in the worker's arguments; it is not text to match anyway.
    let highlight = highlight.map(|h| h.replace('\0', " "));
    Ok(RenderRequest { page, width, highlight })
}


#[cfg(test)]
mod tests {
    use super::*;

    fn query(highlight: Option<&str>, width: Option<u32>) -> PageImageQuery {
        PageImageQuery { highlight: highlight.map(str::to_owned), width }
    }

    fn field(e: ServiceError) -> Option<String> {
        match e {
            ServiceError::Invalid { field, .. } => field,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn the_query_is_checked_field_by_field() {
        let ok = request("2", query(Some("the passage"), None)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok, RenderRequest { page: 2, width: DEFAULT_WIDTH, highlight: Some("the passage".into()) });
        for page in ["0", "-1", "two", "", "99999999999"] {
            assert_eq!(request(page, query(None, None)).err().and_then(field).as_deref(), Some("page"), "{page:?}");
        }
        assert_eq!(request("1", query(None, Some(99))).err().and_then(field).as_deref(), Some("width"));
        assert_eq!(request("1", query(None, Some(1601))).err().and_then(field).as_deref(), Some("width"));
        let long = "é".repeat(MAX_HIGHLIGHT_CHARS + 1);
        assert_eq!(request("1", query(Some(&long), None)).err().and_then(field).as_deref(), Some("highlight"));
        let at_limit = "é".repeat(MAX_HIGHLIGHT_CHARS);
        assert!(request("1", query(Some(&at_limit), Some(1600))).is_ok(), "2,000 characters (4,000 bytes) are accepted");
        let blank = request("1", query(Some("  "), None)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(blank.highlight, None, "a blank passage is no highlight");
        let nul = request("1", query(Some("a\0b"), None)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(nul.highlight.as_deref(), Some("a b"));
    }
}
