//! Contentful request signing, bit-exact with `@contentful/node-apps-toolkit`.
//!
//! Contentful signs app events, app actions, webhooks (when the space has a webhook signing
//! secret) and requests that an app frontend signs through the CMA
//! (`appSignedRequest.create`). All of them use one scheme: an HMAC-SHA256, keyed with the
//! app's 64-character signing secret (or, for a webhook, the space's webhook signing secret),
//! over a canonical string of
//!
//! ```text
//! METHOD \n PATH \n name:value;name:value... \n BODY
//! ```
//!
//! sent in three headers: `x-contentful-signature` (lower-case hex), `x-contentful-signed-headers`
//! (which headers are covered) and `x-contentful-timestamp` (Unix milliseconds).
//!
//! - [`sign`] does what the toolkit's `signRequest` does, for backends that call other services
//!   and for tests.
//! - [`app_identity`] mints the one-time token of `getManagementToken` and reads the access
//!   token exchange: an app backend calling Contentful as the app.
//! - [`RequestVerifier`] does what its `verifyRequest` does, and more: several secrets at once for
//!   rotation, a bound on clock skew into the future, a path prefix for proxies that strip one,
//!   and a typed verdict ([`VerifiedRequest`] or an [`Error`] with a [`ErrorKind`]).
//!
//! # Verifying
//!
//! Give the verifier what arrived, untouched: the method, the raw request target (path and
//! query exactly as received, never a decoded or re-built one), the headers and the raw body.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use countersign_core::contentful::{ErrorKind, RequestVerifier, SigningSecret};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = RequestVerifier::new(SigningSecret::new("a".repeat(64))?)
//!     // During a rotation, accept the next secret too:
//!     .with_secret(SigningSecret::new("b".repeat(64))?)
//!     .with_ttl(Duration::from_secs(30))
//!     // A proxy in front of the app strips `/api` from what Contentful called:
//!     .with_path_prefix("/api")?;
//!
//! let (unsigned, ()) = http::Request::post("/webhook").body(())?.into_parts();
//! let err = verifier
//!     .verify(&unsigned, "{}".into(), None, SystemTime::now())
//!     .unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::MissingSignature);
//! assert_eq!(err.kind().code(), "signature_missing");
//! # Ok(())
//! # }
//! ```
//!
//! # Where this differs from the toolkit
//!
//! - A timestamp more than [`RequestVerifier::with_future_skew`] ahead of the clock (default 60 s) is
//!   rejected; the toolkit accepts any future timestamp.
//! - The timestamp header must be plain decimal digits; the toolkit's `parseInt` also accepts
//!   trailing garbage.
//! - A signed header value that holds `;` followed by a signed name and `:` is refused
//!   ([`ErrorKind::AmbiguousHeader`], `signed_header_ambiguous`), when signing and when
//!   verifying: the canonical string escapes nothing, so such a value lets a user re-split a
//!   request signed for their own space into one for another space, user or time.
//! - Header bytes that are not UTF-8 are read as Latin-1, as Node.js reads them.
//! - A header that occurs several times is joined with `", "`, as Node.js joins `x-` headers.
//!
//! # Tenants
//!
//! An app is installed by strangers, and every user of every space that installed it can have
//! Contentful sign requests with the app's secret. So a verified request also says
//! [what kind](RequestKind) it is (frontend-signed for a user, an app event or action, a
//! webhook), and a verifier takes only the kinds a route is for ([`RequestVerifier::with_kinds`]).
//! A space's webhook signing secret can be bound to that space
//! ([`RequestVerifier::with_space_webhook_secret`]): it then verifies only requests that sign that
//! space. Replay keys are scoped to the app, the space and the kind ([`crate::replay`]).

pub mod app_identity;
mod canonical;
pub mod diagnostic;
mod error;
mod kind;
mod request;
mod secret;
mod sign;
mod topic;

pub use canonical::{canonical_path, canonical_string};
pub use error::{Error, ErrorKind};
pub use kind::{RequestKind, RequestKinds};
pub use request::{
    DEFAULT_FUTURE_SKEW, DEFAULT_TTL, FORWARDED_PREFIX, RequestVerifier, VerifiedRequest,
    recorded_webhook, validate_path_prefix,
};
pub use secret::SigningSecret;
pub use sign::{Context, RequestToSign, SignedHeaders, sign};
pub use topic::{Action, CONTENT_MANAGEMENT, Entity, Topic};

/// `x-contentful-signature`: lower-case hex HMAC-SHA256, 64 characters.
pub const SIGNATURE: &str = "x-contentful-signature";
/// The most names a verified `x-contentful-signed-headers` may list. The toolkit signs a
/// handful (the list, the timestamp, the context headers and what the app chose); a longer
/// list is refused before any matching, which bounds the work a forgery costs.
pub const MAX_SIGNED_HEADERS: usize = 64;
/// `x-contentful-signed-headers`: the covered header names, lower case, sorted, joined by `,`.
pub const SIGNED_HEADERS: &str = "x-contentful-signed-headers";
/// `x-contentful-timestamp`: the signing time in Unix milliseconds.
pub const TIMESTAMP: &str = "x-contentful-timestamp";
/// `x-contentful-space-id`: context, the space.
pub const SPACE_ID: &str = "x-contentful-space-id";
/// `x-contentful-environment-id`: context, the environment.
pub const ENVIRONMENT_ID: &str = "x-contentful-environment-id";
/// `x-contentful-user-id`: context, the user (frontend-signed requests).
pub const USER_ID: &str = "x-contentful-user-id";
/// `x-contentful-app-id`: context, the app.
pub const APP_ID: &str = "x-contentful-app-id";
/// `x-contentful-crn`: context, the Contentful resource name of the signed request.
pub const CRN: &str = "x-contentful-crn";
/// `x-contentful-topic`: the webhook or app event topic, e.g. `ContentManagement.Entry.publish`.
pub const TOPIC: &str = "x-contentful-topic";
/// `x-contentful-idempotency-key`: the same for every attempt of one delivery.
pub const IDEMPOTENCY_KEY: &str = "x-contentful-idempotency-key";

/// The methods the toolkit signs; it refuses any other.
pub const SIGNABLE_METHODS: [&str; 7] =
    ["GET", "PATCH", "HEAD", "POST", "DELETE", "OPTIONS", "PUT"];
