//! Every reason a request is refused, declared once: its stable code, its HTTP status, a short
//! title, and whether the sender should come back later (`Retry-After`).
//!
//! Each error kind of this crate names its [`Reason`] ([`ReasonCode::reason`](crate::ReasonCode::reason)),
//! and the `countersign` crate turns a reason and a message into its one problem+json answer.
//! [`ALL`] lists them, in the order of the tables in the docs.
//!
//! ```
//! use countersign_core::reason;
//! use countersign_core::contentful::ErrorKind;
//!
//! assert_eq!(reason::KEY_UNAVAILABLE.status, http::StatusCode::SERVICE_UNAVAILABLE);
//! assert!(reason::KEY_UNAVAILABLE.retry);
//! assert_eq!(ErrorKind::SignatureMismatch.reason(), &reason::SIGNATURE_MISMATCH);
//! ```

use http::StatusCode;

/// One reason a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Reason {
    /// The stable snake_case code: `signature_mismatch`, `timestamp_expired`, ...
    pub code: &'static str,
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// A short title for people.
    pub title: &'static str,
    /// Whether the refusal is not the sender's fault and it should come back: the answer
    /// carries `Retry-After`.
    pub retry: bool,
}

/// Declares each reason as a constant and lists them all in [`ALL`].
macro_rules! catalogue {
    ($($(#[doc = $doc:literal])* $name:ident = $code:literal, $status:ident, $title:literal $(, $retry:ident)?;)*) => {
        $(
            $(#[doc = $doc])*
            pub const $name: Reason = Reason {
                code: $code,
                status: StatusCode::$status,
                title: $title,
                retry: catalogue!(@retry $($retry)?),
            };
        )*
        /// Every reason, in the order declared.
        pub const ALL: &[Reason] = &[$($name),*];
    };
    (@retry retry) => { true };
    (@retry) => { false };
}

/// Declares an error kind whose every variant names its [`Reason`] in the catalogue, and
/// generates the rest once: the enum (`Debug`, `Clone`, `Copy`, `PartialEq`, `Eq`, `Hash`,
/// `#[non_exhaustive]`), its `const fn reason` and `const fn code`, `Display` (the code) and
/// [`ReasonCode`](crate::ReasonCode), so that `Rejected<Kind>` is its error. As axum-core's
/// `define_rejection!`, a kind is declared in one place.
///
/// ```
/// countersign_core::reason_kind! {
///     /// Why my check refused a request.
///     pub enum MyKind {
///         /// No signature at all.
///         Missing => SIGNATURE_MISSING,
///     }
/// }
/// assert_eq!(MyKind::Missing.code(), "signature_missing");
/// let error = countersign_core::Rejected::new(MyKind::Missing, "no x-my-signature header");
/// assert_eq!(error.to_string(), "signature_missing: no x-my-signature header");
/// ```
#[macro_export]
macro_rules! reason_kind {
    ($(#[doc = $doc:literal])* $vis:vis enum $kind:ident {
        $($(#[doc = $variant_doc:literal])* $variant:ident => $reason:ident,)*
    }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        $vis enum $kind {
            $($(#[doc = $variant_doc])* $variant,)*
        }

        impl $kind {
            /// Why, from the catalogue of reasons: the code, the HTTP status,
            /// the title and whether the sender should come back.
            #[must_use]
            pub const fn reason(self) -> &'static $crate::reason::Reason {
                match self {
                    $(Self::$variant => &$crate::reason::$reason,)*
                }
            }

            /// A stable snake_case code for this kind, for HTTP answers, logs and scripts.
            #[must_use]
            pub const fn code(self) -> &'static str {
                self.reason().code
            }
        }

        impl ::std::fmt::Display for $kind {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.code())
            }
        }

        impl $crate::ReasonCode for $kind {
            fn reason(self) -> &'static $crate::reason::Reason {
                $kind::reason(self)
            }
        }
    };
}

catalogue! {
    // 401: the signature, the time, the credentials.
    /// No signature header.
    SIGNATURE_MISSING = "signature_missing", UNAUTHORIZED, "Signature missing";
    /// Contentstack: a signature of a method the verifier is not set up for (HMAC without a
    /// secret, RSA turned off).
    SIGNATURE_METHOD_NOT_CONFIGURED = "signature_method_not_configured", UNAUTHORIZED, "Signature method not configured";
    /// A signature header that is not of the expected form.
    SIGNATURE_MALFORMED = "signature_malformed", UNAUTHORIZED, "Signature malformed";
    /// A signature that matches no configured key or secret.
    SIGNATURE_MISMATCH = "signature_mismatch", UNAUTHORIZED, "Signature mismatch";
    /// Contentful: no signed-headers list, or one with fewer than two names.
    SIGNED_HEADERS_MISSING = "signed_headers_missing", UNAUTHORIZED, "Signed headers missing";
    /// Contentful: a signed-headers list longer than any signer sends.
    SIGNED_HEADERS_TOO_MANY = "signed_headers_too_many", UNAUTHORIZED, "Too many signed headers";
    /// Contentful: a signed value that could move a boundary of the canonical string.
    SIGNED_HEADER_AMBIGUOUS = "signed_header_ambiguous", UNAUTHORIZED, "Ambiguous signed header";
    /// Contentful: a signed space id and a signed CRN of another space.
    CONTEXT_CONFLICT = "context_conflict", UNAUTHORIZED, "Conflicting signed context";
    /// Contentful: a request target with a second `?`, after which nothing is signed.
    TARGET_UNSIGNED = "target_unsigned", UNAUTHORIZED, "Unsigned request target";
    /// No signed time.
    TIMESTAMP_MISSING = "timestamp_missing", UNAUTHORIZED, "Timestamp missing";
    /// A signed time that is not of the expected form.
    TIMESTAMP_MALFORMED = "timestamp_malformed", UNAUTHORIZED, "Timestamp malformed";
    /// A signed time older than the tolerance or time-to-live.
    TIMESTAMP_EXPIRED = "timestamp_expired", UNAUTHORIZED, "Timestamp expired";
    /// A signed time further ahead than the allowed clock skew.
    TIMESTAMP_IN_FUTURE = "timestamp_in_future", UNAUTHORIZED, "Timestamp in the future";
    /// No `Authorization: Basic`.
    BASIC_AUTH_MISSING = "basic_auth_missing", UNAUTHORIZED, "Bad credentials";
    /// An `Authorization` header that is not Basic credentials.
    BASIC_AUTH_MALFORMED = "basic_auth_malformed", UNAUTHORIZED, "Bad credentials";
    /// Basic credentials that match no configured pair.
    BASIC_AUTH_MISMATCH = "basic_auth_mismatch", UNAUTHORIZED, "Bad credentials";
    /// A required custom header is missing.
    HEADER_MISSING = "header_missing", UNAUTHORIZED, "Required header missing or wrong";
    /// A required custom header has another value.
    HEADER_MISMATCH = "header_mismatch", UNAUTHORIZED, "Required header missing or wrong";
    /// No `app-token` in the page load's query.
    APP_TOKEN_MISSING = "app_token_missing", UNAUTHORIZED, "App-token not verified";
    /// An `app-token` that is no JWT of the expected form.
    APP_TOKEN_MALFORMED = "app_token_malformed", UNAUTHORIZED, "App-token not verified";
    /// An `app-token` whose signature matches no key.
    APP_TOKEN_SIGNATURE_MISMATCH = "app_token_signature_mismatch", UNAUTHORIZED, "App-token not verified";
    /// An `app-token` of another algorithm than RS256.
    APP_TOKEN_ALGORITHM_NOT_ALLOWED = "app_token_algorithm_not_allowed", UNAUTHORIZED, "App-token not verified";
    /// An `app-token` past its `exp`.
    APP_TOKEN_EXPIRED = "app_token_expired", UNAUTHORIZED, "App-token not verified";
    /// An `app-token` before its `nbf`.
    APP_TOKEN_NOT_YET_VALID = "app_token_not_yet_valid", UNAUTHORIZED, "App-token not verified";
    /// A single-use `app-token` that opened a session already.
    APP_TOKEN_REUSED = "app_token_reused", UNAUTHORIZED, "App-token not verified";
    /// No session token.
    SESSION_MISSING = "session_missing", UNAUTHORIZED, "Session not valid";
    /// A session token that is no session of this app.
    SESSION_MALFORMED = "session_malformed", UNAUTHORIZED, "Session not valid";
    /// A session token signed by no configured session key (a raw app-token, say).
    SESSION_UNKNOWN_KEY = "session_unknown_key", UNAUTHORIZED, "Session not valid";
    /// A session token whose signature does not match.
    SESSION_TAMPERED = "session_tampered", UNAUTHORIZED, "Session not valid";
    /// A session past its expiry.
    SESSION_EXPIRED = "session_expired", UNAUTHORIZED, "Session not valid";

    // 403: authentic, but not for this route, this app or this tenant; or an address.
    /// A client address outside the allowlist.
    IP_NOT_ALLOWED = "ip_not_allowed", FORBIDDEN, "Address not allowed";
    /// A state-changing call in cookie mode without the session's CSRF token.
    CSRF_TOKEN_MISMATCH = "csrf_token_mismatch", FORBIDDEN, "Session not valid";
    /// A session of another stack than the route names.
    TENANT_MISMATCH = "tenant_mismatch", FORBIDDEN, "Not this session's stack";
    /// A Contentstack delivery of a stack that is not one of this app's.
    STACK_NOT_ALLOWED = "stack_not_allowed", FORBIDDEN, "Not one of this app's stacks";
    /// A Contentstack installation event of another app.
    APP_UID_MISMATCH = "app_uid_mismatch", FORBIDDEN, "Not for this app";
    /// A Contentstack installation event signed with a stack's HMAC secret, which the stack's
    /// admins hold: only the Marketplace's RSA signature makes one.
    INSTALLATION_EVENT_NOT_RSA = "installation_event_not_rsa", FORBIDDEN, "Installation event not trusted";
    /// An `app-token` of another app.
    APP_TOKEN_APP_MISMATCH = "app_token_app_mismatch", FORBIDDEN, "App-token not verified";
    /// A session of another app.
    SESSION_APP_MISMATCH = "session_app_mismatch", FORBIDDEN, "Session not valid";
    /// Contentful: an authentic request of a kind the route does not take.
    REQUEST_KIND_NOT_ALLOWED = "request_kind_not_allowed", FORBIDDEN, "Request kind not allowed here";

    // The body and the request's shape.
    /// The body could not be read.
    BODY_UNREADABLE = "body_unreadable", BAD_REQUEST, "Body unreadable";
    /// A trusted proxy's forwarding header names no client.
    FORWARDING_UNREADABLE = "forwarding_unreadable", BAD_REQUEST, "Client address unreadable";
    /// The body did not arrive within the read timeout.
    BODY_TIMEOUT = "body_timeout", REQUEST_TIMEOUT, "Request timeout";
    /// The delivery is being handled now, by another owner.
    REQUEST_IN_FLIGHT = "request_in_flight", CONFLICT, "Request in flight", retry;
    /// The body is larger than the limit.
    PAYLOAD_TOO_LARGE = "payload_too_large", PAYLOAD_TOO_LARGE, "Payload too large";
    /// A Contentstack webhook's `data` does not deserialize into the handler's type.
    WEBHOOK_DATA_INVALID = "webhook_data_invalid", UNPROCESSABLE_ENTITY, "Webhook data not as expected";
    /// AWS Lambda: the event keeps the query only as a map (REST API v1, ALB) or does not say
    /// which path its sender called, so the signed request target cannot be rebuilt.
    LAMBDA_QUERY_LOST = "lambda_query_lost", BAD_REQUEST, "Signed request target lost in the Lambda event";
    /// AWS Lambda: the event's path is not a request target (a `#`, a control character).
    LAMBDA_TARGET_INVALID = "lambda_target_invalid", BAD_REQUEST, "Lambda event's request target unusable";
    /// AWS Lambda: the request target is not under the stage or base path the function's routes
    /// are served under: another entry point's request, never verified without its prefix.
    LAMBDA_PREFIX_MISSING = "lambda_prefix_missing", NOT_FOUND, "Request target outside the function's prefix";
    /// The delivery's tenant id is one an inbox cannot keep (longer than 255 bytes, or with a
    /// control character).
    INBOX_TENANT_INVALID = "inbox_tenant_invalid", UNPROCESSABLE_ENTITY, "Tenant id not storable";

    // Calling Contentstack as the app (OAuth): why no token could be had.
    /// OAuth: the code or refresh token was used, expired or revoked (`400 invalid_grant`).
    OAUTH_INVALID_GRANT = "oauth_invalid_grant", BAD_REQUEST, "Authorization not granted";
    /// OAuth: a redirect's `location` that is not one of Contentstack's regions.
    OAUTH_INVALID_LOCATION = "oauth_invalid_location", BAD_REQUEST, "Unknown region";
    /// OAuth: the installation has no usable tokens; the app must be authorized (installed)
    /// again.
    OAUTH_NOT_AUTHORIZED = "oauth_not_authorized", FORBIDDEN, "App not authorized for this installation";
    /// OAuth: the token endpoint refused for another reason (client id or secret, redirect
    /// URI), or answered what is not a token set.
    OAUTH_REFUSED = "oauth_refused", BAD_GATEWAY, "Token endpoint refused";
    /// OAuth: Contentstack's Content Management API did not answer a call made as the app.
    CMA_UNAVAILABLE = "cma_unavailable", BAD_GATEWAY, "Content Management API unavailable";
    /// Reconciling: the provider refused to give its records of a webhook (a token without
    /// the right, a webhook it does not know), or answered what is not a record.
    RECORDS_REFUSED = "records_refused", BAD_GATEWAY, "Provider records refused";

    // 500: the server is set up wrong.
    /// An extractor on a route without its layer.
    LAYER_MISSING = "layer_missing", INTERNAL_SERVER_ERROR, "Server misconfigured";
    /// An IP allowlist served without the peer address.
    CONNECT_INFO_MISSING = "connect_info_missing", INTERNAL_SERVER_ERROR, "Server misconfigured";
    /// A replay guard without a verification layer before it.
    REPLAY_IDENTITY_MISSING = "replay_identity_missing", INTERNAL_SERVER_ERROR, "Server misconfigured";
    /// A replay guard behind signatures that never expire.
    REPLAY_WINDOW_UNBOUNDED = "replay_window_unbounded", INTERNAL_SERVER_ERROR, "Server misconfigured";
    /// No session key to mint sessions with.
    SESSION_KEY_MISSING = "session_key_missing", INTERNAL_SERVER_ERROR, "Server misconfigured";
    /// A session that does not fit in a cookie.
    SESSION_COOKIE = "session_cookie", INTERNAL_SERVER_ERROR, "Server misconfigured";
    /// OAuth: a public client exchanging a code without its PKCE verifier.
    OAUTH_MISCONFIGURED = "oauth_misconfigured", INTERNAL_SERVER_ERROR, "Server misconfigured";

    // 503: not the sender's fault; it retries.
    /// No verification key yet.
    KEY_UNAVAILABLE = "key_unavailable", SERVICE_UNAVAILABLE, "Verification key unavailable", retry;
    /// The check of the stack cannot answer now.
    TENANT_CHECK_UNAVAILABLE = "tenant_check_unavailable", SERVICE_UNAVAILABLE, "Tenant check unavailable", retry;
    /// The replay store is full of live entries.
    REPLAY_STORE_FULL = "replay_store_full", SERVICE_UNAVAILABLE, "Replay store full", retry;
    /// The delivery's tenant holds its whole share of the replay store.
    REPLAY_TENANT_FULL = "replay_tenant_full", SERVICE_UNAVAILABLE, "Replay store share used up", retry;
    /// The replay store failed.
    REPLAY_STORE_UNAVAILABLE = "replay_store_unavailable", SERVICE_UNAVAILABLE, "Replay store unavailable", retry;
    /// The spent app-token store cannot be reached.
    STORE_UNAVAILABLE = "store_unavailable", SERVICE_UNAVAILABLE, "App-token store unavailable", retry;
    /// The spent app-token store did not answer in time.
    STORE_TIMEOUT = "store_timeout", SERVICE_UNAVAILABLE, "App-token store unavailable", retry;
    /// The spent app-token store answered something unexpected.
    STORE_PROTOCOL = "store_protocol", SERVICE_UNAVAILABLE, "App-token store unavailable", retry;
    /// The spent app-token store has no room now.
    STORE_FULL = "store_full", SERVICE_UNAVAILABLE, "App-token store full", retry;
    /// The inbox cannot commit the delivery now.
    INBOX_UNAVAILABLE = "inbox_unavailable", SERVICE_UNAVAILABLE, "Inbox unavailable", retry;
    /// The delivery's tenant has its limit of deliveries waiting in the inbox.
    INBOX_TENANT_FULL = "inbox_tenant_full", SERVICE_UNAVAILABLE, "Inbox share used up", retry;
    /// OAuth: the token endpoint cannot answer now (unreachable, 429, 5xx).
    OAUTH_UNAVAILABLE = "oauth_unavailable", SERVICE_UNAVAILABLE, "Token endpoint unavailable", retry;
    /// OAuth: the token store failed.
    OAUTH_STORE_UNAVAILABLE = "oauth_store_unavailable", SERVICE_UNAVAILABLE, "Token store unavailable", retry;
}

#[cfg(test)]
mod tests {
    use super::ALL;

    #[test]
    fn each_code_is_declared_once() {
        let mut codes: Vec<&str> = ALL.iter().map(|reason| reason.code).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), before);
    }

    #[test]
    fn every_server_side_refusal_but_a_misconfiguration_asks_for_a_retry() {
        for reason in ALL {
            let retry_expected = reason.status.as_u16() == 503 || reason.status.as_u16() == 409;
            assert_eq!(reason.retry, retry_expected, "{}", reason.code);
        }
    }
}
