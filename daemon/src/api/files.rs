//! The Files API: `POST /v1/files` (multipart: `file`, `purpose`), `GET /v1/files`,
//! `GET /v1/files/{id}`, `GET /v1/files/{id}/content`, `DELETE /v1/files/{id}`, and hearth's
//! `GET /v1/files/{id}/pages/{page}/image` (a PDF page as PNG with a passage highlighted, for the
//! console's citation preview; the work is in `service::pages`).
//!
//! The upload is streamed to disk as it arrives, counted against `ingest.max_file_bytes`; the
//! client's file name is kept as metadata only.

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use futures_util::{StreamExt, TryStreamExt};

use super::keys::Scope;
use super::routes::{BodyKind, Route, Routes};
use super::types::files::FileObject;
use super::types::{Deleted, List};
use crate::error::ApiError;
use crate::service::files::{self, PURPOSES};
use crate::service::pages::{self, PageImageQuery};
use crate::service::listing::ListQuery;
use crate::state::AppState;

pub fn configure(r: &mut Routes<'_>) {
    r.add(Route::post("/v1/files", Scope::Ingest, BodyKind::Multipart), upload)
        .add(Route::get("/v1/files", Scope::Read), list)
        .add(Route::get("/v1/files/{id}", Scope::Read), get)
        .add(Route::delete("/v1/files/{id}", Scope::Admin), delete)
        .add(Route::get("/v1/files/{id}/content", Scope::Read), content)
        .add(Route::get("/v1/files/{id}/pages/{page}/image", Scope::Read), page_image);
}

/// `Cache-Control` of a page image: private (it shows the user's document), an hour (a file's
/// content never changes under its id).
pub const PAGE_IMAGE_CACHE: &str = "private, max-age=3600";

/// A PDF page as PNG; `X-Hearth-Highlight` says whether the passage was found (`whole`,
/// `partial`, `not-found`) when one was asked for.
async fn page_image(state: web::Data<AppState>, path: web::Path<(String, String)>, query: web::Query<PageImageQuery>) -> Result<HttpResponse, ApiError> {
    let (id, page) = path.into_inner();
    let image = pages::page_image(state.ingestion()?.clone(), id, page, query.into_inner()).await?;
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CONTENT_TYPE, "image/png")).insert_header((header::CACHE_CONTROL, PAGE_IMAGE_CACHE));
    response.insert_header(("x-hearth-page-count", image.page_count.to_string()));
    if let Some(h) = image.highlight {
        response.insert_header(("x-hearth-highlight", match (h.found, h.whole) {
            (true, true) => "whole",
            (true, false) => "partial",
            (false, _) => "not-found",
        }));
    }
    Ok(response.body(image.png))
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(param, message)
}

async fn upload(state: web::Data<AppState>, mut form: Multipart) -> Result<HttpResponse, ApiError> {
    let library = state.library()?.clone();
    let (mut purpose, mut received) = (None, None);
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| bad("file", format!("malformed multipart body: {e}")))?;
        match field.name().unwrap_or_default() {
            "file" => {
                let filename = field.content_disposition().and_then(|d| d.get_filename()).unwrap_or("upload").to_owned();
                let mut upload = library.files().upload()?;
                while let Some(bytes) = field.try_next().await.map_err(|e| bad("file", format!("the upload broke off: {e}")))? {
                    upload.write(&bytes)?;
                }
                received = Some((upload, filename));
            }
            "purpose" => {
                let mut text = Vec::new();
                while let Some(bytes) = field.try_next().await.map_err(|e| bad("purpose", e.to_string()))? {
                    text.extend_from_slice(&bytes);
                    if text.len() > 64 {
                        return Err(bad("purpose", "purpose is too long"));
                    }
                }
                purpose = Some(String::from_utf8_lossy(&text).trim().to_owned());
            }
            _ => while field.try_next().await.map_err(|e| bad("file", e.to_string()))?.is_some() {},
        }
    }
    let purpose = purpose.ok_or_else(|| bad("purpose", format!("the form needs a `purpose` field: one of {}", PURPOSES.join(", "))))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(bad("purpose", format!("purpose {purpose:?} is not one of {}", PURPOSES.join(", "))));
    }
    let (upload, filename) = received.ok_or_else(|| bad("file", "the form needs a `file` field with the file's content"))?;
    Ok(HttpResponse::Ok().json(FileObject::from(files::commit(library, upload, filename, purpose).await?)))
}

async fn list(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(List::<FileObject>::of(files::list(state.library()?.clone(), query.into_inner()).await?)))
}

async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(FileObject::from(files::get(state.library()?.clone(), id.into_inner()).await?)))
}

async fn delete(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    files::delete(state.library()?.clone(), id.clone()).await?;
    Ok(HttpResponse::Ok().json(Deleted::new(id, "file")))
}

/// The content, streamed from disk.
async fn content(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let library = state.library()?.clone();
    let record = files::get(library.clone(), id.into_inner()).await?;
    let path = library.files().content_path(&record.id)?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| ApiError::Internal(format!("cannot open file {}: {e}", record.id)))?;
    let body = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(web::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let disposition = format!("attachment; filename=\"{}\"", record.filename.replace(['"', '\\', '\r', '\n'], "_"));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .insert_header((header::CONTENT_LENGTH, record.bytes))
        .streaming(body))
}
