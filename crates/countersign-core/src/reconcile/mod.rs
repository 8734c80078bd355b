//! What the providers' own records of their attempts say, read as the live path reads a
//! delivery: for reconciling an inbox with them after an outage longer than the providers'
//! retries.
//!
//! Both providers keep a record of what they attempted. Contentstack keeps a webhook's
//! executions for 30 days ([`contentstack`]); Contentful keeps a webhook's recent calls and
//! their details ([`contentful`]). Each attempt in a record becomes a [`RecordedDelivery`]: the
//! delivery id, tenant, body and signed headers that the live path gives the same delivery
//! when it arrives, so that a reconciler can look the id up in an inbox and, when it is
//! missing, commit the delivery from the record.
//!
//! # Why a record is as good as a signature
//!
//! A signature proves that the provider sent a request. A record proves the same: it is read
//! from the provider's API over TLS, from the provider's own host, with a credential of the
//! tenant's (a management token, an OAuth token, a CMA token), so it is the provider's word
//! about that tenant's webhook. What a record cannot prove is what it does not hold: a
//! Contentful body truncated at 500 KB is never committed ([`Unusable::Truncated`]), and an
//! attempt whose delivery names another tenant than the one whose records were read is
//! refused ([`Unusable::OtherTenant`]), since a tenant's admins choose what their webhooks
//! send and where.
//!
//! The live path's own rules are applied through the same code: the Contentstack body as the
//! verifier's JSON fallback re-encodes it, the Contentful request through the verifier's own
//! reading of signed headers ([`crate::contentful::recorded_webhook`]).

pub mod contentful;
pub mod contentstack;

use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;

use crate::provider::Provider;
use crate::replay::ReplayKey;

/// One attempt in a provider's record: its id there, when it was made, and the delivery it
/// carried, or why that delivery cannot be taken from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The provider's id of the attempt: a Contentstack execution uid, a Contentful call id.
    pub provider_id: String,
    /// When the provider made it, as its record says.
    pub attempted_at: Option<SystemTime>,
    /// The HTTP status the receiver answered, as the record says (`None`: no answer).
    pub status: Option<u16>,
    /// The delivery, as the live path would have seen it.
    pub delivery: Result<RecordedDelivery, Unusable>,
}

/// What the receiver answered an attempt, as the record says: what may be committed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// No answer (a timeout, a connection refused), or one a sender tries again after (408,
    /// 429, 5xx): the live path did not take it, and may never have seen it.
    NotTaken,
    /// 2xx: the live path took it, so the inbox has it (or had it and forgot it).
    Taken,
    /// Another 4xx: the live path refused it on purpose (a signature, Basic auth, a stack not
    /// installed, a body over the limit): never committed from the record, which would go
    /// round the refusal.
    Refused(u16),
}

impl Attempt {
    /// What the receiver answered this attempt: [`Answer`].
    #[must_use]
    pub fn answer(&self) -> Answer {
        match self.status {
            None | Some(0) => Answer::NotTaken,
            Some(200..=299) => Answer::Taken,
            Some(408 | 429 | 500..=599) => Answer::NotTaken,
            Some(status) => Answer::Refused(status),
        }
    }
}

/// A delivery as the live path gives it to an inbox, read from a provider's record.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedDelivery {
    /// What identifies the delivery: equal to the live path's for the same delivery.
    pub key: ReplayKey,
    /// Other keys the same delivery may have had on the live path (a Contentstack execution
    /// whose attempts sent different bodies): a delivery is present when any key is.
    pub other_keys: Vec<ReplayKey>,
    /// Who sent it.
    pub provider: Provider,
    /// Its tenant: the stack or the space.
    pub tenant: Option<String>,
    /// The body, as the live path keeps it.
    pub body: Bytes,
    /// Contentful: the signed headers, credentials left out, as the live path keeps them.
    pub signed_headers: Vec<(String, String)>,
}

impl RecordedDelivery {
    /// The delivery id: [`key`](Self::key) in lower-case hex.
    #[must_use]
    pub fn id(&self) -> String {
        self.key.to_hex()
    }

    /// Every key the delivery may have had on the live path, [`key`](Self::key) first.
    pub fn keys(&self) -> impl Iterator<Item = &ReplayKey> {
        std::iter::once(&self.key).chain(&self.other_keys)
    }
}

impl fmt::Debug for RecordedDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedDelivery")
            .field("id", &self.id())
            .field("provider", &self.provider)
            .field("tenant", &self.tenant)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Why a delivery cannot be taken from a provider's record: reported, never committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// The record holds no body for the attempt.
    NoBody,
    /// The record's body was cut short (Contentful keeps 500 KB of it): what the provider
    /// sent is not known.
    Truncated,
    /// The record's request carries no signature, or one the live path refuses: the live path
    /// would never have accepted it. The text says why.
    Refused(String),
    /// The delivery names another tenant than the one whose records were read.
    OtherTenant {
        /// The tenant whose records were read.
        expected: String,
        /// The tenant the delivery names (`None`: none).
        found: Option<String>,
    },
    /// A Contentstack installation event in a stack's webhook record: only the Marketplace's
    /// own signature makes one, and a stack's admins choose what their webhooks send.
    InstallationEvent,
    /// The record is not of the documented shape. The text says what is wrong.
    Malformed(String),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBody => f.write_str("the record holds no body"),
            Self::Truncated => f.write_str("the record's body is truncated"),
            Self::Refused(why) => write!(f, "the live path would refuse it: {why}"),
            Self::OtherTenant { expected, found } => write!(
                f,
                "it names the tenant {} where {expected} was read",
                found.as_deref().unwrap_or("(none)")
            ),
            Self::InstallationEvent => {
                f.write_str("an installation event in a stack's webhook record")
            }
            Self::Malformed(why) => write!(f, "the record is malformed: {why}"),
        }
    }
}

/// Parses an RFC 3339 time, as both providers write theirs.
fn rfc3339(text: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// The tenant check every record shares: the delivery's tenant must be `expected`.
fn same_tenant(expected: &str, found: Option<&str>) -> Result<(), Unusable> {
    if found == Some(expected) {
        Ok(())
    } else {
        Err(Unusable::OtherTenant {
            expected: expected.to_owned(),
            found: found.map(str::to_owned),
        })
    }
}
