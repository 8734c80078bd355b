//! What kind of Contentful request a verified one is, and which kinds a route takes.

use std::fmt;

/// What kind of request a verified Contentful request is, by the secret that signed it and
/// what it signs.
///
/// App events, app actions and frontend-signed requests are signed with the app's one signing
/// secret, for every installation; frontend-signed requests are signed on a user's behalf
/// (`appSignedRequest`), with headers that user chose. Only they sign `x-contentful-user-id`,
/// so a route that acts on events must refuse them: any user of any space that installed the
/// app could otherwise post the event of their choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestKind {
    /// Signed by the app's signing secret with a signed `x-contentful-user-id`: a request an
    /// app frontend had signed for a user (`appSignedRequest`).
    Frontend,
    /// Signed by the app's signing secret without a user: an app event, or an app action
    /// call that Contentful makes to the app's endpoint.
    App,
    /// Signed by a webhook signing secret ([`RequestVerifier::with_webhook_secret`](super::RequestVerifier::with_webhook_secret),
    /// [`RequestVerifier::with_space_webhook_secret`](super::RequestVerifier::with_space_webhook_secret)).
    Webhook,
}

impl RequestKind {
    /// A stable snake_case name: `frontend`, `app`, `webhook`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Frontend => "frontend",
            Self::App => "app",
            Self::Webhook => "webhook",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Frontend => 1,
            Self::App => 2,
            Self::Webhook => 4,
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`RequestKind`]s: the kinds a verifier accepts
/// ([`RequestVerifier::with_kinds`](super::RequestVerifier::with_kinds)).
///
/// ```
/// use countersign_core::contentful::{RequestKind, RequestKinds};
///
/// assert!(RequestKinds::EVENTS.contains(RequestKind::Webhook));
/// assert!(!RequestKinds::EVENTS.contains(RequestKind::Frontend));
/// assert_eq!(RequestKinds::only(RequestKind::Frontend), RequestKinds::FRONTEND);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKinds(u8);

impl RequestKinds {
    /// Every kind (the default).
    pub const ALL: Self = Self(7);
    /// App events, app actions and webhooks: never a request a user had signed. What a route
    /// that acts on events takes.
    pub const EVENTS: Self = Self(RequestKind::App.bit() | RequestKind::Webhook.bit());
    /// Frontend-signed requests only: a user of an installation, through the app frontend.
    pub const FRONTEND: Self = Self(RequestKind::Frontend.bit());

    /// The set of one kind.
    #[must_use]
    pub const fn only(kind: RequestKind) -> Self {
        Self(kind.bit())
    }

    /// This set and `kind`.
    #[must_use]
    pub const fn and(self, kind: RequestKind) -> Self {
        Self(self.0 | kind.bit())
    }

    /// Whether `kind` is in the set.
    #[must_use]
    pub const fn contains(self, kind: RequestKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

impl Default for RequestKinds {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Debug for RequestKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = [
            RequestKind::Frontend,
            RequestKind::App,
            RequestKind::Webhook,
        ];
        f.debug_set()
            .entries(kinds.into_iter().filter(|kind| self.contains(*kind)))
            .finish()
    }
}
