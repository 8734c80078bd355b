//! Admission: how many deliveries of one tenant may wait, counted only for the tenants near
//! their limit.

use std::time::Duration;

use std::sync::Arc;

use crate::shared::Shared;
use crate::store::InboxStore;

/// How often the tenants near their limit are read again.
const CROWDED_EVERY: Duration = Duration::from_secs(1);

impl<St: InboxStore> Shared<St> {
    /// The limit a commit of `tenant` checks: the tenant's limit when it was read near it (or
    /// nothing was read yet), else none, so that a commit of a tenant far from its limit counts
    /// nothing. The tenants near their limit (half of it waiting) are read again every second,
    /// by one commit at a time, off the request: a tenant may go past its limit by what it
    /// sends within about a second.
    pub(crate) fn limit_for(self: &Arc<Self>, tenant: Option<&String>) -> Option<u64> {
        let limit = self.settings.tenant_limit?.get();
        let mut crowded = self
            .crowded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = crowded
            .tried_at
            .is_none_or(|at| at.elapsed() >= CROWDED_EVERY);
        if stale && !crowded.reading {
            crowded.reading = true;
            crowded.tried_at = Some(std::time::Instant::now());
            let shared = Arc::clone(self);
            tokio::spawn(async move {
                let read = shared.store.crowded((limit / 2).max(1)).await;
                let mut crowded = shared
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
