//! What verified requests tell handlers: axum extractors over the facts the layers recorded.
//!
//! Each extractor reads the request's extensions. Used on a route without its layer, it
//! rejects with 500 and a message that says which layer to add (logged, not sent).

use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use bytes::Bytes;
use countersign_core::contentful::VerifiedRequest;
use countersign_core::contentstack::VerifiedWebhook;
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::Rejection;
use crate::replay::{ReplayIdentity, ReplayKey};

fn layer_missing(extractor: &str, layer: &str) -> Rejection {
    Rejection::misconfigured(
        "layer_missing",
        format!("the {extractor} extractor needs {layer} on this route (or its router)"),
    )
}

/// A Contentful request whose signature [`ContentfulLayer`](crate::ContentfulLayer) verified:
/// space, environment, user, app, CRN, topic and every other signed header.
///
/// ```
/// use countersign::ContentfulRequest;
///
/// async fn handler(request: ContentfulRequest) -> String {
///     format!("{:?} {:?}", request.space_id(), request.topic())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ContentfulRequest(pub Arc<VerifiedRequest>);

impl Deref for ContentfulRequest {
    type Target = VerifiedRequest;

    fn deref(&self) -> &VerifiedRequest {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ContentfulRequest {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| layer_missing("ContentfulRequest", "ContentfulLayer"))
    }
}

/// A Contentstack webhook that [`ContentstackWebhookLayer`](crate::ContentstackWebhookLayer)
/// verified: the envelope (`module`, `event`, `api_key`, `triggered_at`, through `Deref`) and
/// `data` deserialized into your type.
///
/// ```
/// use countersign::ContentstackWebhook;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Entry { entry: EntryData }
/// #[derive(Deserialize)]
/// struct EntryData { uid: String }
///
/// async fn handler(webhook: ContentstackWebhook<Entry>) -> String {
///     format!("{:?} {}", webhook.event(), webhook.data.entry.uid)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ContentstackWebhook<T = serde_json::Value> {
    /// The verdict: what matched, and the envelope.
    pub verified: Arc<VerifiedWebhook>,
    /// The body's `data`.
    pub data: T,
}

impl<T> Deref for ContentstackWebhook<T> {
    type Target = VerifiedWebhook;

    fn deref(&self) -> &VerifiedWebhook {
        &self.verified
    }
}

#[derive(serde::Deserialize)]
struct DataField<T> {
    data: Option<T>,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ContentstackWebhook<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        let verified = parts
            .extensions
            .get::<Arc<VerifiedWebhook>>()
            .cloned()
            .ok_or_else(|| layer_missing("ContentstackWebhook", "ContentstackWebhookLayer"))?;
        let VerifiedBody(body) = parts
            .extensions
            .get::<VerifiedBody>()
            .cloned()
            .ok_or_else(|| layer_missing("ContentstackWebhook", "ContentstackWebhookLayer"))?;
        let invalid = |e: serde_json::Error| {
            Rejection::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "webhook_data_invalid",
                "Webhook data not as expected",
                format!("the webhook's data does not deserialize: {e}"),
            )
        };
        let field: DataField<T> = serde_json::from_slice(&body).map_err(invalid)?;
        let data = match field.data {
            Some(data) => data,
            None => T::deserialize(serde_json::Value::Null).map_err(invalid)?,
        };
        Ok(Self { verified, data })
    }
}

/// The id of the verified delivery, for a handler's own idempotent writes: the same for every
/// form in which the provider sends the delivery again, on every instance, after a restart.
/// Its `Display` is 64 lower-case hex characters.
///
/// Needs [`ContentstackWebhookLayer`](crate::ContentstackWebhookLayer) or
/// [`ContentfulLayer`](crate::ContentfulLayer) on the route.
///
/// ```
/// use countersign::replay::DeliveryId;
///
/// async fn handler(DeliveryId(id): DeliveryId) -> String {
///     // INSERT ... ON CONFLICT (delivery_id) DO NOTHING
///     format!("recorded {id}")
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryId(pub ReplayKey);

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for DeliveryId {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts
            .extensions
            .get::<ReplayIdentity>()
            .map(|identity| Self(identity.key))
            .ok_or_else(|| {
                layer_missing("DeliveryId", "ContentstackWebhookLayer or ContentfulLayer")
            })
    }
}

/// The client's address as [`IpAllowlistLayer`](crate::IpAllowlistLayer) resolved it (behind
/// trusted proxies, the first untrusted hop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts
            .extensions
            .get::<Self>()
            .copied()
            .ok_or_else(|| layer_missing("ClientIp", "IpAllowlistLayer"))
    }
}

/// The body bytes a layer verified: the canonical bytes when the Contentstack JSON fallback
/// matched, the raw bytes otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBody(pub Bytes);

impl<S: Send + Sync> FromRequestParts<S> for VerifiedBody {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            layer_missing(
                "VerifiedBody",
                "ContentfulLayer or ContentstackWebhookLayer",
            )
        })
    }
}
