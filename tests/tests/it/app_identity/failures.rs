//! Expiry, rate limits and failures

use super::*;

#[tokio::test]
async fn a_token_is_replaced_before_it_expires_and_kept_per_space_environment() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| e.installed.push((SPACE.into(), "staging".into())));
    let (clock, offset) = shifted_clock();
    let identity = server
        .identity(KEY_A)
        .with_clock(clock)
        .with_refresh_margin(Duration::from_secs(60));
    let first = identity.access_token(SPACE, ENV).await.unwrap();
    let staging = identity.access_token(SPACE, "staging").await.unwrap();
    assert_ne!(first, staging, "one token per space environment");
    assert_eq!(server.received().len(), 2);

    // 530 s later, 70 s are left: still kept.
    *offset.lock().unwrap() = Duration::from_secs(530);
    assert_eq!(identity.access_token(SPACE, ENV).await.unwrap(), first);
    assert_eq!(server.received().len(), 2);
    // 550 s later, 50 s are left, under the margin: replaced.
    *offset.lock().unwrap() = Duration::from_secs(550);
    let second = identity.access_token(SPACE, ENV).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_as_its_reset_header_says() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| {
        e.script.push_back(Script::reset(1));
        e.script.push_back(Script::RateLimited {
            reset: None,
            retry_after: Some("1"),
        });
    });
    let started = Instant::now();
    server
        .identity(KEY_A)
        .access_token(SPACE, ENV)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_bound_is_an_error_that_says_when() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| e.script.push_back(Script::reset(120)));
    let error = server
        .identity(KEY_A)
        .access_token(SPACE, ENV)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), AccessTokenErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(error.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(server.received().len(), 1, "not retried at once");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_up_to_the_bound() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| {
        e.script.push_back(Script::Status(500));
        e.script.push_back(Script::Status(503));
    });
    let identity = server.identity(KEY_A);
    identity.access_token(SPACE, ENV).await.unwrap();
    assert_eq!(server.received().len(), 3, "two failures, then a token");

    let other = server.identity(KEY_A).with_max_attempts(3);
    server.with(|e| {
        e.script.extend([
            Script::Status(502),
            Script::Status(502),
            Script::Status(502),
            Script::Status(502),
        ])
    });
    let error = other.access_token(SPACE, ENV).await.unwrap_err();
    assert_eq!(error.kind(), AccessTokenErrorKind::Unavailable);
    assert_eq!(error.status(), Some(StatusCode::BAD_GATEWAY));
    assert_eq!(server.received().len(), 6, "three attempts, no more");
}

#[tokio::test]
async fn a_refusal_is_final_and_says_why() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    // A key Contentful does not know for the app.
    let error = server
        .identity(KEY_B)
        .access_token(SPACE, ENV)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), AccessTokenErrorKind::Refused);
    assert_eq!(error.status(), Some(StatusCode::FORBIDDEN));
    assert!(
        error.to_string().contains("403") && error.to_string().contains("AccessDenied"),
        "{error}"
    );
    assert_eq!(server.received().len(), 1, "a refusal is not retried");

    // A space environment where the app is not installed.
    let error = server
        .identity(KEY_A)
        .access_token(SPACE, "elsewhere")
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
    assert!(error.to_string().contains("not installed"), "{error}");
}

#[tokio::test]
async fn waiting_callers_share_a_failure_instead_of_asking_again() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    server.with(|e| e.delay = Duration::from_millis(300));
    let identity = server.identity(KEY_B);
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let identity = identity.clone();
            tokio::spawn(async move { identity.access_token(SPACE, ENV).await })
        })
        .collect();
    for call in calls {
        assert_eq!(
            call.await.unwrap().unwrap_err().kind(),
            AccessTokenErrorKind::Refused
        );
    }
    assert_eq!(server.received().len(), 1);
    // A later call tries again.
    identity.access_token(SPACE, ENV).await.unwrap_err();
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn the_last_good_token_serves_while_a_refresh_fails() {
    install_jwt_provider();
    let server = Server::start(&[("key-a", KEY_A)]).await;
    let (clock, offset) = shifted_clock();
    let identity = server
        .identity(KEY_A)
        .with_clock(clock)
        .with_max_attempts(1);
    let token = identity.access_token(SPACE, ENV).await.unwrap();
    server.with(|e| e.script.extend([Script::Status(500), Script::Status(500)]));
    *offset.lock().unwrap() = Duration::from_secs(570);
    assert_eq!(
        identity.access_token(SPACE, ENV).await.unwrap(),
        token,
        "still valid for 30 s"
    );
    *offset.lock().unwrap() = Duration::from_secs(700);
    let error = identity.access_token(SPACE, ENV).await.unwrap_err();
    assert_eq!(
        error.kind(),
        AccessTokenErrorKind::Unavailable,
        "expired: no token to serve"
    );
}

#[tokio::test]
async fn an_unreachable_host_is_unavailable_after_the_attempts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let identity = AppIdentity::new(APP, AppKey::from_pem(KEY_A).unwrap())
        .with_host(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_max_attempts(2);
    let error = identity.access_token(SPACE, ENV).await.unwrap_err();
    assert_eq!(error.kind(), AccessTokenErrorKind::Unavailable);
    assert_eq!(error.status(), None);
    assert!(error.to_string().contains("cannot connect"), "{error}");
}
