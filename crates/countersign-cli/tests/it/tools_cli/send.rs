//! send, to a real server

use super::*;

/// A server built with the library: a Contentstack webhook route and a Contentful route.
fn start_server() -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let public = std::fs::read_to_string(format!("{KEYS}/contentstack-a.public.pem")).unwrap();
    let addr = runtime.block_on(async move {
        let app = Router::new()
            .route(
                "/webhooks/contentstack",
                post(|webhook: ContentstackWebhook| async move {
                    format!("accepted {:?}", webhook.event().map(|e| e.to_string()))
                })
                .layer(ContentstackWebhookLayer::new(
                    WebhookVerifier::new(),
                    StaticKeys::parse(&public).unwrap(),
                )),
            )
            .route(
                "/contentful/hook",
                post(|request: ContentfulRequest| async move {
                    format!("accepted space {:?}", request.space_id())
                })
                .layer(ContentfulRequestLayer::new(RequestVerifier::new(
                    SigningSecret::new(SECRET).unwrap(),
                ))),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    (format!("http://{addr}"), runtime)
}

#[test]
fn send_posts_signed_requests_a_real_server_accepts() {
    let (base, _runtime) = start_server();
    let sent = countersign(&[
        "send",
        "contentstack",
        &format!("{base}/webhooks/contentstack"),
        "--private-key",
        &format!("{KEYS}/contentstack-a.private.pem"),
        "--event",
        "unpublish",
        "--body",
        r#"{"entry":{"uid":"b1"}}"#,
    ]);
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}{}",
        stdout(&sent),
        stderr(&sent)
    );
    assert!(stdout(&sent).starts_with("HTTP 200 OK"));
    assert!(stdout(&sent).contains("accepted Some(\"unpublish\")"));

    let sent = countersign(&[
        "send",
        "contentful",
        &format!("{base}/contentful/hook?x=1"),
        "--secret",
        SECRET,
        "--space-id",
        "sp1",
        "--body",
        "{}",
    ]);
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{}{}",
        stdout(&sent),
        stderr(&sent)
    );
    assert!(stdout(&sent).contains("accepted space Some(\"sp1\")"));
}

#[test]
fn send_exits_1_on_a_non_2xx_answer_and_2_when_nothing_answers() {
    let (base, _runtime) = start_server();
    let refused = countersign(&[
        "send",
        "contentstack",
        &format!("{base}/webhooks/contentstack"),
        "--private-key",
        &format!("{KEYS}/contentstack-b.private.pem"),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stdout(&refused).contains("HTTP 401"));
    assert!(stdout(&refused).contains("signature_mismatch"));
    assert!(stderr(&refused).starts_with("request_refused: "));
    let wrong_secret = countersign(&[
        "send",
        "contentful",
        &format!("{base}/contentful/hook"),
        "--secret",
        OTHER,
    ]);
    assert_eq!(wrong_secret.status.code(), Some(1));
    let nobody = countersign(&[
        "send",
        "contentful",
        "http://127.0.0.1:9/x",
        "--secret",
        SECRET,
    ]);
    assert_eq!(nobody.status.code(), Some(2));
}
