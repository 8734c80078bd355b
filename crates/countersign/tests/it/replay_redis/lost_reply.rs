//! A reply lost on the way

use super::*;

/// A TCP proxy in front of Redis that loses one message and cuts the connection: once
/// `armed`, the next reply Redis sends (the command was applied, its answer is lost); once
/// `drop_request`, the next command a client sends (it never reaches Redis).
pub(crate) struct LossyProxy {
    pub(crate) port: u16,
    pub(crate) armed: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) drop_request: Arc<std::sync::atomic::AtomicBool>,
}

impl LossyProxy {
    pub(crate) async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drop_request = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (trigger, request_trigger) = (armed.clone(), drop_request.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let (trigger, request_trigger) = (trigger.clone(), request_trigger.clone());
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = tokio::spawn(async move {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match client_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if request_trigger.swap(false, Ordering::SeqCst) {
                                break; // the command is dropped, and the connection with it
                            }
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if trigger.swap(false, Ordering::SeqCst) {
                            break; // the reply is dropped, and the connection with it
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    upstream.abort();
                });
            }
        });
        Self {
            port,
            armed,
            drop_request,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_is_lost_is_asked_again_and_the_delivery_runs_once() {
    let redis = RedisServer::start().await;
    let proxy = LossyProxy::start(redis.port).await;
    let (handled, failures) = counters();
    let url = instance(
        RedisStore::new(&proxy.url()).unwrap(),
        handled.clone(),
        failures,
        Duration::ZERO,
    )
    .await;
    // Warm up: the connection is up and the scripts are loaded.
    assert_eq!(send(&url, &delivery()).await.status(), 200);

    let delivery = delivery();
    proxy.armed.store(true, Ordering::SeqCst);
    let first = send(&url, &delivery).await;
    assert_eq!(
        first.status(),
        200,
        "the claim was applied, its answer lost; asked again, the store says it is ours"
    );
    assert!(
        !proxy.armed.load(Ordering::SeqCst),
        "a reply was really dropped"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 2);
    let replay = send(&url, &delivery).await;
    assert_eq!(replay.headers()["x-countersign-replay"], "duplicate");
    assert_eq!(handled.load(Ordering::SeqCst), 2);
}
