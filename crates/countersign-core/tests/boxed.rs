//! A boxed key source and a boxed replay store behave as what they box.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::sync::Arc;
use std::time::Duration;

use countersign_core::contentstack::{BoxKeySource, KeySet, KeySource, NoKeys, StaticKeys};
use countersign_core::replay::{BoxReplayStore, Claim, MemoryStore, Owner, ReplayKey, ReplayStore};

const PUBLIC_A: &str = include_str!("data/keys/contentstack-a.public.pem");

#[tokio::test]
async fn a_boxed_store_claims_renews_completes_and_releases_as_the_store_does() {
    let inner = Arc::new(MemoryStore::new(10).with_tenant_share(10));
    let store = BoxReplayStore::new(Arc::clone(&inner));
    let (a, b) = (Owner::random(), Owner::random());
    let key = ReplayKey::from_bytes([7; 32]);
    let lease = Duration::from_secs(3);
    assert_eq!(store.claim(&key, &a, lease).await.unwrap(), Claim::Claimed);
    assert_eq!(
        store.clone().claim(&key, &b, lease).await.unwrap(),
        Claim::InFlight
    );
    assert!(store.renew(&key, &a, lease).await.unwrap());
    assert!(!store.renew(&key, &b, lease).await.unwrap());
    store
        .complete(&key, &a, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.claim(&key, &b, lease).await.unwrap(), Claim::Done);
    assert_eq!(inner.len(), 1, "the boxed store is the store");
    let other = ReplayKey::from_bytes([8; 32]);
    store.claim(&other, &a, lease).await.unwrap();
    store.release(&other, &a).await.unwrap();
    assert_eq!(
        store.claim(&other, &b, lease).await.unwrap(),
        Claim::Claimed
    );
    assert!(!store.fail_open());
}

#[tokio::test]
async fn a_boxed_key_source_gives_what_it_boxes() {
    let keys = BoxKeySource::new(StaticKeys::parse(PUBLIC_A).unwrap());
    let set: Arc<KeySet> = keys.keys().await.unwrap();
    assert_eq!(set.len(), 1);
    assert!(
        keys.refresh(&set).await.is_none(),
        "a static source has nothing newer"
    );
    assert!(BoxKeySource::new(NoKeys).keys().await.is_err());
}
