//! `verifyRequest`: what an app backend does when a signed request arrives.
//!
//! - [`verifier`]: the settings, the entry point, the checks in order;
//! - [`received`]: the request's headers as Node.js hands them to the toolkit, and the
//!   signature, list and timestamp read from them;
//! - [`verified`]: what a verified request proved, its tenant and its replay key.

mod received;
mod verified;
mod verifier;

use std::time::Duration;

pub use verified::VerifiedRequest;
pub use verifier::{RequestVerifier, recorded_webhook, validate_path_prefix};

/// The header a reverse proxy that strips a path prefix names it in.
pub const FORWARDED_PREFIX: &str = "x-forwarded-prefix";

/// The toolkit's default time-to-live of a signature: 30 seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// How far ahead of our clock a timestamp may be by default: 60 seconds.
pub const DEFAULT_FUTURE_SKEW: Duration = Duration::from_secs(60);

/// The toolkit refuses timestamps at or before 2020-01-01T00:00:00Z.
pub(super) const EARLIEST_TIMESTAMP_MS: u64 = 1_577_836_800_000;
