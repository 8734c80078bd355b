//! What an AWS Lambda event keeps of the request its sender signed: the request target (path
//! and query) a verifier must check a Contentful signature against, for each kind of event
//! (`shared/spec/lambda.md`). Contentstack signs the body alone, which every kind keeps.
//!
//! | event | the path as the sender saw it | the query as sent |
//! |---|---|---|
//! | REST API (v1), an `execute-api` host or a custom domain | `requestContext.path` (the stage or base path included) | lost: [`ErrorKind::QueryLost`] |
//! | HTTP API (v2), a named stage or `$default`; a Function URL | `rawPath` | `rawQueryString` |
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

/// What a router behind a function served under `prefix` (its stage or base path, checked by
/// [`validate_path_prefix`](crate::contentful::validate_path_prefix)) routes on: `target`
/// less `prefix`, when `target` is under it; else `target` as it is (whose signature, checked
/// with the prefix put back, then fails).
///
/// ```
/// use countersign_core::lambda::routed_target;
/// assert_eq!(routed_target("/prod/contentful/events?x=1", Some("/prod")), "/contentful/events?x=1");
/// assert_eq!(routed_target("/prod?x=1", Some("/prod")), "/?x=1");
/// assert_eq!(routed_target("/production/events", Some("/prod")), "/production/events");
/// ```
#[must_use]
pub fn routed_target(target: &str, prefix: Option<&str>) -> String {
    let rest = prefix.and_then(|prefix| target.strip_prefix(prefix));
    match rest {
        Some(rest) if rest.is_empty() || rest.starts_with('?') => format!("/{rest}"),
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => target.to_owned(),
    }
}
