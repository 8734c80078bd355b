//! Reconciling the inbox with a provider's record of its attempts: [`Inbox::reconcile`].

use std::time::SystemTime;

use countersign_core::reconcile::{Answer, Attempt, RecordedDelivery, Unusable};
use countersign_core::replay::StoreError;

use crate::delivery::{Commit, InboxDelivery};
use crate::inbox::Inbox;
use crate::metrics;
use crate::store::InboxStore;

/// How far a provider's clock and this machine's may differ: an attempt is told apart from
/// the deliveries the inbox forgot only this far past the latest of them.
const CLOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// How old a Contentstack attempt may be for [`Action::Retry`]: Contentstack sends it again
/// with its old `triggered_at`, which the live verifier refuses past its tolerance (30 minutes
/// by default); five minutes short of that.
#[cfg(feature = "reconcile")]
const RETRY_WITHIN: std::time::Duration = std::time::Duration::from_secs(25 * 60);

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
    /// The live path refused the attempt on purpose (the record says it answered this 4xx): a
    /// signature, Basic auth, a stack not installed, a body over the limit. Never committed
    /// from the record, which would go round the refusal.
    Refused(u16),
    /// The record says the live path took the attempt (2xx), yet its delivery is not in the
    /// inbox: the ids differ from the live path's (another namespace; a Contentful webhook
    /// verified with an app secret), or an instance's spool has not moved it in yet. While any
    /// attempt is so, nothing is committed: with ids that differ, every delivery would be
    /// handled twice.
    Mismatch,
    /// Missing, and too old for the provider to send again ([`Action::Retry`]): Contentstack
    /// sends it with its old `triggered_at`, which the live path refuses as stale. Commit it.
    TooOld,
    /// The delivery is not in the inbox, and the provider was asked to send it again
    /// (Contentstack, [`Action::Retry`]).
    Retried,
}

impl Found {
    /// The word of the CLI's lines and of the metrics' `found` label: `present`, `missing`,
    /// `committed`, `tenant_full`, `forgotten`, `unusable`, `retried`, `refused`, `mismatch`,
    /// `too_old`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::Missing => "missing",
            Self::Committed => "committed",
            Self::TenantFull => "tenant_full",
            Self::Forgotten => "forgotten",
            Self::Unusable(_) => "unusable",
            Self::Retried => "retried",
            Self::Refused(_) => "refused",
            Self::Mismatch => "mismatch",
            Self::TooOld => "too_old",
        }
    }

    /// Whether the delivery is missing from the inbox at the end, and should not be:
    /// [`Missing`](Self::Missing), [`TenantFull`](Self::TenantFull),
    /// [`Mismatch`](Self::Mismatch) or [`TooOld`](Self::TooOld).
    #[must_use]
    pub fn is_missing(&self) -> bool {
        matches!(
            self,
            Self::Missing | Self::TenantFull | Self::Mismatch | Self::TooOld
        )
    }
}

impl<St: InboxStore> Inbox<St> {
    /// The earliest attempt a reconciliation at `now` can tell about: a delivery handled is
    /// remembered for the retry horizon ([`with_retry_horizon`](Self::with_retry_horizon)) at
    /// the least, and the store keeps the latest receipt among the deliveries it forgot
    /// ([`OperatorStore::purged_up_to`](crate::OperatorStore::purged_up_to)), so that a horizon
    /// raised after they were committed does not reach back past them. An older attempt whose
    /// delivery is not found may have been handled and forgotten. Set the horizon to the window
    /// you reconcile (Contentstack keeps 30 days of executions): a handled delivery is
    /// remembered as its id alone.
    ///
    /// # Errors
    /// The store failed.
    pub async fn remembers_since(&self, now: SystemTime) -> Result<SystemTime, StoreError> {
        let horizon = now
            .checked_sub(self.inner.settings.retry_horizon)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let purged = self
            .inner
            .store
            .purged_up_to()
            .await?
            .and_then(|up_to| up_to.checked_add(CLOCK_MARGIN));
        Ok(purged.map_or(horizon, |purged| purged.max(horizon)))
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
        let found = self.look_up(attempts, commit).await?;
        for found in &found {
            metrics::reconciled(found.as_str());
        }
        Ok(found)
    }

    /// [`reconcile`](Self::reconcile), uncounted: each attempt looked up, then, with `commit`
    /// and no [`Found::Mismatch`], those missing committed.
    async fn look_up(&self, attempts: &[Attempt], commit: bool) -> Result<Vec<Found>, StoreError> {
        let now = SystemTime::now();
        let since = self.remembers_since(now).await?;
        let mut found = Vec::with_capacity(attempts.len());
        for attempt in attempts {
            found.push(match &attempt.delivery {
                Err(unusable) => Found::Unusable(unusable.clone()),
                Ok(_) if attempt.attempted_at.is_none_or(|at| at < since) => Found::Forgotten,
                Ok(delivery) => {
                    let ids: Vec<String> = delivery.keys().map(|key| key.to_hex()).collect();
                    if self.inner.store.known(&ids).await?.contains(&true) {
                        Found::Present
                    } else {
                        match attempt.answer() {
                            Answer::Taken => Found::Mismatch,
                            Answer::Refused(status) => Found::Refused(status),
                            Answer::NotTaken => Found::Missing,
                        }
                    }
                }
            });
        }
        if commit && !found.contains(&Found::Mismatch) {
            for (attempt, found) in attempts.iter().zip(found.iter_mut()) {
                if let (Found::Missing, Ok(delivery)) = (&*found, &attempt.delivery) {
                    *found = self.commit_recorded(delivery, now).await?;
                }
            }
        }
        Ok(found)
    }

    /// Commits `delivery` as the live path commits a verified one.
    async fn commit_recorded(
        &self,
        delivery: &RecordedDelivery,
        now: SystemTime,
    ) -> Result<Found, StoreError> {
        let shared = &self.inner;
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

/// What a reconciliation does with a delivery missing from the inbox.
#[cfg(feature = "reconcile")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing: report it (a dry run).
    Report,
    /// Commit it into the inbox from the provider's record.
    Commit,
    /// Ask the provider to send it again (Contentstack only; the webhook's endpoint must be
    /// up). For Contentful it is the same as [`Report`](Self::Report).
    Retry,
}

/// What reconciling a webhook's records found: each attempt and what became of it, and the
/// webhook's health.
#[cfg(feature = "reconcile")]
#[derive(Debug, Clone)]
pub struct Report {
    /// Each attempt of the record, and what was found or done.
    pub attempts: Vec<(Attempt, Found)>,
    /// Whether the webhook is healthy: Contentstack's not disabled, Contentful's every recent
    /// call answered 2xx. A disabled webhook is the one case where nothing arrives at all, and
    /// nothing is recorded either.
    pub healthy: bool,
    /// What the provider said of the webhook's health, in words.
    pub health: String,
}

#[cfg(feature = "reconcile")]
impl Report {
    /// How many attempts ended as `found` (by [`Found::as_str`]).
    #[must_use]
    pub fn count(&self, found: &str) -> usize {
        self.attempts
            .iter()
            .filter(|(_, f)| f.as_str() == found)
            .count()
    }

    /// Whether a delivery is missing from the inbox at the end (neither committed nor sent
    /// again).
    #[must_use]
    pub fn any_missing(&self) -> bool {
        self.attempts.iter().any(|(_, found)| found.is_missing())
    }
}

/// Why a webhook's records could not be reconciled.
#[cfg(feature = "reconcile")]
#[derive(Debug)]
pub enum ReconcileError {
    /// The provider's records could not be read.
    Records(countersign::reconcile::RecordsError),
    /// The inbox could not be read or written.
    Store(StoreError),
}

#[cfg(feature = "reconcile")]
impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Records(error) => write!(f, "the provider's records: {error}"),
            Self::Store(error) => write!(f, "the inbox: {error}"),
        }
    }
}

#[cfg(feature = "reconcile")]
impl std::error::Error for ReconcileError {}

#[cfg(feature = "reconcile")]
impl<St: InboxStore> Inbox<St> {
    /// Reconciles the inbox with the executions of the Contentstack webhook `webhook` made from
    /// `since` to `until` (now when `None`): reads the webhook's state and its executions
    /// ([`ContentstackRecords`](countersign::reconcile::ContentstackRecords)), looks each up,
    /// and does `action` with those missing. Counts an unhealthy webhook
    /// ([`metrics::RECONCILE_UNHEALTHY`]).
    ///
    /// # Errors
    /// The records or the inbox could not be read; what was committed or retried before
    /// stays so.
    pub async fn reconcile_contentstack(
        &self,
        records: &countersign::reconcile::ContentstackRecords,
        webhook: &str,
        since: SystemTime,
        until: Option<SystemTime>,
        action: Action,
    ) -> Result<Report, ReconcileError> {
        let state = records
            .webhook_state(webhook)
            .await
            .map_err(ReconcileError::Records)?;
        if state.disabled {
            metrics::unhealthy(countersign_core::Provider::Contentstack);
        }
        let attempts = records
            .executions(webhook, since, until)
            .await
            .map_err(ReconcileError::Records)?;
        let found = self
            .look_up(&attempts, action == Action::Commit)
            .await
            .map_err(ReconcileError::Store)?;
        let mut report = Vec::with_capacity(attempts.len());
        let retry_since = SystemTime::now()
            .checked_sub(RETRY_WITHIN)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mismatch = found.contains(&Found::Mismatch);
        for (attempt, found) in attempts.into_iter().zip(found) {
            let found = match found {
                Found::Missing if action == Action::Retry && !mismatch => {
                    if attempt.attempted_at.is_some_and(|at| at >= retry_since) {
                        records
                            .retry(webhook, &attempt.provider_id)
                            .await
                            .map_err(ReconcileError::Records)?;
                        Found::Retried
                    } else {
                        Found::TooOld
                    }
                }
                found => found,
            };
            metrics::reconciled(found.as_str());
            report.push((attempt, found));
        }
        Ok(Report {
            attempts: report,
            healthy: !state.disabled,
            health: if state.disabled {
                "disabled (by hand or by the circuit breaker): nothing is sent or recorded until it is enabled".to_owned()
            } else {
                "enabled".to_owned()
            },
        })
    }

    /// Reconciles the inbox with the recent calls of the Contentful webhook `webhook` made
    /// since `since` (every call Contentful keeps, its last 500, when `None`): reads the
    /// webhook's health and its calls
    /// ([`ContentfulRecords`](countersign::reconcile::ContentfulRecords)), looks each up, and
    /// commits those missing with [`Action::Commit`]. Counts an unhealthy webhook
    /// ([`metrics::RECONCILE_UNHEALTHY`]).
    ///
    /// # Errors
    /// The records or the inbox could not be read.
    pub async fn reconcile_contentful(
        &self,
        records: &countersign::reconcile::ContentfulRecords,
        webhook: &str,
        since: Option<SystemTime>,
        action: Action,
    ) -> Result<Report, ReconcileError> {
        let health = records
            .health(webhook)
            .await
            .map_err(ReconcileError::Records)?;
        if !health.is_healthy() {
            metrics::unhealthy(countersign_core::Provider::Contentful);
        }
        let attempts = records
            .calls(webhook, since)
            .await
            .map_err(ReconcileError::Records)?;
        let found = self
            .reconcile(&attempts, action == Action::Commit)
            .await
            .map_err(ReconcileError::Store)?;
        Ok(Report {
            attempts: attempts.into_iter().zip(found).collect(),
            healthy: health.is_healthy(),
            health: format!(
                "{} of its {} recent calls were answered 2xx",
                health.healthy, health.total
            ),
        })
    }
}
