//! What verified requests tell handlers: axum extractors over the facts the layers recorded.
//!
//! A verification layer inserts one extension: the core's [`Verdict`]. Each extractor reads a
//! part of it (or, for sessions and addresses, what their layer recorded). Used on a route
//! without its layer, an extractor rejects with 500 and a message that says which layer to
//! add (logged, not sent).

use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use bytes::Bytes;
use countersign_core::contentful::VerifiedRequest;
use countersign_core::contentstack::VerifiedWebhook;
use countersign_core::replay::ReplayKey;
use countersign_core::{Provider, Verdict};

use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::Rejection;

/// The one extension a verification layer inserts: its verdict. Only the layers make one
/// (its variants are `#[non_exhaustive]`); what reads verified deliveries on from a route
/// (the durable inbox, a layer of your own) reads it from the request's extensions.
///
/// ```
/// use countersign::Verified;
///
/// fn delivery_id(request: &http::Request<axum::body::Body>) -> Option<String> {
///     let verified = request.extensions().get::<Verified>()?;
///     Some(verified.replay_key().to_hex())
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Verified {
    /// A Contentstack webhook that [`ContentstackWebhookLayer`](crate::ContentstackWebhookLayer) verified.
    #[non_exhaustive]
    Contentstack(Arc<Verdict<VerifiedWebhook>>),
    /// A Contentful request that [`ContentfulRequestLayer`](crate::ContentfulRequestLayer) verified.
    #[non_exhaustive]
    Contentful(Arc<Verdict<VerifiedRequest>>),
}

impl Verified {
    /// Who signed it.
    #[must_use]
    pub fn provider(&self) -> Provider {
        match self {
            Self::Contentstack(_) => Provider::Contentstack,
            Self::Contentful(_) => Provider::Contentful,
        }
    }

    /// The verdict of a Contentstack webhook.
    #[must_use]
    pub fn contentstack(&self) -> Option<&Verdict<VerifiedWebhook>> {
        match self {
            Self::Contentstack(verdict) => Some(verdict),
            Self::Contentful(_) => None,
        }
    }

    /// The verdict of a Contentful request.
    #[must_use]
    pub fn contentful(&self) -> Option<&Verdict<VerifiedRequest>> {
        match self {
            Self::Contentful(verdict) => Some(verdict),
            Self::Contentstack(_) => None,
        }
    }

    /// The tenant it was verified for: the stack's API key or the space, where the layer
    /// knows it.
    #[must_use]
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Contentstack(verdict) => verdict.tenant(),
            Self::Contentful(verdict) => verdict.tenant(),
        }
    }

    /// The bytes the handler reads.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        match self {
            Self::Contentstack(verdict) => verdict.body(),
            Self::Contentful(verdict) => verdict.body(),
        }
    }

    /// What identifies the delivery.
    #[must_use]
    pub fn replay_key(&self) -> ReplayKey {
        match self {
            Self::Contentstack(verdict) => verdict.replay_key(),
            Self::Contentful(verdict) => verdict.replay_key(),
        }
    }

    /// How long its signature stays acceptable (`None`: for ever).
    #[must_use]
    pub fn window(&self) -> Option<std::time::Duration> {
        match self {
            Self::Contentstack(verdict) => verdict.window(),
            Self::Contentful(verdict) => verdict.window(),
        }
    }
}

/// The verdict of `parts`, or the 500 that names the layers `extractor` needs.
fn verified<'p>(parts: &'p Parts, extractor: &str) -> Result<&'p Verified, Rejection> {
    parts.extensions.get::<Verified>().ok_or_else(|| {
        layer_missing(
            extractor,
            "ContentstackWebhookLayer or ContentfulRequestLayer",
        )
    })
}

fn layer_missing(extractor: &str, layer: &str) -> Rejection {
    Rejection::of(
        &countersign_core::reason::LAYER_MISSING,
        format!("the {extractor} extractor needs {layer} on this route (or its router)"),
    )
}

/// A Contentful request whose signature [`ContentfulRequestLayer`](crate::ContentfulRequestLayer) verified:
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
pub struct ContentfulRequest(pub Arc<Verdict<VerifiedRequest>>);

impl Deref for ContentfulRequest {
    type Target = Verdict<VerifiedRequest>;

    fn deref(&self) -> &Verdict<VerifiedRequest> {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ContentfulRequest {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        match parts.extensions.get::<Verified>() {
            Some(Verified::Contentful(verdict)) => Ok(Self(Arc::clone(verdict))),
            _ => Err(layer_missing("ContentfulRequest", "ContentfulRequestLayer")),
        }
    }
}

/// A Contentstack webhook that [`ContentstackWebhookLayer`](crate::ContentstackWebhookLayer)
/// verified: the verdict (the envelope: `module`, `event`, `api_key`, `triggered_at`; the
/// delivery's id and stack, through `Deref`) and `data` deserialized into your type.
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
    /// The verdict: what matched, the envelope, the verified body.
    pub verdict: Arc<Verdict<VerifiedWebhook>>,
    /// The body's `data`.
    pub data: T,
}

impl<T> Deref for ContentstackWebhook<T> {
    type Target = Verdict<VerifiedWebhook>;

    fn deref(&self) -> &Verdict<VerifiedWebhook> {
        &self.verdict
    }
}

#[derive(serde::Deserialize)]
struct DataField<T> {
    data: Option<T>,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ContentstackWebhook<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Rejection> {
        let Some(Verified::Contentstack(verdict)) = parts.extensions.get::<Verified>() else {
            return Err(layer_missing(
                "ContentstackWebhook",
                "ContentstackWebhookLayer",
            ));
        };
        let invalid = |e: serde_json::Error| {
            Rejection::of(
                &countersign_core::reason::WEBHOOK_DATA_INVALID,
                format!("the webhook's data does not deserialize: {e}"),
            )
        };
        let field: DataField<T> = serde_json::from_slice(verdict.body()).map_err(invalid)?;
        let data = match field.data {
            Some(data) => data,
            None => T::deserialize(serde_json::Value::Null).map_err(invalid)?,
        };
        Ok(Self {
            verdict: Arc::clone(verdict),
            data,
        })
    }
}

/// The id of the verified delivery, for a handler's own idempotent writes: the same for every
/// form in which the provider sends the delivery again, on every instance, after a restart.
/// Its `Display` is 64 lower-case hex characters.
///
/// Needs [`ContentstackWebhookLayer`](crate::ContentstackWebhookLayer) or
/// [`ContentfulRequestLayer`](crate::ContentfulRequestLayer) on the route.
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
        verified(parts, "DeliveryId").map(|verified| Self(verified.replay_key()))
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
        verified(parts, "VerifiedBody").map(|verified| Self(verified.body().clone()))
    }
}
