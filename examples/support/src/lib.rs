//! What both example backends share: the production middleware around their routes, and an
//! accept loop that bounds what a client can hold open.
//!
//! - [`harden`]: tower-http's request tracing (headers printed, the sensitive ones redacted),
//!   a handler timeout that answers before Contentstack gives up on a webhook (30 s), and panics
//!   caught and answered 500.
//! - [`serve`]: a header-read timeout (a client that trickles its head is cut off), a limit
//!   on concurrent connections and a share of it per client address, which `axum::serve` does
//!   not offer, with graceful shutdown.
//! - [`tenant_secrets`] and [`replay_memory`]: the settings both examples read the same way.
//! - [`private_dir`] and [`write_private`]: keys, secrets and databases readable by this user
//!   only.
//! - [`postgres`]: PostgreSQL for a fleet of instances (a pool, migrations, bounded operations).

pub mod inbox;
pub mod postgres;
pub mod sealed;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http::{HeaderName, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, TraceLayer};

/// How long a handler may run: Contentstack gives up on a webhook after 30 s, so the answer
/// (503, which it retries) comes before.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(25);
/// How long a client may take to send a request's head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections are served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// How many of them one client address may hold: a quarter, so that one client cannot take
/// every slot. Behind a reverse proxy every connection comes from the proxy: raise it there.
pub const MAX_CONNECTIONS_PER_PEER: usize = MAX_CONNECTIONS / 4;

/// `router` with the production middleware: panics caught (500), the handler timeout (503),
/// and request tracing at debug level whose printed headers redact `sensitive` (the
/// credentials and signatures the app receives).
pub fn harden(router: Router, sensitive: impl IntoIterator<Item = HeaderName>) -> Router {
    let sensitive: Arc<[HeaderName]> = sensitive.into_iter().collect();
    router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            HANDLER_TIMEOUT,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(DefaultMakeSpan::new().include_headers(true)),
        )
        // Outside the trace, so that the trace sees them marked.
        .layer(SetSensitiveRequestHeadersLayer::from_shared(sensitive))
        .layer(CatchPanicLayer::new())
}

/// Serves `router` on `listener` until Ctrl-C, with [`HEADER_READ_TIMEOUT`], at most
/// `max_connections` connections at once and at most `per_peer` of them from one client
/// address (a connection beyond its share is closed at once, and the slot goes to the next
/// client); handlers see the peer as `ConnectInfo<SocketAddr>`. On Ctrl-C it stops accepting
/// and lets open connections finish.
///
/// # Errors
/// When accepting fails for good (the listener is closed).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    per_peer: usize,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let peers = PeerShares::new(per_peer);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.map_err(std::io::Error::other)?,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection that failed before it was accepted (reset, out of descriptors):
                // the next one may be fine.
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(share) = peers.take(client_network(peer.ip())) else {
            tracing::warn!(%peer, per_peer, "a client holds its whole share of the connections; closing its next one");
            continue;
        };
        let service = router
            .clone()
            .layer(axum::Extension(ConnectInfo::<SocketAddr>(peer)))
            .map_request(|request: http::Request<hyper::body::Incoming>| {
                request.map(axum::body::Body::new)
            });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop((share, slot));
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// What counts as one client: an IPv4 address (an IPv4-mapped IPv6 one as its IPv4), or an
/// IPv6 /64 (one host usually holds a whole /64, and may use any address in it).
#[must_use]
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// How many connections each client holds, up to a share.
#[derive(Clone)]
struct PeerShares {
    held: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    share: usize,
}

/// One connection of a client address, given back when dropped.
struct PeerShare {
    peers: PeerShares,
    ip: IpAddr,
}

impl PeerShares {
    fn new(share: usize) -> Self {
        Self {
            held: Arc::default(),
            share: share.max(1),
        }
    }

    /// One more connection of `ip`, unless it holds its whole share.
    fn take(&self, ip: IpAddr) -> Option<PeerShare> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(ip).or_default();
        if *count >= self.share {
            return None;
        }
        *count += 1;
        Some(PeerShare {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerShare {
    fn drop(&mut self) {
        let mut held = self.peers.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// `SPACE_ID=secret` or `API_KEY=secret` pairs, comma-separated, as `(Some(tenant), secret)`;
/// a bare `secret` (or `*=secret`, for a secret that holds `=` itself) is `(None, secret)`, a
/// secret for any tenant. The tenant ends at the first `=`. `None` or an empty list: none.
///
/// # Errors
/// An entry with an empty tenant or secret (the message never repeats a secret).
pub fn tenant_secrets(list: Option<String>) -> Result<Vec<(Option<String>, String)>, String> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(at, entry)| {
            let (tenant, secret) = match entry.split_once('=') {
                Some((tenant, secret)) => (Some(tenant.trim()), secret.trim()),
                None => (None, entry),
            };
            if tenant.is_some_and(str::is_empty) || secret.is_empty() {
                return Err(format!(
                    "entry {} is neither TENANT=secret nor a secret",
                    at + 1
                ));
            }
            let tenant = tenant.filter(|tenant| *tenant != "*");
            Ok((tenant.map(str::to_owned), secret.to_owned()))
        })
        .collect()
}

/// The in-memory replay store of `capacity` entries (`REPLAY_STORE_CAPACITY`), or of
/// countersign's default room ([`countersign::replay::MemoryStore::default`]) when unset.
///
/// # Errors
/// When `capacity` is not a positive number.
pub fn replay_memory(capacity: Option<String>) -> Result<countersign::replay::MemoryStore, String> {
    match capacity {
        None => Ok(countersign::replay::MemoryStore::default()),
        Some(text) => match text.parse::<usize>() {
            Ok(entries) if entries > 0 => Ok(countersign::replay::MemoryStore::new(entries)),
            _ => Err(format!(
                "REPLAY_STORE_CAPACITY must be a positive number of entries, not {text:?}"
            )),
        },
    }
}

/// The database failed or cannot be reached: 503 `storage_unavailable` with `Retry-After: 5`,
/// so that the provider retries the delivery (and a page its call) once it is back. The error
/// goes to the log, never to the answer.
pub fn storage_unavailable(error: &dyn std::fmt::Display) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    tracing::error!(%error, "storage failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(http::header::RETRY_AFTER, "5")],
        axum::Json(serde_json::json!({"status": "unavailable", "code": "storage_unavailable"})),
    )
        .into_response()
}

/// The number of items a page of a list holds: `limit` (1 to 500), 50 when absent. `None`
/// when out of range; answer it [`invalid_page`].
#[must_use]
pub fn page_limit(limit: Option<u32>) -> Option<u32> {
    let limit = limit.unwrap_or(50);
    (1..=500).contains(&limit).then_some(limit)
}

/// The cursor of the page after `items` (their last item's `field`), or `null` when `items`
/// did not fill a page of `limit`: the last page.
#[must_use]
pub fn next_cursor(items: &[serde_json::Value], limit: u32, field: &str) -> serde_json::Value {
    match items.last() {
        Some(last) if items.len() == limit as usize => last[field].clone(),
        _ => serde_json::Value::Null,
    }
}

/// 400 `invalid_page`: a page's `limit` or cursor (`cursor` names it) is not what the list
/// takes.
pub fn invalid_page(cursor: &str) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({
            "status": format!("limit is 1 to 500 and {cursor} a number"),
            "code": "invalid_page",
        })),
    )
        .into_response()
}

/// How often the Prometheus recorder's histogram samples are drained (the exporter's own
/// default).
pub const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// The `/metrics` route, in Prometheus text format: installs the Prometheus recorder as the
/// process's `metrics` recorder the first time (what countersign's layers record appears
/// there), with a thread that drains its histogram samples every [`METRICS_UPKEEP`] whether
/// or not anyone scrapes (without it they pile up, one per verification: the soak found that).
/// The counts hold no secret; still, expose the route only where your scrapers reach it.
pub fn metrics_router() -> Router {
    use axum::response::IntoResponse as _;
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .inspect_err(|error| tracing::error!(%error, "cannot install the metrics recorder"))
                .ok()?;
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start the metrics upkeep; histograms are off");
                return None;
            }
            Some(handle)
        })
        .clone();
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                match handle {
                    Some(handle) => (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                        .into_response(),
                    None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                }
            }
        }),
    )
}

/// Creates `dir` (and its parents) readable by this user only (0700 on Unix): it holds keys,
/// secrets and the database.
///
/// # Errors
/// When the directory cannot be created or its mode set.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(())
}

/// Writes `text` to `path`, readable by this user only (0600 on Unix).
///
/// # Errors
/// When the file cannot be written.
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// The secret kept in `path`, or, when there is no such file, `make()`'s, written there first
/// (0600, created only if still absent: two instances starting at once keep one). A file that
/// exists but cannot be read is an error, never replaced: what was sealed or signed with it
/// stays usable.
///
/// # Errors
/// The file cannot be read or written, or `make` failed.
pub fn kept_secret(
    path: &std::path::Path,
    make: impl FnOnce() -> Result<String, String>,
) -> Result<String, String> {
    use std::io::Write as _;
    let describe = |e: std::io::Error| format!("{}: {e}", path.display());
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(describe(e)),
        Err(_) => {}
    }
    let text = make()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(text.as_bytes()).map_err(describe)?;
            file.sync_all().map_err(describe)?;
            Ok(text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .map_err(describe),
        Err(e) => Err(describe(e)),
    }
}

#[cfg(test)]
mod tests;

/// Now, in whole seconds since the Unix epoch (what the examples' records are stamped with).
#[must_use]
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
