//! What an AWS Lambda event keeps of the request its sender signed: the request target (path
//! and query) a verifier must check a Contentful signature against, for each kind of event
//! (`shared/spec/lambda.md`). Contentstack signs the body alone, which every kind keeps.
//!
//! | event | the path as the sender saw it | the query as sent |
//! |---|---|---|
//! | REST API (v1), an `execute-api` host or a custom domain | `requestContext.path` (the stage or base path included) | lost: [`ErrorKind::QueryLost`] |
//! | HTTP API (v2), a named stage or `$default` | `rawPath`, percent-decoded (a signed `%xx` is lost) | `rawQueryString` |
//! | Function URL | `rawPath` | `rawQueryString` |
//! | Application Load Balancer | `path` | lost: [`ErrorKind::QueryLost`] |
//!
//! ```
//! use countersign_core::lambda::{Event, signed_target};
//! let v2 = Event::HttpApi { raw_path: "/prod/contentful/events", raw_query: "b=2&a=%2F" };
//! assert_eq!(signed_target(&v2).unwrap(), "/prod/contentful/events?b=2&a=%2F");
//! let v1 = Event::RestApi { context_path: Some("/prod/contentful/events"), has_query: true };
//! assert!(signed_target(&v1).is_err());
//! ```

/// Why the signed request target cannot be had from an event: a [`ErrorKind`] and a message.
pub type Error = crate::error::Rejected<ErrorKind>;

crate::reason_kind! {
    /// The kinds of [`Error`].
    pub enum ErrorKind {
        /// The event keeps the query only as a map (REST API v1, ALB): its order and encoding,
        /// which the signature covers, are gone. Use an HTTP API (v2) or a Function URL.
        QueryLost => LAMBDA_QUERY_LOST,
        /// The event does not say which path its sender called (a REST API event without
        /// `requestContext.path`).
        PathLost => LAMBDA_QUERY_LOST,
        /// The target is not under the function's prefix (its stage or base path).
        NotUnderPrefix => LAMBDA_PREFIX_MISSING,
        /// The target holds a `#` (which `http` would cut it at) or is no request target.
        InvalidTarget => LAMBDA_TARGET_INVALID,
    }
}

/// What an event keeps of the request target, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A REST API (payload 1.0) event: `requestContext.path`, and whether the request had a
    /// query (`multiValueQueryStringParameters` not empty).
    RestApi {
        /// `requestContext.path`: the path the sender called, its stage or base path included.
        context_path: Option<&'a str>,
        /// Whether the request had a query.
        has_query: bool,
    },
    /// An HTTP API (payload 2.0) or Function URL event: `rawPath` and `rawQueryString`.
    HttpApi {
        /// `rawPath`, the stage included when the stage is named.
        raw_path: &'a str,
        /// `rawQueryString`, as sent (empty: none).
        raw_query: &'a str,
    },
    /// An Application Load Balancer event: `path`, and whether the request had a query.
    Alb {
        /// `path`.
        path: &'a str,
        /// Whether the request had a query.
        has_query: bool,
    },
}

/// The request target the sender signed (`path`, or `path?query`), from what `event` keeps.
///
/// # Errors
/// [`ErrorKind::QueryLost`] when the sender sent a query the event keeps only as a map;
/// [`ErrorKind::PathLost`] when a REST API event has no `requestContext.path`.
pub fn signed_target(event: &Event<'_>) -> Result<String, Error> {
    let query_lost = |kind: &str| {
        Error::new(
            ErrorKind::QueryLost,
            format!(
                "{kind} events keep the query only as a map, so its order and encoding, which the \
                 signature covers, are gone: use an HTTP API (v2) or a Function URL, which keep it"
            ),
        )
    };
    match *event {
        Event::RestApi {
            has_query: true, ..
        } => Err(query_lost("REST API (v1)")),
        Event::RestApi {
            context_path: Some(path),
            has_query: false,
        } => Ok(path.to_owned()),
        Event::RestApi {
            context_path: None, ..
        } => Err(Error::new(
            ErrorKind::PathLost,
            "the REST API event has no requestContext.path: the path its sender called is unknown",
        )),
        Event::HttpApi {
            raw_path,
            raw_query: "",
        } => Ok(raw_path.to_owned()),
        Event::HttpApi {
            raw_path,
            raw_query,
        } => Ok(format!("{raw_path}?{raw_query}")),
        Event::Alb {
            has_query: true, ..
        } => Err(query_lost("Application Load Balancer")),
        Event::Alb {
            path,
            has_query: false,
        } => Ok(path.to_owned()),
    }
}

/// What the router of a function served under `prefix` routes on, for a request that arrived
/// as `event` with `headers`: the target its sender signed ([`signed_target`]) less the
/// prefix ([`routed_target`]), as a URI. A request that carries no Contentful signature
/// (a Contentstack webhook) is routed on the event's path whatever its query: only a
/// Contentful signature covers the target.
///
/// ```
/// use countersign_core::lambda::{Event, route};
/// use http::HeaderMap;
/// let v1 = Event::RestApi { context_path: Some("/prod/webhooks"), has_query: true };
/// assert_eq!(route(&v1, &HeaderMap::new(), Some("/prod")).unwrap(), "/webhooks");
/// let mut signed = HeaderMap::new();
/// signed.insert(countersign_core::contentful::SIGNATURE, "00".parse().unwrap());
/// assert!(route(&v1, &signed, Some("/prod")).is_err());
/// ```
///
/// # Errors
/// Those of [`signed_target`] (for a Contentful-signed request) and [`routed_target`], and
/// [`ErrorKind::InvalidTarget`] for a path that is no request target.
pub fn route(
    event: &Event<'_>,
    headers: &http::HeaderMap,
    prefix: Option<&str>,
) -> Result<http::Uri, Error> {
    let target = match signed_target(event) {
        Ok(target) => target,
        Err(_) if !headers.contains_key(crate::contentful::SIGNATURE) => match *event {
            Event::RestApi { context_path, .. } => context_path.unwrap_or("/"),
            Event::HttpApi { raw_path, .. } => raw_path,
            Event::Alb { path, .. } => path,
        }
        .to_owned(),
        Err(error) => return Err(error),
    };
    routed_target(&target, prefix)?.parse().map_err(|_| {
        Error::new(
            ErrorKind::InvalidTarget,
            "the Lambda event's path is not a request target",
        )
    })
}

/// What a router behind a function served under `prefix` (its stage or base path, checked by
/// [`validate_path_prefix`](crate::contentful::validate_path_prefix)) routes on: `target`
/// less `prefix`.
///
/// ```
/// use countersign_core::lambda::routed_target;
/// assert_eq!(routed_target("/prod/contentful/events?x=1", Some("/prod")).unwrap(), "/contentful/events?x=1");
/// assert_eq!(routed_target("/prod?x=1", Some("/prod")).unwrap(), "/?x=1");
/// assert!(routed_target("/production/events", Some("/prod")).is_err());
/// assert!(routed_target("/contentful/events", Some("/prod")).is_err());
/// assert!(routed_target("/contentful/events#x", None).is_err());
/// ```
///
/// # Errors
/// [`ErrorKind::NotUnderPrefix`] when `target` is not under `prefix`: a request through
/// another entry point (a Function URL beside the stage's URL), which the verifier would
/// check with the prefix put back, a path its sender did not call;
/// [`ErrorKind::InvalidTarget`] when it holds a `#`.
pub fn routed_target(target: &str, prefix: Option<&str>) -> Result<String, Error> {
    if target.contains('#') {
        return Err(Error::new(
            ErrorKind::InvalidTarget,
            "the Lambda event's request target holds a `#`",
        ));
    }
    let Some(prefix) = prefix else {
        return Ok(target.to_owned());
    };
    match target.strip_prefix(prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with('?') => Ok(format!("/{rest}")),
        Some(rest) if rest.starts_with('/') => Ok(rest.to_owned()),
        _ => Err(Error::new(
            ErrorKind::NotUnderPrefix,
            format!("the request target is not under the function's prefix `{prefix}`"),
        )),
    }
}
