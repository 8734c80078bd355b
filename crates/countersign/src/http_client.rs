//! The HTTP client of the parts that call out (the well-known key endpoint, the app identity
//! exchange): https only, plain http to this machine excepted, redirects held to the same
//! rule, bounded answers.

use std::time::Duration;

/// A client with `timeout` per request whose redirects stay on https (or this machine), trusting
/// `roots` besides the system's.
#[cfg(any(feature = "well-known", feature = "app-identity"))]
pub(crate) fn secure_client(timeout: Duration, roots: &[reqwest::Certificate]) -> reqwest::Client {
    roots
        .iter()
        .fold(reqwest::Client::builder(), |builder, root| {
            builder.add_root_certificate(root.clone())
        })
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        // Never from https down to plain http elsewhere.
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 3 {
                attempt.error("more than 3 redirects")
            } else if countersign_core::ip::is_secure_url(attempt.url().as_str()) {
                attempt.follow()
            } else {
                attempt.error("a redirect away from https (plain http only to this machine)")
            }
        }))
        .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// A client with `timeout` per request that follows no redirect: for requests that carry
/// secrets in their body (OAuth's token requests), which a redirect would send elsewhere.
#[cfg(any(feature = "oauth", feature = "reconcile"))]
pub(crate) fn no_redirect_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// The whole answer, refused past `max` bytes (declared or streamed); `what` names it in the
/// error.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    let too_large = || format!("{what} is larger than {max} bytes");
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(too_large());
    }
    let mut document = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        document.extend_from_slice(&chunk);
        if document.len() > max {
            return Err(too_large());
        }
    }
    Ok(document)
}

/// What went wrong, in words that hold no URL credentials or answer bytes.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "the endpoint did not answer in time".to_owned()
    } else if error.is_connect() {
        "cannot connect to the endpoint".to_owned()
    } else if error.is_redirect() {
        // The policy's own reason is the error's source.
        let reason = std::error::Error::source(error).map(ToString::to_string);
        format!(
            "a redirect was refused: {}",
            reason.as_deref().unwrap_or("not followed")
        )
    } else {
        format!("the request failed: {error}")
    }
}
