//! Contentful: everything this crate does for it, beside the core's wire formats and rules
//! (re-exported here, so that `countersign::contentful` is the one place to look).
//!
//! | module | what |
//! |---|---|
//! | [`request`] | [`ContentfulRequestLayer`]: the request signature of app events, app actions, webhooks and frontend-signed requests |
//! | `app_identity` | access tokens for calling Contentful as the app (feature `app-identity`) |
//! | [`diagnostic`] | a request's verification step by step, for tools that name a cause |

pub use countersign_core::contentful::*;

#[cfg(feature = "app-identity")]
pub mod app_identity;
pub mod request;

pub use request::ContentfulRequestLayer;
