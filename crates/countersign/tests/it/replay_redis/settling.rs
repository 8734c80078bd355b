//! Settling: a failed done mark, spent app-tokens

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_mark_that_fails_after_a_2xx_is_retried_and_never_blocks_the_delivery() {
    let redis = RedisServer::start().await;
    let proxy = Arc::new(LossyProxy::start(redis.port).await);
    let handled = Arc::new(AtomicUsize::new(0));
    let (counter, trigger) = (handled.clone(), proxy.clone());
    // The handler succeeds, and the command after it (the "done" mark) is lost on the way.
    let handler = post(move || {
        let (counter, trigger) = (counter.clone(), trigger.clone());
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            trigger.drop_request.store(true, Ordering::SeqCst);
            "handled"
        }
    });
    // A lease far longer than the test: only the retried mark can settle the delivery.
    let layers = ServiceBuilder::new()
        .layer(ContentstackWebhookLayer::new(
            WebhookVerifier::new(),
            StaticKeys::parse(PUBLIC_A).unwrap(),
        ))
        .layer(
            ReplayGuardLayer::new(RedisStore::new(&proxy.url()).unwrap())
                .with_lease(Duration::from_secs(60)),
        );
    let url = format!(
        "http://{}/hook",
        serve(Router::new().route("/hook", handler.layer(layers))).await
    );
    let delivery = delivery();
    assert_eq!(
        send(&url, &delivery).await.status(),
        200,
        "the handler's answer stands"
    );
    assert!(
        !proxy.drop_request.load(Ordering::SeqCst),
        "the mark was really lost"
    );

    // Within a second or two the background retry marks it done: a replay is a duplicate, not
    // a 409 for the lease (or the window) and not handled again.
    let mut answers = Vec::new();
    for _ in 0..40 {
        let replay = send(&url, &delivery).await;
        let duplicate = replay.headers().get("x-countersign-replay").is_some();
        answers.push(replay.status().as_u16());
        if duplicate {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answers.last(), Some(&200), "{answers:?}");
    assert!(answers.len() < 40, "marked done by the retry: {answers:?}");
    assert_eq!(handled.load(Ordering::SeqCst), 1, "{answers:?}");
}

#[tokio::test]
async fn app_tokens_are_spent_once_across_a_fleet_and_refused_while_redis_is_down() {
    use countersign::contentstack::session::{AppTokenLayer, SessionKey, Sessions};
    use countersign::contentstack::{AppTokenVerifier, SigningKey, mint_app_token};
    let mut redis = RedisServer::start().await;
    let instance = || async {
        let sessions = Sessions::new([SessionKey::new([3u8; 32]).unwrap()]);
        let layer = AppTokenLayer::new(
            AppTokenVerifier::new(),
            StaticKeys::parse(PUBLIC_A).unwrap(),
            sessions,
        )
        .with_single_use(RedisStore::new(&redis.url()).unwrap());
        let app = Router::new().route("/ui", axum::routing::get(|| async { "page" }).layer(layer));
        format!("http://{}", serve(app).await)
    };
    let (a, b) = (instance().await, instance().await);
    let token = |jti: &str| {
        let claims = serde_json::json!({
            "app_uid": "app1", "installation_uid": "i", "organization_uid": "o",
            "user_uid": "u", "stack_api_key": "bltA", "jti": jti,
        });
        let key = SigningKey::from_pem(PRIVATE_A).unwrap();
        mint_app_token(
            &key,
            &claims,
            std::time::SystemTime::now(),
            Duration::from_secs(300),
        )
        .unwrap()
    };
    let load =
        |base: &str, token: &str| client().get(format!("{base}/ui?app-token={token}")).send();

    let first = token("first");
    assert_eq!(load(&a, &first).await.unwrap().status(), 200);
    // The other instance knows it is spent.
    let (status, p) = problem(load(&b, &first).await.unwrap()).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (401, Some("app_token_reused"))
    );

    redis.stop();
    let response = load(&b, &token("second")).await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let (status, p) = problem(response).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (503, Some("store_unavailable"))
    );
}
