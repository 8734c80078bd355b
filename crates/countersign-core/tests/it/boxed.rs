//! A boxed key source, replay store and stack check behave as what they box.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::sync::Arc;
use std::time::Duration;

use countersign_core::contentstack::{
    AnyStack, BoxKeySource, BoxStackCheck, KeySet, KeySource, NoKeys, StackAllowlist, StackCheck,
    StaticKeys, TenantUnavailable, stack_check_fn,
};
use countersign_core::replay::{BoxReplayStore, Claim, MemoryStore, Owner, ReplayKey, ReplayStore};

const PUBLIC_A: &str = include_str!("../data/keys/contentstack-a.public.pem");

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

#[tokio::test]
async fn a_boxed_stack_check_answers_and_accepts_any_as_what_it_boxes() {
    let any = BoxStackCheck::new(AnyStack);
    assert!(
        any.accepts_any(),
        "AnyStack's shortcut passes through the box"
    );
    assert!(any.is_ours("blt-anything").await.unwrap());

    let listed = BoxStackCheck::new(StackAllowlist::new(["blt1"]));
    assert!(!listed.accepts_any());
    assert!(listed.is_ours("blt1").await.unwrap());
    assert!(!listed.is_ours("blt2").await.unwrap());

    let down = BoxStackCheck::new(stack_check_fn(|_: &str| async {
        Err(TenantUnavailable::new("the records cannot be read"))
    }));
    assert_eq!(
        down.is_ours("blt1").await.unwrap_err().to_string(),
        "the records cannot be read"
    );
}

#[tokio::test]
async fn a_tenancy_with_a_boxed_check_refuses_another_stack_and_takes_any_without_one() {
    use countersign_core::contentstack::{
        ErrorKind, SaltLength, SigningKey, Tenancy, WebhookBody, WebhookVerifier,
    };
    let signer =
        SigningKey::from_pem(include_str!("../data/keys/contentstack-a.private.pem")).unwrap();
    let keys = StaticKeys::new(signer.public_key().clone().into());
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_721_897_326);
    let delivery = |stack: &str| {
        let body = WebhookBody::new("entry", "publish")
            .with_api_key(stack)
            .to_bytes(at);
        let mut headers = http::HeaderMap::new();
        let signature = signer.sign_webhook(&body, SaltLength::Digest).unwrap();
        headers.insert(
            "x-contentstack-request-signature",
            signature.parse().unwrap(),
        );
        (headers, bytes::Bytes::from(body))
    };
    let verifier = WebhookVerifier::new();
    let ours = Tenancy::new().with_stacks(BoxStackCheck::new(StackAllowlist::new(["blt1"])));
    let (headers, body) = delivery("blt2");
    let refused = verifier
        .verify(&headers, body, &keys, &ours, at)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::StackNotAllowed);
    let (headers, body) = delivery("blt1");
    assert!(
        verifier
            .verify(&headers, body, &keys, &ours, at)
            .await
            .is_ok()
    );

    let anyone = Tenancy::new().with_stacks(BoxStackCheck::new(AnyStack));
    let unnamed = WebhookBody::new("entry", "publish").to_bytes(at);
    let mut headers = http::HeaderMap::new();
    let signature = signer.sign_webhook(&unnamed, SaltLength::Digest).unwrap();
    headers.insert(
        "x-contentstack-request-signature",
        signature.parse().unwrap(),
    );
    assert!(
        verifier
            .verify(&headers, unnamed.into(), &keys, &anyone, at)
            .await
            .is_ok(),
        "a boxed AnyStack still takes a delivery that names no stack"
    );
}
