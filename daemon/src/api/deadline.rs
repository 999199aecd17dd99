//! The body-read deadline (`[server] body_read_timeout_seconds`): a client that sends its headers
//! and then dribbles the body, or stops sending (slowloris), is answered 408 and its connection
//! closed, instead of holding a worker's connection and a half-read buffer for as long as it likes.
//!
//! Middleware replaces the payload of every request that announces a body with [`Deadline`], a
//! stream that ends in an error once the deadline passes while it waits for the client; whatever
//! the extractor or handler made of that error, the answer becomes the 408. A JSON body (at most
//! `max_body_bytes`, 4 MiB by default) must arrive whole within the deadline, counted from the end
//! of the headers. A multipart upload (`/v1/files`: up to `[ingest] max_file_bytes`, possibly over
//! a slow link) has no total limit: the deadline is the longest pause between two pieces of the
//! body. Headers are bounded separately by actix's `client_request_timeout` (see `server`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{HttpMessage, ResponseError};
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;
use crate::state::AppState;

/// How the deadline counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// The whole body within the limit.
    Total,
    /// At most the limit between two pieces (uploads).
    Idle,
}

/// A request payload that fails with a timeout once the client has kept it waiting past the limit.
pub struct Deadline<S> {
    inner: S,
    sleep: Pin<Box<Sleep>>,
    limit: Duration,
    budget: Budget,
    expired: Arc<AtomicBool>,
}

impl<S> Deadline<S> {
    /// Wrap `inner`; the clock starts now. `expired` is set when the deadline fires.
    pub fn new(inner: S, limit: Duration, budget: Budget, expired: Arc<AtomicBool>) -> Self {
        Self { inner, sleep: Box::pin(tokio::time::sleep(limit)), limit, budget, expired }
    }
}

impl<S: Stream<Item = Result<Bytes, PayloadError>> + Unpin> Stream for Deadline<S> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.expired.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if this.budget == Budget::Idle {
                    this.sleep.as_mut().reset(Instant::now() + this.limit);
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {}
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(io::ErrorKind::TimedOut, "the request body did not arrive in time")))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Whether the request announces a body (a length above 0, or chunked).
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0")
}

/// Multipart bodies (uploads) get the idle budget, everything else the total one.
fn budget(req: &ServiceRequest) -> Budget {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/"));
    if multipart {
        Budget::Idle
    } else {
        Budget::Total
    }
}

/// Middleware: put the body-read deadline on the request's payload; answer 408 (and close the
/// connection) when it fired.
pub async fn body_deadline<B: MessageBody>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let seconds = match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.settings().server.body_read_timeout_seconds,
        None => return Ok(req.into_response(ApiError::Internal("the application state is not installed".into()).error_response()).map_into_right_body()),
    };
    if !has_body(&req) {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let budget = budget(&req);
    let expired = Arc::new(AtomicBool::new(false));
    let payload = Deadline::new(req.take_payload(), Duration::from_secs(seconds), budget, Arc::clone(&expired));
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(payload);
    req.set_payload(Payload::from(boxed));
    let res = next.call(req).await?;
    if !expired.load(Ordering::Relaxed) {
        return Ok(res.map_into_left_body());
    }
    let error = ApiError::RequestTimeout { seconds, upload: budget == Budget::Idle };
    tracing::info!(method = %res.request().method(), path = %res.request().path(), "{error}");
    let mut response = error.error_response();
    response.head_mut().set_connection_type(ConnectionType::Close);
    Ok(res.into_response(response).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    const LIMIT: Duration = Duration::from_millis(400);

    fn chunks() -> (tokio::sync::mpsc::UnboundedSender<Result<Bytes, PayloadError>>, impl Stream<Item = Result<Bytes, PayloadError>> + Unpin) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (tx, Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })))
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_fails_after_the_limit_and_says_so() {
        let (tx, inner) = chunks();
        let expired = Arc::new(AtomicBool::new(false));
        let started = std::time::Instant::now();
        let mut body = Deadline::new(inner, LIMIT, Budget::Total, Arc::clone(&expired));
        tx.send(Ok(Bytes::from_static(b"0123456789"))).unwrap_or_else(|_| panic!("send"));
        assert_eq!(body.next().await.map(|r| r.map_err(|e| e.to_string())), Some(Ok(Bytes::from_static(b"0123456789"))));
        let failed = body.next().await;
        assert!(matches!(failed, Some(Err(PayloadError::Io(ref e))) if e.kind() == io::ErrorKind::TimedOut), "{failed:?}");
        let waited = started.elapsed();
        assert!(waited >= LIMIT && waited <= LIMIT + Duration::from_millis(300), "{waited:?}: the deadline fires at the limit");
        assert!(expired.load(Ordering::Relaxed));
        assert!(body.next().await.is_none(), "the stream ends after the timeout");
    }

    #[tokio::test]
    async fn an_upload_may_take_longer_than_the_limit_while_pieces_keep_coming() {
        let (tx, inner) = chunks();
        let expired = Arc::new(AtomicBool::new(false));
        let mut body = Deadline::new(inner, LIMIT, Budget::Idle, Arc::clone(&expired));
        let sender = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(LIMIT * 3 / 4).await;
                let _ = tx.send(Ok(Bytes::from_static(b"piece")));
            }
            drop(tx);
        });
        let mut received = 0;
        while let Some(piece) = body.next().await {
            assert!(piece.is_ok(), "{piece:?}");
            received += 1;
        }
        sender.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(received, 5, "five pieces 3/4 of the limit apart pass the idle limit");
        assert!(!expired.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_total_budget_fails_a_body_that_keeps_dribbling() {
        let (tx, inner) = chunks();
        let expired = Arc::new(AtomicBool::new(false));
        let mut body = Deadline::new(inner, LIMIT, Budget::Total, Arc::clone(&expired));
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(LIMIT * 3 / 4).await;
                if tx.send(Ok(Bytes::from_static(b"piece"))).is_err() {
                    return;
                }
            }
        });
        assert!(body.next().await.is_some_and(|r| r.is_ok()));
        assert!(matches!(body.next().await, Some(Err(_))), "the second piece would come at 1.5 times the limit");
        assert!(expired.load(Ordering::Relaxed));
    }
}
