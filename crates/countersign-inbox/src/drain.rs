//! The drain: what waits in this instance's spool moves into the inbox once its store is back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::delivery::{Commit, MAYBE_HANDLED};
use crate::metrics;
use crate::shared::Shared;
use crate::store::InboxStore;

/// The tenants whose spooled deliveries wait for room under their limit, and since when: left
/// out of the drain for [`HELD_BACK_FOR`], so that they cannot fill every batch.
pub(crate) type HeldBack = std::collections::HashMap<Option<String>, tokio::time::Instant>;

/// How long a tenant found at its limit is left out of the drain.
const HELD_BACK_FOR: Duration = Duration::from_secs(5);

/// How many deliveries in a row may fail to move before a drain stops (the store is down).
const DRAIN_FAILURES: usize = 3;

/// Moves what waits in the spool into the inbox, while the store takes it. Each was
/// acknowledged, so a tenant's limit is raised by its share of the spool for it; a tenant past
/// even that waits in the spool for room, left out of the drain a while (`held_back`) so that
/// the others' deliveries move meanwhile. One that waited half the time its id is remembered
/// or more (the retry horizon, or its signature's window and the margin if longer) is set aside
/// as a dead letter instead ([`MAYBE_HANDLED`]), whatever its tenant has waiting: its commit may
/// have reached the store after all and been handled, and its id been forgotten since.
pub(crate) async fn drain<St: InboxStore>(shared: &Arc<Shared<St>>, held_back: &mut HeldBack) {
    let Some(spool) = &shared.spool else {
        return;
    };
    metrics::inbox_spooled(spool.len());
    if spool.is_empty() {
        return;
    }
    held_back.retain(|_, since| since.elapsed() < HELD_BACK_FOR);
    let settings = shared.settings;
    let spool = spool.clone();
    // A held-back tenant's deliveries are read again once it has been held back a while.
    let skip: std::collections::HashSet<_> = held_back.keys().cloned().collect();
    let waiting = match tokio::task::spawn_blocking(move || (spool.peek(100, &skip), spool)).await {
        Ok(waiting) => waiting,
        Err(_) => return,
    };
    let (batch, spool) = waiting;
    let mut failures = 0;
    for (delivery, expires_at) in batch {
        let now = SystemTime::now();
        let waited = now.duration_since(delivery.received_at).unwrap_or_default();
        // Half the time its id is remembered once handled (the retry horizon at least):
        // past that, another instance may have handled it and forgotten it.
        let memory = expires_at
            .duration_since(delivery.received_at)
            .unwrap_or_default();
        let moved = if waited >= memory / 2 {
            tracing::error!(target: "countersign", delivery = %delivery.id, waited_s = waited.as_secs(), "a spooled delivery waited past half the time its id is remembered: set aside as a dead letter, since it may have been handled already");
            metrics::outcome(metrics::INBOX, "set_aside");
            let dead_until = now.checked_add(settings.dead_letter_ttl).unwrap_or(now);
            shared
                .store
                .set_aside(&delivery, MAYBE_HANDLED, dead_until)
                .await
        } else {
            let limit = shared
                .limit_for(delivery.tenant.as_ref())
                .map(|limit| limit.saturating_add(spool.tenant_share()));
            shared.store.commit(&delivery, expires_at, limit).await
        };
        match moved {
            Ok(Commit::TenantFull) => {
                held_back.insert(delivery.tenant, tokio::time::Instant::now());
            }
            Ok(_) => {
                failures = 0;
                let (spool, id) = (spool.clone(), delivery.id.clone());
                let _ = tokio::task::spawn_blocking(move || spool.remove(&id)).await;
            }
            Err(error) => {
                tracing::warn!(target: "countersign", delivery = %delivery.id, %error, "a spooled delivery could not be moved into the inbox yet");
                failures += 1;
                if failures >= DRAIN_FAILURES {
                    return;
                }
            }
        }
    }
}
