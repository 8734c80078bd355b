//! Contentstack: everything this crate does for it, beside the core's wire formats and rules
//! (re-exported here, so that `countersign::contentstack` is the one place to look).
//!
//! | module | what |
//! |---|---|
//! | [`webhook`] | [`ContentstackWebhookLayer`]: a webhook's RSA or HMAC signature, `triggered_at`, this app and its stacks |
//! | [`session`] | signed UI locations: the `app-token`, then the app's own session |
//! | `well_known` | the region's public keys, fetched, cached and refreshed (feature `well-known`) |
//! | `oauth` | OAuth tokens per installation, for calling Contentstack as the app (feature `oauth`) |
//! | [`diagnostic`] | a webhook's verification step by step, for tools that name a cause |

pub use countersign_core::contentstack::*;

#[cfg(feature = "oauth")]
pub mod oauth;
pub mod session;
pub mod webhook;
#[cfg(feature = "well-known")]
pub mod well_known;

pub use webhook::ContentstackWebhookLayer;
