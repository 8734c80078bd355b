//! OAuth tokens when the token store fails: refreshed tokens are kept, and a set another
//! instance is saving is never forgotten.

use super::*;

/// A token store whose writes of a refresh fail or wait, and whose lock can be had at once (as
/// when another instance's lease lapsed while it stalled).
#[derive(Clone, Default)]
struct Faulty {
    inner: Arc<MemoryTokenStore>,
    replace_fails: Arc<std::sync::atomic::AtomicBool>,
    replace_waits: Option<Arc<tokio::sync::Semaphore>>,
    lock_always: bool,
}

impl TokenStore for Faulty {
    async fn load(&self, installation: &Installation) -> Result<Option<StoredTokens>, StoreError> {
        self.inner.load(installation).await
    }
    async fn save(
        &self,
        installation: &Installation,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError> {
        self.inner.save(installation, tokens).await
    }
    async fn forget(&self, installation: &Installation) -> Result<(), StoreError> {
        self.inner.forget(installation).await
    }
    async fn replace(
        &self,
        installation: &Installation,
        previous: &RefreshToken,
        tokens: Option<&StoredTokens>,
    ) -> Result<bool, StoreError> {
        if let Some(gate) = &self.replace_waits {
            drop(gate.acquire().await.unwrap());
        }
        if self.replace_fails.load(Ordering::SeqCst) {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "the database is down",
            ));
        }
        self.inner.replace(installation, previous, tokens).await
    }
    async fn lock(
        &self,
        installation: &Installation,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        if self.lock_always {
            return Ok(true);
        }
        self.inner.lock(installation, owner, lease).await
    }
    async fn unlock(&self, installation: &Installation, owner: &str) -> Result<(), StoreError> {
        self.inner.unlock(installation, owner).await
    }
}

/// The refresh spent the old refresh token at Developer Hub, then the store failed: the new
/// set is kept and used, written once the store is back; no call ever sends the spent token.
#[tokio::test]
async fn refreshed_tokens_survive_a_store_error_and_no_reauthorization_is_needed() {
    let (region, hub) = developer_hub(100).await;
    let (clock, offset) = clock();
    let store = Faulty::default();
    let oauth = ContentstackOAuth::new(client(), region, store.clone()).with_clock(clock);
    let installation = oauth.exchange("good-code", None, None).await.unwrap();
    offset.store(60, Ordering::SeqCst);
    store.replace_fails.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(
            oauth.access_token(&installation).await.unwrap().expose(),
            "at-2",
            "the refreshed token, kept in memory while the store fails"
        );
    }
    store.replace_fails.store(false, Ordering::SeqCst);
    assert_eq!(
        oauth.access_token(&installation).await.unwrap().expose(),
        "at-2"
    );
    let kept = store.inner.load(&installation).await.unwrap().unwrap();
    assert_eq!(
        kept.access_token.expose(),
        "at-2",
        "written once the store is back"
    );
    assert_eq!(kept.refresh_token.unwrap().expose(), "rt-2");
    assert_eq!(hub.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(hub.invalid_grants.load(Ordering::SeqCst), 0);
}

/// Instance A refreshes and stalls before saving; its lock lapses, and instance B refreshes
/// with the same (now spent) token and meets `invalid_grant`. B must not forget the
/// installation: A's save then lands, and both go on without a reinstall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_refused_with_invalid_grant_never_forgets_a_set_another_is_saving() {
    let (region, hub) = developer_hub(100).await;
    let (clock, offset) = clock();
    let shared = Arc::new(MemoryTokenStore::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let a_store = Faulty {
        inner: Arc::clone(&shared),
        replace_waits: Some(Arc::clone(&gate)),
        ..Faulty::default()
    };
    let b_store = Faulty {
        inner: Arc::clone(&shared),
        lock_always: true,
        ..Faulty::default()
    };
    let a = ContentstackOAuth::new(client(), region.clone(), a_store).with_clock(clock.clone());
    let b = ContentstackOAuth::new(client(), region, b_store).with_clock(clock);
    let installation = a.exchange("good-code", None, None).await.unwrap();
    offset.store(60, Ordering::SeqCst);
    let stalled = tokio::spawn({
        let (a, installation) = (a.clone(), installation.clone());
        async move { a.access_token(&installation).await }
    });
    while hub.refreshes.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = b.access_token(&installation).await.unwrap_err();
    assert_eq!(refused.kind(), OAuthErrorKind::NotAuthorized);
    assert_eq!(hub.invalid_grants.load(Ordering::SeqCst), 1);
    gate.add_permits(100);
    assert_eq!(
        stalled.await.unwrap().unwrap().expose(),
        "at-2",
        "A's save landed"
    );
    assert_eq!(
        b.access_token(&installation).await.unwrap().expose(),
        "at-2",
        "B uses it: no reinstall"
    );
}

/// An uninstall event carries Contentstack's time; the authorization it is compared with is
/// timed by Contentstack's clock too (the token endpoint's `Date`), never this host's: a host
/// whose clock is an hour ahead would otherwise keep the tokens past every uninstall of that
/// hour. Refreshes keep the authorization's time.
#[tokio::test]
async fn an_authorization_is_timed_by_contentstacks_clock_not_this_hosts() {
    let (region, _hub) = developer_hub(100).await;
    let (clock, offset) = clock();
    offset.store(3_600, Ordering::SeqCst);
    let store = Arc::new(MemoryTokenStore::new());
    let oauth = ContentstackOAuth::new(client(), region, Arc::clone(&store)).with_clock(clock);
    let before = SystemTime::now() - Duration::from_secs(1);
    let installation = oauth.exchange("good-code", None, None).await.unwrap();
    let after = SystemTime::now() + Duration::from_secs(1);
    let authorized_at = store
        .load(&installation)
        .await
        .unwrap()
        .unwrap()
        .authorized_at;
    assert!(
        before <= authorized_at && authorized_at <= after,
        "the hub's Date, not the host's clock an hour ahead"
    );
    offset.store(3_600 + 60, Ordering::SeqCst);
    assert_eq!(
        oauth.access_token(&installation).await.unwrap().expose(),
        "at-2"
    );
    assert_eq!(
        store
            .load(&installation)
            .await
            .unwrap()
            .unwrap()
            .authorized_at,
        authorized_at,
        "a refresh keeps it"
    );
}
