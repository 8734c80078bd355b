//! Reading the body once, up to a limit and within a time, and handing it on.
//!
//! Every body-verifying layer uses this one mechanism. The bytes are put back as the request's
//! body, so `Json<T>`, `Bytes`, `String` and `Form` work unchanged downstream, and recorded in
//! the request's extensions, so a second layer on the same route finds them instead of reading
//! again.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::Rejection;

/// The default body limit: 2 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// The default bound on reading a body: 10 seconds.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a body a layer reads, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The largest body accepted; larger ones are answered 413, as soon as that is known.
    pub limit: usize,
    /// How long reading the body may take; slower ones are answered 408.
    pub read_timeout: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            limit: DEFAULT_BODY_LIMIT,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

/// The body as already read by a layer (private: only this crate puts it there).
#[derive(Clone)]
struct Buffered(Bytes);

/// Reads the body of `request` (or finds it already read) and puts it back.
pub(crate) async fn buffer(
    request: Request<Body>,
    limits: BodyLimits,
) -> Result<(Request<Body>, Bytes), Rejection> {
    if let Some(Buffered(bytes)) = request.extensions().get::<Buffered>().cloned() {
        if bytes.len() > limits.limit {
            return Err(Rejection::payload_too_large(limits.limit));
        }
        return Ok((request, bytes));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.limit as u64) {
        return Err(Rejection::payload_too_large(limits.limit));
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        limits.read_timeout,
        Limited::new(body, limits.limit).collect(),
    )
    .await;
    let bytes = match read {
        Err(_) => return Err(Rejection::body_timeout(limits.read_timeout)),
        Ok(Err(error)) if error.is::<LengthLimitError>() => {
            return Err(Rejection::payload_too_large(limits.limit));
        }
        Ok(Err(error)) => return Err(Rejection::body_unreadable(error)),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let mut request = Request::from_parts(parts, Body::empty());
    replace_body(&mut request, bytes.clone());
    Ok((request, bytes))
}

/// Makes `bytes` the request's body (and what later layers find), with a matching
/// `Content-Length`.
pub(crate) fn replace_body(request: &mut Request<Body>, bytes: Bytes) {
    request.headers_mut().remove(header::TRANSFER_ENCODING);
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    request.extensions_mut().insert(Buffered(bytes.clone()));
    *request.body_mut() = Body::from(bytes);
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    use http_body::Frame;

    use super::*;

    /// A body that counts how often it is polled for data.
    struct Counting {
        polls: Arc<AtomicUsize>,
        data: Option<Bytes>,
    }

    impl http_body::Body for Counting {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
        }
    }

    #[tokio::test]
    async fn a_second_layer_finds_the_body_already_read() {
        let polls = Arc::new(AtomicUsize::new(0));
        let body = Body::new(Counting {
            polls: polls.clone(),
            data: Some(Bytes::from_static(b"hello")),
        });
        let request = Request::new(body);
        let (request, first) = buffer(request, BodyLimits::default()).await.unwrap();
        let after_first = polls.load(Ordering::SeqCst);
        let (request, second) = buffer(request, BodyLimits::default()).await.unwrap();
        assert_eq!(polls.load(Ordering::SeqCst), after_first, "not read again");
        assert_eq!(first, second);
        assert_eq!(request.headers()[header::CONTENT_LENGTH], "5");
        let downstream = request.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(downstream, "hello");
    }

    #[tokio::test]
    async fn a_smaller_limit_on_a_later_layer_still_applies() {
        let request = Request::new(Body::from("0123456789"));
        let (request, _) = buffer(request, BodyLimits::default()).await.unwrap();
        let small = BodyLimits {
            limit: 4,
            ..BodyLimits::default()
        };
        assert_eq!(
            buffer(request, small).await.unwrap_err().code(),
            "payload_too_large"
        );
    }
}
