//! The claim protocol's steps that every user of a [`ReplayStore`] shares: the replay guard of
//! the `countersign` crate (claim, run the handler, complete) and single-use app-tokens
//! ([`Sessions::open_once`](crate::session::Sessions::open_once): claim and complete at once).

use std::time::Duration;

use super::{Claim, Owner, ReplayKey, ReplayStore, StoreError};

/// How long spending a single-use fact may take before its claim lapses.
pub const SPENDING_LEASE: Duration = Duration::from_secs(10);

/// Claims `key` for `owner`. A store that failed may have applied the claim before its answer
/// was lost; a claim is idempotent for its owner, so it is asked once more to find out, after
/// `on_first_failure` has seen the first error (to log it).
///
/// # Errors
/// The store's second failure. A claim it may have applied is the caller's to release, or it
/// lapses with its lease.
pub async fn claim<St: ReplayStore>(
    store: &St,
    key: &ReplayKey,
    owner: &Owner,
    lease: Duration,
    on_first_failure: impl FnOnce(&StoreError),
) -> Result<Claim, StoreError> {
    match store.claim(key, owner, lease).await {
        Err(first) => {
            on_first_failure(&first);
            store.claim(key, owner, lease).await
        }
        answer => answer,
    }
}

/// Spends `key`: claims it and at once marks it done, remembered for `remember`. For a fact
/// spent by being seen (a single-use token), where nothing runs between claim and completion.
/// [`Claim::Claimed`]: spent now, by this call; any other answer is why it was not.
///
/// # Errors
/// The store failed. A claim it applied lapses with [`SPENDING_LEASE`].
pub async fn spend<St: ReplayStore>(
    store: &St,
    key: &ReplayKey,
    remember: Duration,
) -> Result<Claim, StoreError> {
    let owner = Owner::random();
    let answer = claim(store, key, &owner, SPENDING_LEASE, |_| {}).await?;
    if answer == Claim::Claimed {
        store.complete(key, &owner, remember).await?;
    }
    Ok(answer)
}
