//! A delivery simulator: it plays Contentstack and Contentful against a fleet of the example
//! backends, as their delivery services do, and reads back what the fleet recorded.
//!
//! - **Contentstack** (`marketplace-app`): webhooks signed with RSA-PSS or HMAC. A delivery
//!   that gets no 2xx answer within the timeout (30 s) is retried 5, 25, 125 and 625 s later,
//!   then given up (the documented retry policy); the [`Schedule`] scales those times so that a
//!   test runs in seconds. [`Resend::ReSign`] (mode A) signs each attempt afresh (a new RSA-PSS
//!   signature, a new HMAC `t`); [`Resend::SameBytes`] (mode B) sends the first attempt's bytes
//!   and headers again. Whether Contentstack re-signs a retry is not documented: both happen.
//! - **Contentful** (`contentful-app`): webhooks with an `x-contentful-idempotency-key` shared by
//!   every attempt, each attempt signed afresh (its timestamp is in the signature), on
//!   Contentful's published retry policy ([`Schedule::contentful`]: two more attempts, 30 s
//!   apart, each waiting 30 s) unless [`Simulator::with_contentful_schedule`] says otherwise.
//! - Every attempt is logged ([`Simulator::attempts`]): when it was sent, how long its answer
//!   took, and whether it was a 2xx, so that a test can tell, per fault, the longest run of
//!   failed attempts a provider saw ([`longest_failure_run`]) and the acknowledgement latency
//!   ([`latency_percentile`]).
//! - An answer may be lost on the way ([`Simulator::losing_answers`]): the provider sees no
//!   answer although the fleet handled the attempt, and retries it, as it would when a
//!   connection breaks after the request was read.
//! - Each attempt goes to the next instance in turn, as a round-robin load balancer would; an
//!   instance that is down or paused costs that attempt, and the retry goes to the next.
//! - [`Simulator::read_back`] asks the fleet, through the examples' own APIs (a session from a
//!   signed UI location's app-token for `/api/events`; a frontend-signed request for
//!   `/api/deliveries`), what each stack and space environment recorded, and counts every
//!   delivery by the unique marker its body carries. The count is the fleet's, not the
//!   simulator's idea of a delivery id: two records of one delivery show as two.
//!
//! [`Report`] puts the outcomes and the records together: deliveries, attempts, recorded once,
//! lost (acknowledged, or not given up, yet not recorded), duplicated (recorded more than once)
//! and the exhausted ones with the answers they got.

mod deliver;
mod load;
mod report;
#[cfg(test)]
mod tests;

pub use deliver::Simulator;
pub use load::{Load, run};
pub use report::{Report, latency_percentile, longest_failure_run};

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use countersign_core::contentful::{Context, RequestToSign, SigningSecret};
use countersign_core::contentstack::{
    APP_TOKEN_LIFETIME, ATTEMPT_TIMEOUT, HmacSecret, INSTALLATION_MODULE, RETRY_SCHEDULE,
    SaltLength, SigningKey, WebhookBody, mint_app_token,
};
use serde_json::{Value, json};

/// Where the marketplace example takes Contentstack's webhooks.
pub const CONTENTSTACK_PATH: &str = "/webhooks/contentstack";
/// Where the Contentful example takes webhooks.
pub const CONTENTFUL_PATH: &str = "/contentful/webhooks";
/// The environment every simulated space has.
pub const ENVIRONMENT: &str = "master";

/// When attempts are made and how long each waits for its answer.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The pause before each retry (so one attempt more than there are pauses).
    pub retries: Vec<Duration>,
    /// How long an attempt waits for its answer.
    pub timeout: Duration,
}

impl Schedule {
    /// Contentstack's schedule with every time multiplied by `scale` (`1.0`: real time); the
    /// timeout is at least `min_timeout`, since a loaded test machine answers slower than
    /// `30 s x scale`.
    #[must_use]
    pub fn contentstack(scale: f64, min_timeout: Duration) -> Self {
        Self {
            retries: RETRY_SCHEDULE.iter().map(|d| d.mul_f64(scale)).collect(),
            timeout: ATTEMPT_TIMEOUT.mul_f64(scale).max(min_timeout),
        }
    }

    /// Contentful's published retry policy with every time multiplied by `scale`: two more
    /// attempts, 30 s apart, each waiting 30 s for its answer (at least `min_timeout`).
    #[must_use]
    pub fn contentful(scale: f64, min_timeout: Duration) -> Self {
        let thirty = Duration::from_secs(30).mul_f64(scale);
        Self {
            retries: vec![thirty, thirty],
            timeout: Duration::from_secs(30).mul_f64(scale).max(min_timeout),
        }
    }

    /// From the first attempt to the start of the last one.
    #[must_use]
    pub fn span(&self) -> Duration {
        self.retries.iter().sum()
    }
}

/// How a Contentstack retry is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Mode A: each attempt signed afresh (same body).
    ReSign,
    /// Mode B: each attempt the first attempt's bytes and headers.
    SameBytes,
}

/// Who sends a delivery, and how it is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// A Contentstack webhook signed with RSA-PSS (`X-Contentstack-Request-Signature`).
    ContentstackRsa,
    /// A Contentstack webhook signed with HMAC (`X-Contentstack-HMAC-Signature`).
    ContentstackHmac,
    /// A Contentful webhook with an idempotency key.
    Contentful,
}

impl Provider {
    fn is_contentstack(self) -> bool {
        !matches!(self, Self::Contentful)
    }
}

/// What the simulator signs with: what the fleet is configured to trust.
pub struct Credentials {
    /// Contentstack's signing key (the fleet has its public half).
    pub contentstack_key: SigningKey,
    /// The Contentstack HMAC secret.
    pub contentstack_hmac: HmacSecret,
    /// The Contentful signing secret.
    pub contentful: SigningSecret,
    /// The Contentstack app the fleet serves (installation events and app-tokens name it).
    pub app_uid: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("app_uid", &self.app_uid)
            .finish_non_exhaustive()
    }
}

/// The instances the simulator sends to: base URLs (`http://127.0.0.1:3000`).
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// Instances of `marketplace-app`.
    pub contentstack: Vec<String>,
    /// Instances of `contentful-app`.
    pub contentful: Vec<String>,
}

/// One delivery to make: who sends it, to which stack (Contentstack) or space (Contentful),
/// and the marker its body carries.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Who sends it.
    pub provider: Provider,
    /// The stack's api key or the space id.
    pub tenant: String,
    /// Unique to this delivery; read back from the records.
    pub marker: String,
    /// How a Contentstack retry is sent (Contentful re-signs every attempt).
    pub resend: Resend,
}

/// One attempt, as the provider saw it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// Contentstack's webhook or Contentful's (each has its own circuit breaker).
    pub contentstack: bool,
    /// When it was sent.
    pub sent: std::time::Instant,
    /// How long until its answer (or until it gave up).
    pub took: Duration,
    /// Whether it got a 2xx (a 2xx lost on the way counts as one: the fleet answered).
    pub acknowledged: bool,
}

/// What one attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status.
    Status(u16),
    /// No answer within the timeout.
    Timeout,
    /// No connection (the instance is down).
    Refused,
    /// A 2xx that was lost on the way ([`Simulator::losing_answers`]).
    Lost,
}

impl Answer {
    fn acknowledged(&self) -> bool {
        matches!(self, Self::Status(status) if (200..300).contains(status))
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "{status}"),
            Self::Timeout => f.write_str("timeout"),
            Self::Refused => f.write_str("refused"),
            Self::Lost => f.write_str("2xx-lost"),
        }
    }
}

/// A delivery and the answers its attempts got.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The delivery.
    pub planned: Planned,
    /// One answer per attempt, in order.
    pub answers: Vec<Answer>,
}

impl Outcome {
    /// Whether an attempt was answered 2xx (the provider stops retrying).
    #[must_use]
    pub fn acknowledged(&self) -> bool {
        self.answers.iter().any(Answer::acknowledged)
    }
}
