//! [`IpAllowlistLayer`]: only addresses in an allowlist get through (403 otherwise).
//!
//! The client is the socket peer (`ConnectInfo<SocketAddr>`: serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`), unless the peer is a trusted proxy:
//! then the forwarding header is walked from the right past trusted proxies. A forwarding
//! header from an untrusted peer is ignored. A trusted peer's header that cannot be read to
//! an address is refused (400, `forwarding_unreadable`), never resolved to the proxy itself.
//! The resolved address reaches handlers as [`ClientIp`].
//!
//! ```
//! use axum::{Router, routing::post};
//! use countersign::ip::{ForwardedHeader, IpAllowlist};
//! use countersign::IpAllowlistLayer;
//!
//! # fn main() -> Result<(), countersign::ConfigError> {
//! let app: Router = Router::new()
//!     .route("/webhooks/contentstack", post(|| async { "ok" }))
//!     .layer(
//!         IpAllowlistLayer::new(IpAllowlist::new(["203.0.113.0/24", "2001:db8::/32"])?)
//!             .with_trusted_proxies(IpAllowlist::new(["10.0.0.0/8"])?, ForwardedHeader::XForwardedFor),
//!     );
//! # Ok(())
//! # }
//! ```
//!
//! [`IpAllowlist::contentstack_documented`](countersign_core::ip::IpAllowlist::contentstack_documented)
//! holds the addresses Contentstack documents, which it says are subject to change: an opt-in
//! preset, never a replacement for signatures.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use countersign_core::ip::{ForwardedHeader, IpAllowlist, client_ip};
use countersign_core::reason;
use http::Request;

use crate::extract::ClientIp;
use crate::guard::{Guard, GuardLayer, sealed};
use crate::problem::Rejection;

/// Lets only allowlisted client addresses through. See the [module docs](self).
pub type IpAllowlistLayer = GuardLayer<IpGuard>;

/// The check [`IpAllowlistLayer`] runs.
#[derive(Clone, Debug)]
pub struct IpGuard {
    allowed: Arc<IpAllowlist>,
    proxies: Arc<IpAllowlist>,
    header: ForwardedHeader,
}

impl IpAllowlistLayer {
    /// Allows the networks of `allowed`; trusts no proxy.
    #[must_use]
    pub fn new(allowed: IpAllowlist) -> Self {
        Self::from_guard(IpGuard {
            allowed: Arc::new(allowed),
            proxies: Arc::new(IpAllowlist::default()),
            header: ForwardedHeader::default(),
        })
    }

    /// Trusts `proxies` to state the client address in `header`.
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: IpAllowlist, header: ForwardedHeader) -> Self {
        self.guard_mut().proxies = Arc::new(proxies);
        self.guard_mut().header = header;
        self
    }
}

impl sealed::Sealed for IpGuard {}

impl Guard for IpGuard {
    const ASYNC: bool = false;

    fn check_head(&self, request: &mut Request<Body>) -> Result<(), Rejection> {
        let Some(ConnectInfo(peer)) = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .copied()
        else {
            return Err(Rejection::of(
                &reason::CONNECT_INFO_MISSING,
                "IpAllowlistLayer needs the peer address: serve with into_make_service_with_connect_info::<SocketAddr>()",
            ));
        };
        let client = client_ip(peer.ip(), request.headers(), &self.proxies, self.header)
            .map_err(|error| Rejection::of(&reason::FORWARDING_UNREADABLE, error.to_string()))?;
        request.extensions_mut().insert(ClientIp(client));
        if self.allowed.contains(client) {
            Ok(())
        } else {
            Err(Rejection::of(
                &reason::IP_NOT_ALLOWED,
                format!("{client} is not in the allowlist"),
            ))
        }
    }
}
