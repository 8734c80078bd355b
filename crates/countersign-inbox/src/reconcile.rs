//! Reconciling the inbox with a provider's record of its attempts: [`Inbox::reconcile`].

use std::time::SystemTime;

use countersign_core::reconcile::{Attempt, RecordedDelivery, Unusable};
use countersign_core::replay::StoreError;

use crate::delivery::{Commit, InboxDelivery};
use crate::inbox::Inbox;
use crate::metrics;
use crate::store::InboxStore;

/// What reconciling one attempt of a provider's record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The delivery is in the inbox: committed by the live path (or by an earlier
    /// reconciliation, or by the provider's own retry meanwhile).
    Present,
    /// The delivery is not in the inbox, and was not committed (a dry run).
    Missing,
    /// The delivery was not in the inbox, and is now: committed from the record, to be
    /// handled as any delivery.
    Committed,
    /// The delivery is not in the inbox, and its tenant has its limit of deliveries waiting:
    /// not committed. Reconcile again once they are handled.
    TenantFull,
    /// The attempt is older than the inbox remembers a handled delivery
    /// ([`Inbox::with_retry_horizon`]), or its record gives no time: its delivery may have
    /// been handled and forgotten, so it is neither reported missing nor committed.
    Forgotten,
    /// The record cannot give the delivery (reported, never committed).
    Unusable(Unusable),
}

impl Found {
    /// The word of the CLI's lines and of the metrics' `found` label: `present`, `missing`,
    /// `committed`, `tenant_full`, `forgotten`, `unusable`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::Missing => "missing",
            Self::Committed => "committed",
            Self::TenantFull => "tenant_full",
            Self::Forgotten => "forgotten",
            Self::Unusable(_) => "unusable",
        }
    }

    /// Whether the delivery is missing from the inbox at the end: [`Missing`](Self::Missing)
    /// or [`TenantFull`](Self::TenantFull).
    #[must_use]
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing | Self::TenantFull)
    }
}

impl<St: InboxStore> Inbox<St> {
    /// The earliest attempt a reconciliation at `now` can tell about: a delivery handled is
    /// remembered for the retry horizon ([`with_retry_horizon`](Self::with_retry_horizon)) at
    /// the least, so an older attempt whose delivery is not found may have been handled and
    /// forgotten. Set the horizon to the window you reconcile (Contentstack keeps 30 days of
    /// executions): a handled delivery is remembered as its id alone.
    #[must_use]
    pub fn remembers_since(&self, now: SystemTime) -> SystemTime {
        now.checked_sub(self.inner.settings.retry_horizon)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Looks each attempt's delivery up in the inbox, and with `commit` commits those that are
    /// missing from the record, as the live path commits a verified delivery: one for each
    /// attempt, in order.
    ///
    /// The attempts come from [`countersign_core::reconcile`], read from the provider's API in
    /// the live verifier's namespace (see there why a record is as good as a signature). A
    /// delivery is committed under the id the live path gives it, so a provider's retry that
    /// arrives at the same time is a duplicate of it, or it of the retry: it is handled once.
    /// Running it again commits nothing new.
    ///
    /// # Errors
    /// The store failed; what was committed before stays committed.
    pub async fn reconcile(
        &self,
        attempts: &[Attempt],
        commit: bool,
    ) -> Result<Vec<Found>, StoreError> {
        let now = SystemTime::now();
        let since = self.remembers_since(now);
        let mut found = Vec::with_capacity(attempts.len());
        for attempt in attempts {
            let outcome = match &attempt.delivery {
                Err(unusable) => Found::Unusable(unusable.clone()),
                Ok(_) if attempt.attempted_at.is_none_or(|at| at < since) => Found::Forgotten,
                Ok(delivery) => self.reconcile_one(delivery, commit, now).await?,
            };
            metrics::reconciled(outcome.as_str());
            found.push(outcome);
        }
        Ok(found)
    }

    async fn reconcile_one(
        &self,
        delivery: &RecordedDelivery,
        commit: bool,
        now: SystemTime,
    ) -> Result<Found, StoreError> {
        let shared = &self.inner;
        let ids: Vec<String> = delivery.keys().map(|key| key.to_hex()).collect();
        if shared.store.known(&ids).await?.contains(&true) {
            return Ok(Found::Present);
        }
        if !commit {
            return Ok(Found::Missing);
        }
        let delivery = InboxDelivery {
            id: delivery.id(),
            provider: delivery.provider,
            tenant: delivery.tenant.clone(),
            body: delivery.body.clone(),
            signed_headers: delivery.signed_headers.clone(),
            received_at: now,
            attempt: 0,
        };
        let expires_at = now
            .checked_add(shared.settings.retry_horizon)
            .unwrap_or(now);
        let limit = shared.limit_for(delivery.tenant.as_ref());
        Ok(
            match shared.store.commit(&delivery, expires_at, limit).await? {
                Commit::New => {
                    shared.committed.notify_waiters();
                    Found::Committed
                }
                Commit::Duplicate => Found::Present,
                Commit::TenantFull => Found::TenantFull,
            },
        )
    }
}
