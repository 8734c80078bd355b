//! Tower middleware and axum extractors that prove a request really came from Contentstack or
//! Contentful before any handler sees it.
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{Json, Router, routing::post};
//! use countersign::contentful::{RequestKinds, SigningSecret, RequestVerifier};
//! use countersign::contentstack::{StaticKeys, WebhookVerifier};
//! use countersign::{ContentfulRequestLayer, ContentfulRequest, ContentstackWebhook, ContentstackWebhookLayer};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct EntryEvent { entry: serde_json::Value }
//!
//! async fn contentstack(webhook: ContentstackWebhook<EntryEvent>) -> &'static str {
//!     println!("{:?} {:?} on {:?}: {}", webhook.module(), webhook.event(), webhook.api_key(), webhook.data.entry);
//!     "accepted"
//! }
//!
//! async fn contentful(request: ContentfulRequest, Json(body): Json<serde_json::Value>) -> String {
//!     format!("{:?} in space {:?}: {body}", request.topic(), request.space_id())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! # let pem = include_str!("../../countersign-core/tests/data/keys/contentstack-a.public.pem");
//! // In production: WellKnownKeys::for_region(&"eu".parse()?) fetches and caches the key.
//! let contentstack_keys = StaticKeys::parse(pem)?;
//! // App events only: never a request a user had the app frontend sign.
//! let contentful_verifier = RequestVerifier::new(SigningSecret::new(std::env::var("CONTENTFUL_SIGNING_SECRET")?)?)
//!     .with_kinds(RequestKinds::EVENTS);
//!
//! let app = Router::new()
//!     .route(
//!         "/webhooks/contentstack",
//!         post(contentstack).layer(ContentstackWebhookLayer::new(WebhookVerifier::new(), contentstack_keys)),
//!     )
//!     .route("/contentful/events", post(contentful).layer(ContentfulRequestLayer::new(contentful_verifier)));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! | layer | checks | rejects with |
//! |---|---|---|
//! | [`IpAllowlistLayer`] | the client address (behind trusted proxies) | 403 |
//! | [`BasicAuthLayer`] | `Authorization: Basic`, several pairs for rotation | 401 + `WWW-Authenticate` |
//! | [`RequiredHeadersLayer`] | custom headers, several values for rotation | 401 |
//! | [`ContentstackWebhookLayer`] | RSA or HMAC signature, `triggered_at`; with a [`Tenancy`](contentstack::Tenancy), this app's uid and stacks | 401, 403 not ours, 503 without a key |
//! | [`ContentfulRequestLayer`] | Contentful's request signature, TTL; the kinds of request the route takes | 401, 403 another kind |
//! | [`AppTokenLayer`] | the `app-token` of a signed UI location; mints the app's session | 401, 503 without a key or when the spent-token store cannot answer |
//! | [`SessionLayer`] | the app's session (Bearer or cookie; CSRF token on cookie writes) | 401, 403 |
//! | [`replay::ReplayGuardLayer`] | a verified delivery seen before (memory or Redis); holds a renewed lease while the handler runs | 200 duplicate, 409, 503 |
//!
//! The two signature layers read the body first: 413 when `Content-Length` or the streamed body
//! passes the limit (2 MiB by default; nothing beyond it is buffered), 408 when reading takes
//! longer than the bound (10 s by default). The bytes are put back, so `Json<T>`, `Bytes`,
//! `String` and `Form` work downstream; a second layer on the route finds them already read.
//!
//! Cheap checks belong before expensive ones. `Router::layer` and `ServiceBuilder` differ in
//! which layer runs first (the last `Router::layer` call runs first; the first
//! `ServiceBuilder::layer` call runs first); order them so that the request meets, in turn:
//! the IP allowlist and the header checks, then the declared size, then the body read, then
//! the cryptography.
//!
//! # Answers
//!
//! Every rejection is a [`Rejection`] with a stable status and snake_case code, answered as
//! `application/problem+json`:
//!
//! ```json
//! {"type":"urn:countersign:problem:signature_mismatch","title":"Signature mismatch","status":401,"code":"signature_mismatch"}
//! ```
//!
//! Each code is declared once, with its status, title and whether the answer carries
//! `Retry-After` (every 409 and 503 does), in [`reason`]; a layer answers
//! [`Rejection::of`] a reason and a detail.
//!
//! | status | codes |
//! |---|---|
//! | 401 | `signature_missing`, `signature_method_not_configured`, `signature_malformed`, `signature_mismatch`, `signed_headers_missing`, `signed_headers_too_many`, `signed_header_ambiguous`, `context_conflict`, `target_unsigned`, `timestamp_missing`, `timestamp_malformed`, `timestamp_expired`, `timestamp_in_future`, `basic_auth_missing`, `basic_auth_malformed`, `basic_auth_mismatch`, `header_missing`, `header_mismatch` |
//! | 401 (sessions) | `app_token_missing`, `app_token_malformed`, `app_token_signature_mismatch`, `app_token_algorithm_not_allowed`, `app_token_expired`, `app_token_not_yet_valid`, `app_token_reused`, `session_missing`, `session_malformed`, `session_unknown_key`, `session_tampered`, `session_expired` |
//! | 403 | `ip_not_allowed`, `csrf_token_mismatch`, `tenant_mismatch` |
//! | 403 (authentic, not for this app) | `stack_not_allowed`, `app_uid_mismatch`, `installation_event_not_rsa` (webhooks), `app_token_app_mismatch`, `session_app_mismatch`, `request_kind_not_allowed` (Contentful: a frontend-signed request on an event route, ...) |
//! | 409 | `request_in_flight` (replay guard, with `Retry-After`) |
//! | 400 | `body_unreadable`, `forwarding_unreadable` (a trusted proxy's forwarding header), `lambda_query_lost` (a Lambda event that keeps no signed query: use an HTTP API or a Function URL), `lambda_target_invalid` (a Lambda event's path that is no request target) |
//! | 404 | `lambda_prefix_missing` (a Lambda request not under the function's stage or base path) |
//! | 400, 403, 502 (OAuth) | 400 `oauth_invalid_grant` (a used or expired code), 400 `oauth_invalid_location`, 403 `oauth_not_authorized` (no usable tokens for the installation), 502 `oauth_refused` (the token endpoint refused), 502 `cma_unavailable`; reconciling: 502 `records_refused` (the provider refused its records of a webhook) |
//! | 408 | `body_timeout` |
//! | 413 | `payload_too_large` |
//! | 422 | `webhook_data_invalid` (the [`ContentstackWebhook`] extractor), `inbox_tenant_invalid` (the inbox: a tenant id longer than 255 bytes or with a control character) |
//! | 500 | `layer_missing`, `connect_info_missing`, `session_key_missing`, `session_cookie`, `oauth_misconfigured` (misconfiguration) |
//! | 500 | `replay_identity_missing` (a replay guard without a verification layer), `replay_window_unbounded` (a replay guard or an inbox behind signatures that never expire) |
//! | 503 | `key_unavailable` (no Contentstack key yet: the sender retries), `tenant_check_unavailable`, `replay_store_full`, `replay_tenant_full` (the tenant holds its share of the store), `replay_store_unavailable`; for spent app-tokens `store_full`, `store_unavailable`, `store_timeout`, `store_protocol`; for OAuth `oauth_unavailable`, `oauth_store_unavailable`; for the inbox `inbox_unavailable`, `inbox_tenant_full` |
//!
//! The answer never holds a secret, a key, a signature or the body; the detail goes to
//! `tracing` (target `countersign`, with the reason and the client address), and the
//! [`Rejection`] is in the answer's extensions for outer layers. Each layer's `on_rejection`
//! replaces the answer. Signature and credential headers are marked sensitive, so tracing
//! layers that print headers redact them.
//!
//! # Crates
//!
//! The wire formats and every rule of request handling live in [`countersign_core`],
//! re-exported here as [`contentful`], [`contentstack`], [`credentials`], [`ip`] and
//! [`Verdict`]; this crate only buffers, plumbs and answers. A verification layer reads the
//! body, calls its provider's one core entry point and inserts the [`Verdict`] it returns as
//! the request's one extension, which the extractors read. The layers' [`Guard`](guard::Guard) is sealed:
//! to add a check of your own, write a Tower layer after ours (or an
//! `axum::middleware::from_fn`) and read the extractors.
//! `contentstack::well_known` fetches Contentstack's public key from the region's endpoint, cached and
//! refreshed (feature `well-known`, on by default).
//!
//! # Beyond verification
//!
//! - `contentful::app_identity` (feature `app-identity`): access tokens for calling Contentful
//!   as the app.
//! - `contentstack::oauth` (feature `oauth`): OAuth tokens for calling Contentstack as the app,
//!   per installation, refreshed once per installation across a fleet.
//! - The durable inbox is a crate of its own, `countersign-inbox`: deliveries acknowledged at
//!   once and handled by workers until one attempt succeeds, with retries and dead letters. It reads the
//!   [`Verified`] facts the layers insert.
//! - `testing` (feature `testing`): signed requests of every scheme for your handlers' tests.
//! - [`metrics`]: what the layers count, through the `metrics` facade (feature `metrics`).
//! - Typed events: [`contentstack::Module`], [`contentstack::Event`], [`contentful::Topic`].

mod body;
mod extract;
pub mod guard;
#[cfg(any(
    feature = "well-known",
    feature = "app-identity",
    feature = "oauth",
    feature = "reconcile"
))]
mod http_client;
mod problem;

pub mod basic_auth;
pub mod contentful;
pub mod contentstack;
pub mod ip_allowlist;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod metrics;
#[cfg(feature = "reconcile")]
pub mod reconcile;
pub mod replay;
#[cfg(feature = "testing")]
pub mod testing;

pub use basic_auth::{BasicAuthLayer, RequiredHeadersLayer};
pub use body::{BodyLimits, DEFAULT_BODY_LIMIT, DEFAULT_READ_TIMEOUT};
pub use contentful::ContentfulRequestLayer;
pub use contentstack::ContentstackWebhookLayer;
pub use contentstack::NoKeys;
pub use contentstack::session::{AppSession, AppTokenLayer, SessionLayer};
pub use countersign_core::{
    Backend, ConfigError, ConfigErrorKind, MAX_WINDOW, Provider, SENSITIVE_HEADERS, Verdict,
    backend, credentials, ip, mark_sensitive, random_hex, reason,
};
pub use extract::{
    ClientIp, ContentfulRequest, ContentstackWebhook, DeliveryId, Verified, VerifiedBody,
};
pub use guard::Clock;
pub use ip_allowlist::IpAllowlistLayer;
pub use problem::Rejection;
