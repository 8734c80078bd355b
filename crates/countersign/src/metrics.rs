//! What the layers count, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`).
//!
//! countersign records; it never chooses an exporter. Install a recorder in your application
//! (`metrics-exporter-prometheus`, StatsD, OpenTelemetry, ...) and these appear:
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`VERIFICATIONS`] | counter | `provider` (`contentstack`, `contentful`, `contentstack_app_token`), `outcome` (`accepted`, `rejected`), `reason` (`ok` or the rejection's code) |
//! | [`VERIFICATION_SECONDS`] | histogram | `provider`, `outcome` |
//! | [`CONTENTSTACK_MATCHES`] | counter | `method` (`rsa`, `hmac`), `index` (key or secret, from 0), `salt` (`32`, `max`, or `none` for HMAC) |
//! | [`CONTENTFUL_MATCHES`] | counter | `index` (the secret, from 0) |
//! | [`REPLAY`] | counter | `outcome` (`new`, `duplicate`, `in_flight`, `store_full`, `tenant_full`, `store_error`) |
//! | [`KEY_FETCHES`] | counter | `outcome` (`ok`, `failed`, `stale_served`) |
//! | [`ACCESS_TOKEN_FETCHES`] | counter | `outcome` (`ok`, `refused`, `rate_limited`, `unavailable`) |
//!
//! The durable inbox counts its own series: `countersign_inbox::metrics`.
//!
//! Two alerts matter (PromQL, with `metrics-exporter-prometheus`):
//!
//! - **Before Contentstack disables a webhook** (after 10 failures in a row): any refused
//!   Contentstack delivery is worth a look, several in a few minutes need one at once.
//!   `sum(increase(countersign_verifications_total{provider="contentstack",outcome="rejected"}[10m])) >= 5`
//!   (a 5xx of your handler counts against the breaker too: alert on your HTTP metrics as well.)
//! - **The old Contentful secret still matches** after a rotation: drop it only once this has
//!   stayed at zero for a day. `sum(increase(countersign_contentful_secret_matches_total{index="0"}[1d])) > 0`
//!   (index 0 is the first secret given to the verifier: list the old one first.)
//!
//! Verification time ([`VERIFICATION_SECONDS`]) covers the core's check of a buffered request,
//! not the reading of the body.

/// Verifications by provider, outcome and reason code.
pub const VERIFICATIONS: &str = "countersign_verifications_total";
/// How long a verification took, in seconds, by provider and outcome.
pub const VERIFICATION_SECONDS: &str = "countersign_verification_seconds";
/// Which Contentstack key (RSA, with its salt length) or HMAC secret matched.
pub const CONTENTSTACK_MATCHES: &str = "countersign_contentstack_signature_matches_total";
/// Which Contentful secret matched: follow a rotation with it.
pub const CONTENTFUL_MATCHES: &str = "countersign_contentful_secret_matches_total";
/// What the replay guard decided.
pub const REPLAY: &str = "countersign_replay_total";
/// Fetches of Contentstack's well-known key, and cached keys served after a failed fetch.
pub const KEY_FETCHES: &str = "countersign_key_fetches_total";
/// Access token fetches of an app identity.
pub const ACCESS_TOKEN_FETCHES: &str = "countersign_access_token_fetches_total";
/// Names the series once, with their descriptions, in the installed recorder. Optional: the
/// series appear on first use anyway.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use ::metrics::{Unit, describe_counter, describe_histogram};
        describe_counter!(
            VERIFICATIONS,
            "Verifications by provider, outcome and reason code."
        );
        describe_histogram!(
            VERIFICATION_SECONDS,
            Unit::Seconds,
            "Time to verify a buffered request."
        );
        describe_counter!(
            CONTENTSTACK_MATCHES,
            "Which Contentstack key or HMAC secret matched."
        );
        describe_counter!(
            CONTENTFUL_MATCHES,
            "Which Contentful signing secret matched."
        );
        describe_counter!(REPLAY, "Replay guard outcomes.");
        describe_counter!(KEY_FETCHES, "Contentstack well-known key fetches.");
        describe_counter!(
            ACCESS_TOKEN_FETCHES,
            "Contentful app identity access token fetches."
        );
    }
}

/// The provider label of a signed UI location's `app-token` (the providers' own labels are
/// [`Provider::as_str`](countersign_core::Provider::as_str)).
pub(crate) const APP_TOKEN: &str = "contentstack_app_token";

/// Times a verification; without the `metrics` feature it reads no clock.
pub(crate) struct Timer(#[cfg(feature = "metrics")] std::time::Instant);

impl Timer {
    pub(crate) fn start() -> Self {
        Self(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }
}

/// Records one verification: accepted, or rejected with a reason's code, and how long it took.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn verification(provider: &'static str, rejected: Option<&'static str>, timer: Timer) {
    #[cfg(feature = "metrics")]
    {
        let (outcome, reason) = rejected.map_or(("accepted", "ok"), |code| ("rejected", code));
        ::metrics::counter!(VERIFICATIONS, "provider" => provider, "outcome" => outcome, "reason" => reason)
            .increment(1);
        ::metrics::histogram!(VERIFICATION_SECONDS, "provider" => provider, "outcome" => outcome)
            .record(timer.0.elapsed().as_secs_f64());
    }
}

/// Records a request refused before its verification (its body too large or too slow).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn rejected(provider: &'static str, code: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(VERIFICATIONS, "provider" => provider, "outcome" => "rejected", "reason" => code)
        .increment(1);
}

/// Records what matched a Contentstack delivery.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn contentstack_match(by: &countersign_core::contentstack::VerifiedBy) {
    #[cfg(feature = "metrics")]
    {
        use countersign_core::contentstack::{SaltLength, VerifiedBy};
        let (method, index, salt) = match by {
            VerifiedBy::Rsa {
                key_index, salt, ..
            } => (
                "rsa",
                *key_index,
                match salt {
                    SaltLength::Digest => "32",
                    _ => "max",
                },
            ),
            VerifiedBy::Hmac { secret_index, .. } => ("hmac", *secret_index, "none"),
            _ => ("other", 0, "none"),
        };
        ::metrics::counter!(CONTENTSTACK_MATCHES, "method" => method, "index" => index_label(index), "salt" => salt)
            .increment(1);
    }
}

/// Records which Contentful secret matched.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn contentful_match(secret_index: usize) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(CONTENTFUL_MATCHES, "index" => index_label(secret_index)).increment(1);
}

/// Records a counter of `name` with one `outcome` label.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn outcome(name: &'static str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(name, "outcome" => outcome).increment(1);
}

/// Indexes as static labels: rotations hold a few secrets or keys.
#[cfg(feature = "metrics")]
fn index_label(index: usize) -> &'static str {
    const LABELS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    LABELS.get(index).copied().unwrap_or("10+")
}
