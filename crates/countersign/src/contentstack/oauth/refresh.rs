//! Refreshing an installation's tokens: one instance at a time across the fleet, kept when the
//! store fails, never sent again once refused.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use countersign_core::contentstack::Region;
use countersign_core::contentstack::oauth::{
    AccessToken, Answer, FORM_CONTENT_TYPE, RefreshToken, TokenSet, read_answer,
};

use super::Installation;
use super::error::store_failed;
use super::{
    ContentstackOAuth, MAX_ANSWER_LEN, MAX_REFRESH_MARGIN, OAuthError, OAuthErrorKind,
    REFRESH_LEASE, SAVE_TRIES, StoredTokens, TokenStore, Unsaved, WAIT_STEP,
};
use crate::http_client::{describe, read_limited};

impl<S: TokenStore> ContentstackOAuth<S> {
    /// The stored tokens if still good (and not `rejected`), else refreshed ones.
    pub(super) async fn fresh(
        &self,
        installation: &Installation,
        rejected: Option<&AccessToken>,
    ) -> Result<StoredTokens, OAuthError> {
        let (seen, _) = self.current(installation).await?;
        if rejected != Some(&seen.access_token) && is_fresh(&seen, self.inner.clock.now()) {
            return Ok(seen);
        }
        // One refresh at a time in this instance: the others wait here, then find it done.
        let gate = {
            let mut refreshing = self
                .inner
                .refreshing
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(refreshing.entry(installation.clone()).or_default())
        };
        let turn = gate.lock().await;
        let outcome = self.refresh_in_fleet(installation, &seen).await;
        drop(turn);
        self.inner
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, gate| Arc::strong_count(gate) > 1);
        outcome
    }

    /// Tokens newer than `seen` that have not expired: another caller's refresh, to use
    /// rather than refresh again (even within the margin: a token issued with a short life
    /// would otherwise be refreshed by every waiting caller in turn).
    pub(super) fn newer(&self, seen: &StoredTokens, current: StoredTokens) -> Option<StoredTokens> {
        (current.access_token != seen.access_token && self.inner.clock.now() < current.expires_at)
            .then_some(current)
    }

    /// Refreshes under the store's lock, or waits for the instance that holds it.
    pub(super) async fn refresh_in_fleet(
        &self,
        installation: &Installation,
        seen: &StoredTokens,
    ) -> Result<StoredTokens, OAuthError> {
        let store = &self.inner.store;
        let waited_since = std::time::Instant::now();
        loop {
            if let Some(newer) = self.newer(seen, self.current(installation).await?.0) {
                return Ok(newer);
            }
            if store
                .lock(installation, &self.inner.owner, REFRESH_LEASE)
                .await
                .map_err(store_failed)?
            {
                let outcome = self.refresh(installation, seen).await;
                if let Err(error) = store.unlock(installation, &self.inner.owner).await {
                    tracing::warn!(target: "countersign", %error, "could not release the refresh lock; it lapses with its lease");
                }
                return outcome;
            }
            if waited_since.elapsed() > REFRESH_LEASE {
                return Err(OAuthError::new(
                    OAuthErrorKind::Unavailable,
                    "another instance held the refresh lock for longer than its lease",
                ));
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// With the lock held: the stored tokens read again (another instance may have refreshed
    /// just before), and refreshed if they are still what this caller saw. The outcome is
    /// written only if the stored refresh token is still the one used, and the new set is
    /// saved before it is used; if the store fails, the set is kept here and written at the
    /// next call (the refresh token it replaces is spent). A refresh token refused with
    /// `invalid_grant` forgets nothing: the set may be one another instance is still saving
    /// (it refreshed with it, then stalled), and an uninstall forgets tokens by itself.
    pub(super) async fn refresh(
        &self,
        installation: &Installation,
        seen: &StoredTokens,
    ) -> Result<StoredTokens, OAuthError> {
        let (tokens, stored_refresh) = self.current(installation).await?;
        if let Some(newer) = self.newer(seen, tokens.clone()) {
            return Ok(newer);
        }
        let refresh_token = tokens.refresh_token.clone().ok_or_else(|| {
            OAuthError::new(
                OAuthErrorKind::NotAuthorized,
                "the installation's tokens have no refresh token: authorize the app again",
            )
        })?;
        let refused = || {
            OAuthError::new(
                OAuthErrorKind::NotAuthorized,
                "the installation's refresh token was refused: authorize the app again",
            )
        };
        if self.refused_tokens().get(installation) == Some(&refresh_token) {
            return Err(refused());
        }
        let region = self.region_of(&tokens);
        let form = self.inner.client.refresh_form(&refresh_token);
        match self.request(&region, form).await {
            Ok((issued, _)) => {
                let renewed = stored(
                    issued,
                    Some(refresh_token.clone()),
                    &region,
                    self.inner.clock.now(),
                    tokens.authorized_at,
                );
                let Some(stored_refresh) = stored_refresh else {
                    return Ok(renewed);
                };
                let mut saved = self.save(installation, &stored_refresh, &renewed).await;
                if saved.as_ref().is_ok_and(|saved| !saved) && stored_refresh != refresh_token {
                    // The set this refresh started from (kept in memory) reached the store
                    // meanwhile: write over it.
                    saved = self.save(installation, &refresh_token, &renewed).await;
                }
                match saved {
                    Ok(true) => Ok(renewed),
                    // Replaced meanwhile (another refresh, an uninstall, a new authorization):
                    // what is stored now wins.
                    Ok(false) => self.load(installation).await,
                    Err(error) => {
                        tracing::error!(target: "countersign", %error, "could not keep an installation's refreshed tokens: kept in memory, and written at its next call");
                        self.unsaved_tokens().insert(
                            installation.clone(),
                            Unsaved {
                                stored_refresh,
                                tokens: renewed.clone(),
                            },
                        );
                        Ok(renewed)
                    }
                }
            }
            Err(error) if error.kind() == OAuthErrorKind::InvalidGrant => {
                // Another instance may have refreshed with it a moment ago: its tokens are the
                // good ones, if it saved them.
                if let Some(newer) = self.newer(seen, self.current(installation).await?.0) {
                    return Ok(newer);
                }
                tracing::warn!(target: "countersign", reason = %error.message(), "an installation's refresh token was refused: it must authorize the app again");
                self.refused_tokens()
                    .insert(installation.clone(), refresh_token);
                Err(refused())
            }
            Err(error) => Err(error),
        }
    }

    /// Writes a refreshed set over `stored_refresh`, tried [`SAVE_TRIES`] times on a store
    /// error: whether the store still held `stored_refresh`.
    pub(super) async fn save(
        &self,
        installation: &Installation,
        stored_refresh: &RefreshToken,
        tokens: &StoredTokens,
    ) -> Result<bool, OAuthError> {
        let mut wait = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .inner
                .store
                .replace(installation, stored_refresh, Some(tokens))
                .await
            {
                Ok(replaced) => return Ok(replaced),
                Err(error) if tries >= SAVE_TRIES => return Err(store_failed(error)),
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
            }
        }
    }

    pub(super) fn refused_tokens(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Installation, RefreshToken>> {
        self.inner
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn unsaved_tokens(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Installation, Unsaved>> {
        self.inner
            .unsaved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The installation's tokens as this instance knows them, and the refresh token the store
    /// holds (what a refresh's write compares with): a set the store failed to keep is written
    /// first, and used while the store still fails.
    pub(super) async fn current(
        &self,
        installation: &Installation,
    ) -> Result<(StoredTokens, Option<RefreshToken>), OAuthError> {
        let unsaved = self.unsaved_tokens().get(installation).cloned();
        if let Some(unsaved) = unsaved {
            match self
                .inner
                .store
                .replace(installation, &unsaved.stored_refresh, Some(&unsaved.tokens))
                .await
            {
                Ok(replaced) => {
                    // Unless a later refresh kept a newer set meanwhile.
                    let mut unsaved_now = self.unsaved_tokens();
                    if unsaved_now
                        .get(installation)
                        .is_some_and(|now| now.tokens.access_token == unsaved.tokens.access_token)
                    {
                        unsaved_now.remove(installation);
                    }
                    drop(unsaved_now);
                    if replaced {
                        tracing::info!(target: "countersign", "an installation's refreshed tokens were kept after a store error");
                    }
                }
                Err(_) => {
                    return Ok((unsaved.tokens, Some(unsaved.stored_refresh)));
                }
            }
        }
        let tokens = self.load(installation).await?;
        let stored_refresh = tokens.refresh_token.clone();
        Ok((tokens, stored_refresh))
    }

    pub(super) async fn load(
        &self,
        installation: &Installation,
    ) -> Result<StoredTokens, OAuthError> {
        self.inner.store.load(installation).await.map_err(store_failed)?.ok_or_else(|| {
            OAuthError::new(
                OAuthErrorKind::NotAuthorized,
                "the installation has no tokens: it never authorized the app, or was uninstalled",
            )
        })
    }

    pub(super) fn region_of(&self, tokens: &StoredTokens) -> Region {
        self.inner
            .region
            .for_location(&tokens.region)
            .unwrap_or_else(|_| self.inner.region.clone())
    }

    /// Posts `form` to `region`'s token endpoint: the token set, and when the endpoint
    /// answered by its own clock (its `Date`), if it said.
    pub(super) async fn request(
        &self,
        region: &Region,
        form: String,
    ) -> Result<(TokenSet, Option<SystemTime>), OAuthError> {
        let url = region.token_url();
        let response = self
            .inner
            .http
            .post(&url)
            .header(http::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(form)
            .send()
            .await
            .map_err(|e| OAuthError::new(OAuthErrorKind::Unavailable, describe(&e)))?;
        let status = response.status();
        let answered_at = response
            .headers()
            .get(http::header::DATE)
            .and_then(|date| date.to_str().ok())
            .and_then(|date| httpdate::parse_http_date(date).ok());
        let body = read_limited(response, MAX_ANSWER_LEN, "the token answer")
            .await
            .map_err(|e| OAuthError::new(OAuthErrorKind::Unavailable, e))?;
        match read_answer(status, &body, self.inner.clock.now()) {
            Answer::Issued(tokens) => Ok((tokens, answered_at)),
            Answer::InvalidGrant(refusal) => Err(OAuthError::new(
                OAuthErrorKind::InvalidGrant,
                refusal.to_string(),
            )),
            Answer::Refused(refusal) => Err(OAuthError::new(
                OAuthErrorKind::Refused,
                refusal.to_string(),
            )),
            Answer::Unavailable(status) => Err(OAuthError::new(
                OAuthErrorKind::Unavailable,
                format!("the token endpoint answered {status}"),
            )),
        }
    }
}

/// A name for this instance in the store's locks: random, or (without a random source) the
/// process, the time and a counter, which no other instance shares.
pub(super) fn instance_name() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if let Ok(random) = countersign_core::random_hex(16) {
        return random;
    }
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos}-{count}", std::process::id())
}

/// What is kept of an issued set: the refresh token it brought, or the one it was refreshed
/// with when it brought none; authorized at `authorized_at` (Contentstack's clock).
pub(super) fn stored(
    issued: TokenSet,
    previous: Option<RefreshToken>,
    region: &Region,
    now: SystemTime,
    authorized_at: SystemTime,
) -> StoredTokens {
    StoredTokens {
        authorized_at,
        lifetime: issued.expires_at.duration_since(now).unwrap_or_default(),
        access_token: issued.access_token,
        refresh_token: issued.refresh_token.or(previous),
        expires_at: issued.expires_at,
        region: issued
            .location
            .filter(|location| region.for_location(location).is_ok())
            .unwrap_or_else(|| region.location().to_owned()),
    }
}

/// Whether more than the margin is left: 60 s, or half the lifetime if that is less.
pub(super) fn is_fresh(tokens: &StoredTokens, now: SystemTime) -> bool {
    let margin = MAX_REFRESH_MARGIN.min(tokens.lifetime / 2);
    now.checked_add(margin)
        .is_some_and(|later| later < tokens.expires_at)
}
