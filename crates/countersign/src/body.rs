//! Reading the body once, up to a limit and within a time, and handing it on.
//!
//! Every body-verifying layer uses this one mechanism. The verified bytes are put back as the
//! request's body, so `Json<T>`, `Bytes`, `String` and `Form` work unchanged downstream, and
//! the verdict that holds them is the request's one extension, so a second layer on the same
//! route finds them instead of reading again.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::extract::Verified;
use crate::problem::Rejection;

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

/// Refuses, before reading anything, a body whose `Content-Length` passes the limit.
pub(crate) fn check_declared_length(
    headers: &http::HeaderMap,
    limits: BodyLimits,
) -> Result<(), Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.limit as u64) {
        return Err(Rejection::payload_too_large(limits.limit));
    }
    Ok(())
}

/// Reads the body of `request` (or finds it in the verdict of an earlier layer). The declared
/// length was checked with the head ([`check_declared_length`]); the streamed one is checked
/// here.
pub(crate) async fn buffer(
    request: Request<Body>,
    limits: BodyLimits,
) -> Result<(Parts, Bytes), Rejection> {
    let (parts, body) = request.into_parts();
    if let Some(verified) = parts.extensions.get::<Verified>() {
        let bytes = verified.body().clone();
        if bytes.len() > limits.limit {
            return Err(Rejection::payload_too_large(limits.limit));
        }
        return Ok((parts, bytes));
    }
    let read = tokio::time::timeout(
        limits.read_timeout,
        Limited::new(body, limits.limit).collect(),
    )
    .await;
    match read {
        Err(_) => Err(Rejection::body_timeout(limits.read_timeout)),
        Ok(Err(error)) if error.is::<LengthLimitError>() => {
            Err(Rejection::payload_too_large(limits.limit))
        }
        Ok(Err(error)) => Err(Rejection::body_unreadable(error)),
        Ok(Ok(collected)) => Ok((parts, collected.to_bytes())),
    }
}

/// The request again, its body the verdict's bytes (with a matching `Content-Length`) and the
/// verdict its one extension for extractors and later layers.
pub(crate) fn hand_on(mut parts: Parts, verified: Verified) -> Request<Body> {
    let bytes = verified.body().clone();
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    parts.extensions.insert(verified);
    Request::from_parts(parts, Body::from(bytes))
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

    /// A real verdict over `body`: a Contentful request signed and verified.
    fn verified(body: &'static [u8]) -> Verified {
        use countersign_core::contentful::{
            self, Context, RequestToSign, RequestVerifier, SigningSecret,
        };
        let secret = SigningSecret::new("a".repeat(64)).unwrap();
        let at = std::time::SystemTime::now();
        let to_sign = RequestToSign::new(http::Method::POST, "/").with_body(body);
        let signed = contentful::sign(&secret, &to_sign, at, &Context::default())
            .expect("the header values move no boundary");
        let mut request = Request::post("/").body(()).unwrap();
        *request.headers_mut() = signed.to_header_map().unwrap();
        let (parts, ()) = request.into_parts();
        let verdict = RequestVerifier::new(secret)
            .verify(&parts, Bytes::from_static(body), None, at)
            .unwrap();
        Verified::Contentful(Arc::new(verdict))
    }

    #[tokio::test]
    async fn a_second_layer_finds_the_body_already_read() {
        let polls = Arc::new(AtomicUsize::new(0));
        let body = Body::new(Counting {
            polls: polls.clone(),
            data: Some(Bytes::from_static(b"hello")),
        });
        let (parts, first) = buffer(Request::new(body), BodyLimits::default())
            .await
            .unwrap();
        assert_eq!(first, "hello");
        let after_first = polls.load(Ordering::SeqCst);
        let request = hand_on(parts, verified(b"hello"));
        let (parts, second) = buffer(request, BodyLimits::default()).await.unwrap();
        assert_eq!(polls.load(Ordering::SeqCst), after_first, "not read again");
        assert_eq!(first, second);
        let request = hand_on(parts, verified(b"hello"));
        assert_eq!(request.headers()[header::CONTENT_LENGTH], "5");
        let downstream = request.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(downstream, "hello");
    }

    #[tokio::test]
    async fn a_smaller_limit_on_a_later_layer_still_applies() {
        let (parts, _) = buffer(
            Request::new(Body::from("0123456789")),
            BodyLimits::default(),
        )
        .await
        .unwrap();
        let request = hand_on(parts, verified(b"0123456789"));
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
