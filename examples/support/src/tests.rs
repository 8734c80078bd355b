//! The middleware and the accept loop, tried.

mod hardening {
    #![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

    use crate::*;
    use axum::body::Body;
    use axum::routing::get;

    fn hardened() -> Router {
        let app = Router::new()
            .route(
                "/panic",
                get(|| async {
                    if std::hint::black_box(true) {
                        panic!("a bug in a handler");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .route(
                "/secret",
                get(|headers: http::HeaderMap| async move {
                    headers["x-hook-token"].is_sensitive().to_string()
                }),
            );
        harden(app, [HeaderName::from_static("x-hook-token")])
    }

    async fn status(path: &str) -> (StatusCode, String) {
        let request = http::Request::get(path)
            .header("x-hook-token", "t")
            .body(Body::empty())
            .unwrap();
        let response = hardened().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500() {
        assert_eq!(status("/panic").await.0, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_handler_is_answered_503_before_contentstack_gives_up() {
        let started = tokio::time::Instant::now();
        assert_eq!(status("/slow").await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(started.elapsed(), HANDLER_TIMEOUT);
    }

    #[tokio::test]
    async fn configured_headers_are_marked_sensitive_for_the_trace() {
        assert_eq!(status("/secret").await, (StatusCode::OK, "true".to_owned()));
    }
}

mod serving {
    #![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

    use crate::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_for_a_free_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(serve(listener, app, 1, 1));
        // The one slot, held by a client that says nothing.
        let idle = tokio::net::TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = tokio::net::TcpStream::connect(address).await.unwrap();
        second
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let early =
            tokio::time::timeout(Duration::from_millis(500), second.read_to_end(&mut answer)).await;
        assert!(early.is_err(), "served beyond the limit");
        // The slot frees: the waiting connection is served.
        drop(idle);
        tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        server.abort();
    }

    /// A connection from `ip` (a loopback address) to `address`.
    async fn connect_from(ip: &str, address: SocketAddr) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket.connect(address).await.unwrap()
    }

    async fn answered(mut stream: tokio::net::TcpStream) -> Vec<u8> {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
        let _ = read.await.unwrap();
        answer
    }

    #[tokio::test]
    async fn one_client_cannot_hold_more_than_its_share_of_the_slots() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(serve(listener, app, 4, 2));
        // A greedy client takes its share with connections that say nothing...
        let _idle = [
            connect_from("127.0.0.2", address).await,
            connect_from("127.0.0.2", address).await,
        ];
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ... and its next one is closed unanswered,
        let beyond = answered(connect_from("127.0.0.2", address).await).await;
        assert!(beyond.is_empty(), "{}", String::from_utf8_lossy(&beyond));
        // while another client is served.
        let other = answered(connect_from("127.0.0.3", address).await).await;
        assert!(
            other.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&other)
        );
        server.abort();
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_network(ip("2001:db8:1:2:aaaa::1")),
            client_network(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            client_network(ip("2001:db8:1:2::1")),
            client_network(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_network(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(client_network(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn tenant_secrets_are_pairs_or_bare_secrets() {
        assert_eq!(
            tenant_secrets(Some(" s1=a , b ,s2=c=d, *=e=".into())).unwrap(),
            [
                (Some("s1".to_owned()), "a".to_owned()),
                (None, "b".to_owned()),
                (Some("s2".to_owned()), "c=d".to_owned()),
                (None, "e=".to_owned()),
            ]
        );
        assert!(tenant_secrets(None).unwrap().is_empty());
        for bad in ["=hunter2", "space=", "a,=hunter2"] {
            let error = tenant_secrets(Some(bad.into())).unwrap_err();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}

mod kept_secret {
    #![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

    #[test]
    fn a_kept_secret_is_made_once_and_never_replaced_when_unreadable() {
        let dir = std::env::temp_dir().join(format!("kept-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::private_dir(&dir).unwrap();
        let path = dir.join("secret");
        let first = crate::kept_secret(&path, || Ok("one".into())).unwrap();
        let again = crate::kept_secret(&path, || Ok("two".into())).unwrap();
        assert_eq!((first.as_str(), again.as_str()), ("one", "one"));
        // Not UTF-8: an error, and the file stays as it was.
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(crate::kept_secret(&path, || Ok("three".into())).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), [0xff, 0xfe]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
