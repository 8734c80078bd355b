//! [`VerifiedRequest`]: what a verified request proved, its tenant and its replay key.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::contentful::canonical::Head;
use crate::contentful::{
    APP_ID, CRN, Context, ENVIRONMENT_ID, IDEMPOTENCY_KEY, RequestKind, SIGNATURE, SPACE_ID, TOPIC,
    USER_ID,
};
use crate::crypto::HMAC_SHA256_LEN;
use crate::replay::{ReplayKey, Scope};

/// A request whose signature verified: what it proved.
///
/// Only signed headers appear here; an unsigned `x-contentful-space-id` is not evidence of
/// anything and is left out.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    pub(super) secret_index: usize,
    pub(super) timestamp_ms: u64,
    /// The canonical head that verified, which holds the signed headers.
    pub(super) head: Head,
    pub(super) signature: [u8; HMAC_SHA256_LEN],
    pub(super) kind: RequestKind,
    /// The verifier's namespace: the replay key is derived when asked for, so that a
    /// verification without a replay guard does not pay for it.
    pub(super) namespace: Option<Arc<str>>,
}

/// The signed headers, but never a credential's value (the signature is not shown at all).
impl fmt::Debug for VerifiedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signed: Vec<(&str, &str)> = self
            .signed_headers()
            .map(|(name, value)| {
                let sensitive = crate::sensitive::SENSITIVE_HEADERS.contains(&name);
                (name, if sensitive { "<redacted>" } else { value })
            })
            .collect();
        f.debug_struct("VerifiedRequest")
            .field("kind", &self.kind)
            .field("secret_index", &self.secret_index)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("signed", &signed)
            .finish_non_exhaustive()
    }
}

impl VerifiedRequest {
    /// What kind of request this is: frontend-signed for a user, an app event or action, or a
    /// webhook.
    #[must_use]
    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    /// The tenant: the signed space id, or where only a CRN is signed, the CRN's space.
    #[must_use]
    pub fn tenant(&self) -> Option<&str> {
        tenant_of(&self.head)
    }

    /// Which configured secret matched, counting from 0 in the order they were added.
    #[must_use]
    pub fn secret_index(&self) -> usize {
        self.secret_index
    }

    /// When the request was signed.
    #[must_use]
    pub fn timestamp(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.timestamp_ms)
    }

    /// When the request was signed, in Unix milliseconds, as sent.
    #[must_use]
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The value of a signed header, by lower-case name (trimmed; repeated headers joined by
    /// `", "`).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.signed_headers()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value)
    }

    /// Every signed header but the signature, the list and the timestamp, by name (lower
    /// case), sorted.
    pub fn signed_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.head.entries().filter(|(name, _)| *name != SIGNATURE)
    }

    /// The signed space id.
    #[must_use]
    pub fn space_id(&self) -> Option<&str> {
        self.header(SPACE_ID)
    }

    /// The signed environment id.
    #[must_use]
    pub fn environment_id(&self) -> Option<&str> {
        self.header(ENVIRONMENT_ID)
    }

    /// The signed user id (present on frontend-signed requests).
    #[must_use]
    pub fn user_id(&self) -> Option<&str> {
        self.header(USER_ID)
    }

    /// The signed app id.
    #[must_use]
    pub fn app_id(&self) -> Option<&str> {
        self.header(APP_ID)
    }

    /// The signed CRN of the request.
    #[must_use]
    pub fn crn(&self) -> Option<&str> {
        self.header(CRN)
    }

    /// The signed topic of a webhook or app event, typed: `ContentManagement.Entry.publish`
    /// is [`Entity::Entry`](crate::contentful::Entity::Entry) and [`Action::Publish`](crate::contentful::Action::Publish).
    /// `None` when the request does not sign `x-contentful-topic`: an unsigned header is not
    /// evidence.
    #[must_use]
    pub fn topic(&self) -> Option<crate::contentful::Topic> {
        self.header(TOPIC).map(crate::contentful::Topic::parse)
    }

    /// The signed idempotency key of a webhook delivery (the same for each retry).
    #[must_use]
    pub fn idempotency_key(&self) -> Option<&str> {
        self.header(IDEMPOTENCY_KEY)
    }

    /// What identifies this delivery (replay protection, idempotent writes): the signed
    /// idempotency key when there is one (the same for every retry), else the verified HMAC,
    /// a function of the signed message; scoped to the namespace (the app), the space and the
    /// kind. The rules are in [`crate::replay`].
    #[must_use]
    pub fn replay_key(&self) -> ReplayKey {
        let scope = Scope {
            namespace: self.namespace.as_deref(),
            tenant: self.tenant(),
        };
        let kind = self.kind.as_str();
        match self.idempotency_key() {
            Some(key) => ReplayKey::contentful_idempotency_key(scope, kind, key),
            None => ReplayKey::contentful_message(scope, kind, &self.signature),
        }
    }

    /// The signed context headers.
    #[must_use]
    pub fn context(&self) -> Context {
        let owned = |v: Option<&str>| v.map(str::to_owned);
        Context {
            space_id: owned(self.space_id()),
            environment_id: owned(self.environment_id()),
            app_id: owned(self.app_id()),
            user_id: owned(self.user_id()),
            crn: owned(self.crn()),
        }
    }
}

impl crate::verdict::Facts for VerifiedRequest {
    fn replay_key(&self) -> ReplayKey {
        VerifiedRequest::replay_key(self)
    }

    fn tenant(&self) -> Option<&str> {
        VerifiedRequest::tenant(self)
    }
}

/// The space a head signs: `x-contentful-space-id`, else the `spaces/<id>` of
/// `x-contentful-crn`.
pub(super) fn tenant_of(head: &Head) -> Option<&str> {
    SignedSpaces::read(head).tenant()
}

/// The spaces a request's signed headers name: the space id, and the space of the CRN.
pub(super) struct SignedSpaces<'a> {
    space_id: Option<&'a str>,
    crn_space: Option<&'a str>,
}

impl<'a> SignedSpaces<'a> {
    /// Both, read in one pass over the signed headers.
    pub(super) fn read(head: &'a Head) -> Self {
        let (mut space_id, mut crn) = (None, None);
        for (name, value) in head.entries() {
            match name {
                SPACE_ID => space_id = Some(value),
                CRN => crn = Some(value),
                _ => {}
            }
        }
        Self {
            space_id,
            crn_space: crn.and_then(crn_space),
        }
    }

    /// The tenant: the signed space id, or else the CRN's space.
    pub(super) fn tenant(&self) -> Option<&'a str> {
        self.space_id.or(self.crn_space)
    }

    /// The signed space id and the signed CRN's space, when both are signed and differ.
    pub(super) fn conflict(&self) -> Option<(&'a str, &'a str)> {
        let (space, crn) = (self.space_id?, self.crn_space?);
        (space != crn).then_some((space, crn))
    }
}

/// The space of a CRN such as `crn:contentful:::content:spaces/abc/environments/master`.
/// Only the form Contentful writes is read: `crn:contentful:<region>:<account>:<service>:` and
/// a resource path that starts with `spaces/<id>`; anything else names no space.
fn crn_space(crn: &str) -> Option<&str> {
    let mut parts = crn.splitn(6, ':');
    let (Some("crn"), Some("contentful")) = (parts.next(), parts.next()) else {
        return None;
    };
    let resource = parts.nth(3)?;
    let space = resource.strip_prefix("spaces/")?;
    let space = space.split_once('/').map_or(space, |(space, _)| space);
    (!space.is_empty()).then_some(space)
}

#[cfg(test)]
mod tests {
    use super::crn_space;

    #[test]
    fn the_space_of_a_crn_is_the_segment_after_spaces() {
        assert_eq!(
            crn_space("crn:contentful:::content:spaces/abc/environments/master/entries/e1"),
            Some("abc")
        );
        assert_eq!(
            crn_space("crn:contentful:::content:spaces/abc"),
            Some("abc")
        );
        assert_eq!(crn_space("crn:contentful:::content:spaces/"), None);
        assert_eq!(crn_space("crn:contentful:::content:organizations/o1"), None);
        assert_eq!(
            crn_space("crn:contentful:::content:organizations/o1/spaces/abc"),
            None,
            "a space further in is not the CRN's space"
        );
        assert_eq!(crn_space("crn:other:::content:spaces/abc"), None);
        assert_eq!(crn_space("spaces/abc"), None);
    }
}
