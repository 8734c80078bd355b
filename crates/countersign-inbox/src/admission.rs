//! Admission: how many deliveries of one tenant may wait, counted only for the tenants near
//! their limit.

use std::time::Duration;

use crate::inbox::Inbox;
use crate::store::InboxStore;

/// The tenants with half their limit or more waiting, read at most every [`CROWDED_EVERY`].
#[derive(Default)]
pub(crate) struct Crowded {
    tenants: std::collections::HashSet<Option<String>>,
    /// Whether they were ever read (if not, every commit counts).
    known: bool,
    /// When a reading last began: one a second at most, even while they fail.
    tried_at: Option<std::time::Instant>,
    reading: bool,
}

/// How often the tenants near their limit are read again.
const CROWDED_EVERY: Duration = Duration::from_secs(1);

impl<St: InboxStore> Inbox<St> {
    /// The limit a commit of `tenant` checks: the tenant's limit when it was read near it (or
    /// nothing was read yet), else none, so that a commit of a tenant far from its limit counts
    /// nothing. The tenants near their limit (half of it waiting) are read again every second,
    /// by one commit at a time, off the request: a tenant may go past its limit by what it
    /// sends within about a second.
    pub(crate) fn limit_for(&self, tenant: Option<&String>) -> Option<u64> {
        let limit = self.inner.settings.tenant_limit?.get();
        let mut crowded = self
            .inner
            .crowded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = crowded
            .tried_at
            .is_none_or(|at| at.elapsed() >= CROWDED_EVERY);
        if stale && !crowded.reading {
            crowded.reading = true;
            crowded.tried_at = Some(std::time::Instant::now());
            let inbox = self.clone();
            tokio::spawn(async move {
                let read = inbox.inner.store.crowded((limit / 2).max(1)).await;
                let mut crowded = inbox
                    .inner
                    .crowded
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                crowded.reading = false;
                if let Ok(tenants) = read {
                    crowded.tenants = tenants.into_iter().collect();
                    crowded.known = true;
                }
            });
        }
        (!crowded.known || crowded.tenants.contains(&tenant.cloned())).then_some(limit)
    }
}
