//! The durable inbox's integration tests, one binary: over SQLite, behind real verification
//! layers on a real HTTP server (`inbox`), and at its edges (`edges`: late drains, lost leases,
//! outcomes after a lapse), and between tenants (`tenants`). PostgreSQL's are among the workspace's end-to-end tests
//! (`tests/tests/it/inbox_postgres.rs`), with a throwaway cluster.

#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::net::SocketAddr;

use axum::Router;

mod edges;
mod group;
mod inbox;
mod reconcile;
mod tenants;

/// Serves `app` on a free loopback port with the peer address available.
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// A client that never goes through a proxy.
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}
