//! The entry point and the refresh-once key policy

use super::*;

/// A key source that has `stale` keys and, when asked to refresh, `fresh` ones (or none).
struct Rotating {
    stale: std::sync::Arc<KeySet>,
    fresh: Option<std::sync::Arc<KeySet>>,
    refreshes: std::sync::atomic::AtomicUsize,
}

impl countersign_core::contentstack::KeySource for Rotating {
    fn keys(
        &self,
    ) -> impl std::future::Future<
        Output = Result<std::sync::Arc<KeySet>, countersign_core::contentstack::KeyUnavailable>,
    > + Send {
        std::future::ready(Ok(self.stale.clone()))
    }

    fn refresh(
        &self,
        _: &std::sync::Arc<KeySet>,
    ) -> impl std::future::Future<Output = Option<std::sync::Arc<KeySet>>> + Send {
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::ready(self.fresh.clone())
    }
}

fn deliver(
    source: &Rotating,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<countersign_core::Verdict<VerifiedWebhook>, countersign_core::contentstack::Error> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(WebhookVerifier::new().verify(
            headers,
            bytes::Bytes::copy_from_slice(body),
            source,
            &Tenancy::new(),
            now,
        ))
}

#[test]
fn a_signature_by_a_rotated_key_makes_the_source_refresh_once() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    let stale = std::sync::Arc::new(KeySet::parse(PUBLIC_B).unwrap());
    let rotated = Rotating {
        stale: stale.clone(),
        fresh: Some(std::sync::Arc::new(keys_a())),
        refreshes: 0.into(),
    };
    let verdict = deliver(&rotated, &headers, &body, soon()).unwrap();
    assert_eq!(
        rotated.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(verdict.body(), body.as_slice());
    assert_eq!(verdict.tenant(), Some("blt1"));
    assert_eq!(
        verdict.window(),
        Some(DEFAULT_TOLERANCE + Duration::from_secs(60))
    );

    let unchanged = Rotating {
        stale,
        fresh: None,
        refreshes: 0.into(),
    };
    let error = deliver(&unchanged, &headers, &body, soon()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::SignatureMismatch);
    assert_eq!(
        unchanged
            .refreshes
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn a_stale_delivery_does_not_make_the_source_refresh() {
    let body = body();
    let headers = signed(&body, SaltLength::Digest);
    let source = Rotating {
        stale: std::sync::Arc::new(keys_a()),
        fresh: None,
        refreshes: 0.into(),
    };
    let late_by_a_second = at_ms(TRIGGERED_MS) + DEFAULT_TOLERANCE + Duration::from_secs(1);
    let late = deliver(&source, &headers, &body, late_by_a_second).unwrap_err();
    assert_eq!(late.kind(), ErrorKind::Expired);
    assert_eq!(
        source.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn windows_of_any_length_verify_without_overflowing() {
    // Duration::MAX as the tolerance or skew used to overflow the window's sum.
    let verifier = WebhookVerifier::new()
        .with_tolerance(Duration::MAX)
        .with_future_skew(Duration::MAX);
    assert_eq!(
        verifier.acceptance_window(),
        2 * countersign_core::MAX_WINDOW
    );
    let body = body();
    verifier
        .diagnose()
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap();
    // A year late is within a hundred years' tolerance.
    verifier
        .diagnose()
        .verify_with_keys(
            &signed(&body, SaltLength::Digest),
            &body,
            Some(&keys_a()),
            soon() + Duration::from_secs(365 * 24 * 3600),
        )
        .unwrap();
    // An app-token with any leeway: a year past its expiry is within a hundred years'.
    let claims = serde_json::json!({"app_uid": "app-1", "installation_uid": "i", "organization_uid": "o", "user_uid": "u", "stack_api_key": "blt1"});
    let token = countersign_core::contentstack::mint_app_token(
        &signer(KEY_A),
        &claims,
        soon(),
        Duration::from_secs(300),
    )
    .unwrap();
    let claims = countersign_core::contentstack::AppTokenVerifier::new()
        .with_leeway(Duration::MAX)
        .verify(
            &token,
            &keys_a(),
            soon() + Duration::from_secs(365 * 24 * 3600),
        )
        .unwrap();
    assert_eq!(claims.app_uid, "app-1");
}
