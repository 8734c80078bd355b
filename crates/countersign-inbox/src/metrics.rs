//! What the inbox counts, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`). Install a recorder in your application; the layers' own series are in
//! [`countersign::metrics`].
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`INBOX`] | counter | `outcome` (`accepted`, `duplicate`, `tenant_full`, `tenant_invalid`, `spooled`, `set_aside`, `store_error`) |
//! | [`INBOX_ATTEMPTS`] | counter | `outcome` (`handled`, `retried`, `dead`, `lost_lease`, `late_success`) |
//! | [`INBOX_DEPTH`] | gauge | `state` (`pending`, `leased`, `dead`) |
//! | [`INBOX_OLDEST_SECONDS`] | gauge | |
//! | [`INBOX_SPOOLED`] | gauge | |
//! | [`RECONCILED`] | counter | `found` (`present`, `missing`, `committed`, `tenant_full`, `forgotten`, `unusable`, `retried`) |
//! | [`RECONCILE_UNHEALTHY`] | counter | `provider` |

/// What the inbox did with a verified delivery, one outcome each: accepted, duplicate,
/// tenant_full, tenant_invalid (422), spooled (accepted while its store was down), set_aside,
/// store_error (503).
pub const INBOX: &str = "countersign_inbox_total";
/// What became of an attempt of the inbox's handler: handled, retried, dead, lost_lease,
/// late_success.
pub const INBOX_ATTEMPTS: &str = "countersign_inbox_attempts_total";
/// Deliveries in the inbox by state (pending, leased, dead), as its workers last read it. Every
/// instance of a fleet reads the one shared table: aggregate with `max`, not `sum`.
pub const INBOX_DEPTH: &str = "countersign_inbox_depth";
/// The age in seconds of the oldest delivery not yet handled (0 when none waits).
pub const INBOX_OLDEST_SECONDS: &str = "countersign_inbox_oldest_seconds";
/// Deliveries in this instance's spool, acknowledged while the inbox's database was down and
/// not yet moved into it. Each instance has its own spool: aggregate with `sum`.
pub const INBOX_SPOOLED: &str = "countersign_inbox_spooled";

/// What reconciling with a provider's record found, one per attempt of the record:
/// present, missing, committed, tenant_full, forgotten, unusable, retried
/// ([`Found`](crate::Found)). Alert on `missing` and `tenant_full` that stay.
pub const RECONCILED: &str = "countersign_inbox_reconciled_total";
/// Reconciliations that found the provider's webhook unhealthy: Contentstack's disabled (by
/// hand or by its circuit breaker: nothing is sent, nothing recorded), Contentful's with
/// failed recent calls. Alert on any increase.
pub const RECONCILE_UNHEALTHY: &str = "countersign_inbox_reconcile_unhealthy_total";

/// Names the inbox's series once, with their descriptions, in the installed recorder.
/// Optional: the series appear on first use anyway.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use ::metrics::{Unit, describe_counter, describe_gauge};
        describe_counter!(INBOX, "What the inbox answered verified deliveries.");
        describe_counter!(INBOX_ATTEMPTS, "Outcomes of the inbox handler's attempts.");
        describe_counter!(
            RECONCILED,
            "What reconciling with the providers' records found, by attempt."
        );
        describe_counter!(
            RECONCILE_UNHEALTHY,
            "Reconciliations that found the provider's webhook disabled or failing."
        );
        describe_gauge!(INBOX_DEPTH, "Deliveries in the inbox by state.");
        describe_gauge!(
            INBOX_SPOOLED,
            "Deliveries in this instance's spool, waiting for the inbox's database."
        );
        describe_gauge!(
            INBOX_OLDEST_SECONDS,
            Unit::Seconds,
            "Age of the oldest delivery not yet handled."
        );
    }
}

/// Counts one attempt of a provider's record, by what reconciling found.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn reconciled(found: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(RECONCILED, "found" => found).increment(1);
}

/// Counts a reconciliation that found `provider`'s webhook unhealthy.
#[cfg(feature = "reconcile")]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn unhealthy(provider: countersign_core::Provider) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(RECONCILE_UNHEALTHY, "provider" => provider.as_str()).increment(1);
}

/// Records a counter of `name` with one `outcome` label.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn outcome(name: &'static str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(name, "outcome" => outcome).increment(1);
}

/// Records the inbox's depth by state (`pending`, `leased`, `dead`: how many of each) and the
/// age of its oldest unhandled delivery (none: zero).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn inbox_depth(by_state: [(&'static str, u64); 3], oldest: Option<std::time::Duration>) {
    #[cfg(feature = "metrics")]
    {
        #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
        for (state, count) in by_state {
            ::metrics::gauge!(INBOX_DEPTH, "state" => state).set(count as f64);
        }
        ::metrics::gauge!(INBOX_OLDEST_SECONDS).set(oldest.map_or(0.0, |age| age.as_secs_f64()));
    }
}

/// Records how many deliveries wait in this instance's spool.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn inbox_spooled(count: usize) {
    #[cfg(feature = "metrics")]
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    ::metrics::gauge!(INBOX_SPOOLED).set(count as f64);
}
