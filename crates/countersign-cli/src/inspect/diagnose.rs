//! The checks of `inspect`: the core's verifiers, run as the layers run them and then again
//! under changed assumptions (another path prefix, another body, no freshness) to name what
//! most likely broke the signature.

use std::time::{Duration, SystemTime};

use countersign_core::contentful::{self, RequestVerifier, SigningSecret};
use countersign_core::contentstack::{
    self, HmacSecret, KeySet, VerifiedBy, WebhookVerifier, json_reencode,
};
use http::HeaderMap;

use super::http::Captured;
use super::{InspectArgs, Report};
use crate::common::{Failure, Outcome};

/// Path prefixes proxies commonly strip, tried when a signature fails.
const COMMON_PREFIXES: [&str; 8] = [
    "/api",
    "/app",
    "/apps",
    "/webhooks",
    "/hooks",
    "/v1",
    "/functions",
    "/.netlify/functions",
];

fn seconds_between(signed_at: SystemTime, now: SystemTime) -> String {
    match now.duration_since(signed_at) {
        Ok(age) => format!("{:.1} s old", age.as_secs_f64()),
        Err(ahead) => format!("{:.1} s in the future", ahead.duration().as_secs_f64()),
    }
}

pub(super) fn contentful(
    args: &InspectArgs,
    request: &Captured,
    now: SystemTime,
    report: &mut Report,
) -> Outcome {
    let secrets = args
        .contentful_secret
        .iter()
        .map(|s| {
            SigningSecret::new(s.trim()).map_err(|e| Failure::input(format!("invalid secret: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let verifier = RequestVerifier::with_secrets(secrets)
        .map_err(Failure::input)?
        .with_ttl(Duration::from_secs(args.ttl));
    for header in [
        contentful::SIGNATURE,
        contentful::SIGNED_HEADERS,
        contentful::TIMESTAMP,
    ] {
        report.check(
            "header",
            request.headers.contains_key(header),
            format!("{header} {}", present(&request.headers, header)),
        );
    }
    let verify = |verifier: &RequestVerifier, target: &str, body: &[u8], prefix: Option<&str>| {
        verifier.diagnose().verify_parts_with_prefix(
            &request.method,
            target,
            &request.headers,
            body,
            now,
            prefix,
        )
    };
    match verify(&verifier, &request.target, &request.body, None) {
        Ok(verified) => {
            report.check(
                "signature",
                true,
                format!(
                    "matches secret #{} of {}",
                    verified.secret_index() + 1,
                    verifier.secret_count()
                ),
            );
            report.check(
                "timestamp",
                true,
                format!(
                    "signed {} (TTL {} s)",
                    seconds_between(verified.timestamp(), now),
                    args.ttl
                ),
            );
            report.check("delivery", true, delivery(verified.replay_key()));
            return Ok(());
        }
        Err(error) => {
            report.check("verification", false, error.to_string());
            report.rejected = Some((error.kind().code(), error.message().to_owned()));
            if matches!(
                error.kind(),
                contentful::ErrorKind::MissingSignature
                    | contentful::ErrorKind::MalformedSignature
                    | contentful::ErrorKind::MissingTimestamp
                    | contentful::ErrorKind::MalformedTimestamp
                    | contentful::ErrorKind::MissingSignedHeaders
            ) {
                report.causes.push("the request lacks Contentful's signature headers or they are malformed: is it signed at all?".into());
                return Ok(());
            }
        }
    }
    // From here on the time is not the question: find what makes the signature match.
    let timeless = verifier
        .clone()
        .with_ttl(Duration::ZERO)
        .with_future_skew(Duration::from_secs(u64::from(u32::MAX)));
    if let Ok(verified) = verify(&timeless, &request.target, &request.body, None) {
        report.check(
            "signature",
            true,
            format!("matches secret #{}", verified.secret_index() + 1),
        );
        report.causes.push(format!(
            "the signature is valid, but the request was signed {} and the TTL is {} s: a skewed clock or a delayed delivery",
            seconds_between(verified.timestamp(), now),
            args.ttl
        ));
        return Ok(());
    }
    let forwarded = request
        .headers
        .get(countersign_core::contentful::FORWARDED_PREFIX)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    for prefix in forwarded.iter().map(String::as_str).chain(COMMON_PREFIXES) {
        if verify(&timeless, &request.target, &request.body, Some(prefix)).is_ok() {
            report.causes.push(format!("verifies when the path prefix {prefix} is added: your proxy strips it (configure the prefix)"));
            return Ok(());
        }
    }
    let path = request.target.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for cut in 1..segments.len() {
        let stripped = format!(
            "/{}{}",
            segments[cut..].join("/"),
            &request.target[path.len()..]
        );
        if verify(&timeless, &stripped, &request.body, None).is_ok() {
            let added = format!("/{}", segments[..cut].join("/"));
            report.causes.push(format!(
                "verifies when {added} is removed from the path: something in front adds it"
            ));
            return Ok(());
        }
    }
    if request.target.contains('?') && verify(&timeless, path, &request.body, None).is_ok() {
        report.causes.push("verifies without the query string: the query was added after signing, or the signer left it out".into());
        return Ok(());
    }
    for original in ["x-original-uri", "x-forwarded-uri", "x-original-url"] {
        if let Some(target) = request.headers.get(original).and_then(|v| v.to_str().ok())
            && verify(&timeless, target, &request.body, None).is_ok()
        {
            report.causes.push(format!("verifies with the target in {original} ({target}): the query or path was rewritten on the way"));
            return Ok(());
        }
    }
    body_causes(report, &request.body, |body| {
        verify(&timeless, &request.target, body, None).is_ok()
    });
    if report.causes.is_empty() {
        report.causes.push(
            "the signature matches no secret for this method, path, signed headers and body: it was made with a different \
             secret, or over a different request"
                .into(),
        );
    }
    Ok(())
}

/// Names what was done to the body when a variation of it verifies.
fn body_causes(report: &mut Report, body: &[u8], verifies: impl Fn(&[u8]) -> bool) {
    if let Some(canonical) = json_reencode(body).filter(|c| c != body)
        && verifies(&canonical)
    {
        report.causes.push("verifies only after JSON re-serialization: something re-encoded the body (pretty-printing, key order, numbers)".into());
        return;
    }
    let trimmed = body.trim_ascii_end();
    if trimmed.len() != body.len() && verifies(trimmed) {
        report.causes.push("verifies without the trailing whitespace or newline: something appended it to the body".into());
    }
}

pub(super) fn contentstack(
    args: &InspectArgs,
    request: &Captured,
    now: SystemTime,
    keys: Option<&KeySet>,
    report: &mut Report,
) -> Outcome {
    let mut verifier = WebhookVerifier::new().with_tolerance(Duration::from_secs(args.tolerance));
    if keys.is_none() {
        verifier = verifier.with_rsa(false);
        for secret in &args.contentstack_hmac_secret {
            verifier = verifier.with_hmac_secret(HmacSecret::new(secret).map_err(Failure::input)?);
        }
    }
    for header in [
        contentstack::RSA_SIGNATURE_HEADER,
        contentstack::HMAC_SIGNATURE_HEADER,
    ] {
        report.check(
            "header",
            request.headers.contains_key(header),
            format!("{header} {}", present(&request.headers, header)),
        );
    }
    match verifier
        .diagnose()
        .verify_with_keys(&request.headers, &request.body, keys, now)
    {
        Ok(verified) => {
            report.check("signature", true, describe(verified.verified_by()));
            report.check(
                "signed time",
                true,
                format!(
                    "{} (tolerance {} s)",
                    seconds_between(verified.signed_at(), now),
                    args.tolerance
                ),
            );
            report.check("delivery", true, delivery(verified.replay_key()));
            return Ok(());
        }
        Err(error) => {
            report.check("verification", false, error.to_string());
            report.rejected = Some((error.kind().code(), error.message().to_owned()));
            match error.kind() {
                contentstack::ErrorKind::Expired | contentstack::ErrorKind::TimestampInFuture => {
                    report.causes.push(format!(
                        "the signature is valid, but {}: a skewed clock, a delayed delivery, or a replay",
                        error.message()
                    ));
                    return Ok(());
                }
                contentstack::ErrorKind::SignatureMismatch => {}
                _ => return Ok(()),
            }
        }
    }
    let fallback = verifier
        .clone()
        .with_json_fallback(true)
        .with_tolerance(Duration::from_secs(u64::from(u32::MAX)));
    body_causes(report, &request.body, |body| {
        let strict = verifier
            .clone()
            .with_tolerance(Duration::from_secs(u64::from(u32::MAX)));
        if body == request.body.as_slice() {
            return false;
        }
        strict
            .diagnose()
            .verify_with_keys(&request.headers, body, keys, now)
            .is_ok()
            || fallback
                .diagnose()
                .verify_with_keys(&request.headers, body, keys, now)
                .is_ok()
    });
    if report.causes.is_empty() {
        report.causes.push(
            "the signature covers a different body, or was made with another key or secret".into(),
        );
    }
    Ok(())
}

/// The delivery id a replay guard and the handler's `DeliveryId` see: the same for every
/// retry of the delivery, however it was signed.
fn delivery(key: countersign_core::replay::ReplayKey) -> String {
    format!("id {key} (every retry of this delivery has it)")
}

fn describe(verified_by: &VerifiedBy) -> String {
    match verified_by {
        VerifiedBy::Rsa {
            key_index,
            key_fingerprint,
            element,
            salt,
        } => format!(
            "RSA-PSS, key #{} ({key_fingerprint}), v1 element #{}, salt length {salt}",
            key_index + 1,
            element + 1
        ),
        VerifiedBy::Hmac {
            secret_index,
            element,
        } => format!(
            "HMAC, secret #{}, v1 element #{}",
            secret_index + 1,
            element + 1
        ),
        _ => "verified".to_owned(),
    }
}

fn present(headers: &HeaderMap, name: &str) -> &'static str {
    if headers.contains_key(name) {
        "present"
    } else {
        "absent"
    }
}
