//! Non-streamed responses that notice a client hanging up.
//!
//! actix does not cancel a handler when its client disconnects; it only finds out when a write
//! fails. A generation that outlives `FIRST_WAIT` is therefore answered with `200` at once and a
//! body that is a single space every `TICK` (whitespace before a JSON document is valid JSON),
//! then the document. When the client has gone, a write fails, actix drops the body, the token
//! stream inside it is dropped, and the engine frees the sequence at its next step. Requests
//! that finish within `FIRST_WAIT` (and every validation error, which happens before) get a
//! normal response with their real status code.

use std::future::Future;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpResponse, ResponseError};
use futures_util::stream;
use serde_json::Value;

use crate::error::ApiError;

/// How long a request may run before its response switches to a held body.
const FIRST_WAIT: Duration = Duration::from_millis(1000);
/// Interval between keep-alive spaces.
const TICK: Duration = Duration::from_millis(250);

/// Respond with the JSON that `work` produces, holding the connection as described above.
pub(crate) async fn json_when_done<F>(work: F) -> HttpResponse
where
    F: Future<Output = Result<Value, ApiError>> + 'static,
{
    let mut work = Box::pin(work);
    match tokio::time::timeout(FIRST_WAIT, &mut work).await {
        Ok(Ok(value)) => return HttpResponse::Ok().json(value),
        Ok(Err(e)) => return e.error_response(),
        Err(_) => {}
    }
    let body = stream::unfold(Some(work), |state| async move {
        let mut work = state?;
        let chunk = match tokio::time::timeout(TICK, &mut work).await {
            Err(_) => return Some((Ok::<_, actix_web::Error>(Bytes::from_static(b" ")), Some(work))),
            Ok(Ok(value)) => Bytes::from(value.to_string()),
            // The status line is gone already: the error travels in the body, in OpenAI's shape.
            Ok(Err(e)) => Bytes::from(e.body().to_string()),
        };
        Some((Ok(chunk), None))
    });
    HttpResponse::Ok().content_type("application/json").streaming(body)
}
