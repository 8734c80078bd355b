//! The token, as the toolkit makes it

use super::*;

#[test]
fn the_one_time_token_is_the_toolkits_byte_for_byte() {
    let key = AppKey::from_pem(KEY_A).unwrap();
    for key_id in [None, Some("key-1")] {
        let iat = 1_700_000_000;
        let ours =
            one_time_token(&key, APP, key_id, UNIX_EPOCH + Duration::from_secs(iat)).unwrap();
        let toolkit = run_node(
            "app-identity.mjs",
            &json!({"mode": "sign", "key": KEY_A, "appId": APP, "keyId": key_id, "iat": iat}),
        );
        assert_eq!(
            toolkit["token"].as_str().unwrap(),
            ours,
            "key id {key_id:?}"
        );
    }
    let (header, claims) = parts(
        &one_time_token(
            &key,
            APP,
            Some("k"),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_999),
        )
        .unwrap(),
    );
    assert_eq!(header, r#"{"alg":"RS256","typ":"JWT","kid":"k"}"#);
    assert_eq!(
        claims,
        format!(r#"{{"iat":1700000000,"exp":1700000600,"iss":"{APP}"}}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_toolkit_and_countersign_send_equivalent_tokens_and_both_get_one() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A), ("key-b", KEY_B)]).await;
    let host = server.url.clone();
    let toolkit = tokio::task::spawn_blocking(move || {
        run_node(
            "app-identity.mjs",
            &json!({"mode": "fetch", "key": KEY_B, "appInstallationId": APP, "spaceId": SPACE,
                    "environmentId": ENV, "keyId": "key-b", "host": host}),
        )
    })
    .await
    .unwrap();
    assert!(
        toolkit["token"].is_string(),
        "the toolkit got no token: {toolkit}"
    );

    let ours = server
        .identity(KEY_B)
        .with_key_id("key-b")
        .unwrap()
        .access_token(SPACE, ENV)
        .await
        .unwrap();
    assert!(ours.expose().contains('.'));

    let received = server.received();
    assert_eq!(received.len(), 2, "one exchange each");
    let (toolkit_header, toolkit_claims) = parts(&received[0]);
    let (our_header, our_claims) = parts(&received[1]);
    assert_eq!(our_header, toolkit_header);
    let (toolkit_claims, our_claims): (Value, Value) = (
        serde_json::from_str(&toolkit_claims).unwrap(),
        serde_json::from_str(&our_claims).unwrap(),
    );
    assert_eq!(our_claims["iss"], toolkit_claims["iss"]);
    let iat = |c: &Value| c["iat"].as_i64().unwrap();
    assert!((iat(&our_claims) - iat(&toolkit_claims)).abs() <= 5);
    for claims in [&our_claims, &toolkit_claims] {
        assert_eq!(claims["exp"].as_i64().unwrap() - iat(claims), 600);
        assert_eq!(
            claims.as_object().unwrap().len(),
            3,
            "iat, exp, iss and nothing else"
        );
    }
}

#[tokio::test]
async fn concurrent_callers_share_one_fetch_and_then_the_cached_token() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| e.delay = Duration::from_millis(300));
    let identity = server.identity(KEY_A);
    let calls = (0..20).map(|_| {
        let identity = identity.clone();
        tokio::spawn(async move { identity.access_token(SPACE, ENV).await })
    });
    let tokens: Vec<_> = futures_join(calls).await;
    assert_eq!(server.received().len(), 1, "one fetch for twenty callers");
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    identity.access_token(SPACE, ENV).await.unwrap();
    assert_eq!(server.received().len(), 1, "the cached token is reused");
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<
        Item = tokio::task::JoinHandle<
            Result<T, countersign::contentful::app_identity::AccessTokenError>,
        >,
    >,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap().unwrap());
    }
    out
}
