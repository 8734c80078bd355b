//! `countersign inspect`: run every check on a captured request and name the likely cause of a
//! failure.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Args;
use countersign_core::contentful::{self, SigningSecret, Verifier};
use countersign_core::contentstack::{
    self, DEFAULT_TOLERANCE, HmacSecret, KeySet, VerifiedBy, WebhookVerifier, json_reencode,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::json;

use crate::common::{Failure, Outcome, parse_time, print_line, time_or_now};

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

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("verifier").required(true).args(["contentful_secret", "contentstack_key", "contentstack_hmac_secret"])))]
pub(crate) struct InspectArgs {
    /// The raw HTTP/1.1 request as captured: request line, headers, blank line, body.
    #[arg(long, value_name = "FILE")]
    request_file: PathBuf,
    /// Inspect as a Contentful request signed with one of these secrets.
    #[arg(
        long,
        value_name = "S",
        env = "COUNTERSIGN_CONTENTFUL_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    contentful_secret: Vec<String>,
    /// Inspect as a Contentstack RSA-signed webhook: PKCS#1 PEM, SPKI PEM or public-keys.json.
    #[arg(long, value_name = "FILE")]
    contentstack_key: Option<PathBuf>,
    /// Inspect as a Contentstack HMAC-signed webhook with one of these secrets.
    #[arg(
        long,
        value_name = "S",
        env = "COUNTERSIGN_CONTENTSTACK_HMAC_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    contentstack_hmac_secret: Vec<String>,
    /// Contentful's time-to-live in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    ttl: u64,
    /// Contentstack's tolerance in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TOLERANCE.as_secs())]
    tolerance: u64,
    /// The time to judge freshness at (RFC 3339 or Unix milliseconds); the clock's when absent.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    now: Option<SystemTime>,
    /// Print one JSON object instead of the report for people.
    #[arg(long)]
    json: bool,
}

/// A request as captured.
struct Captured {
    method: Method,
    target: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn parse_request(raw: &[u8]) -> Result<Captured, String> {
    let (head, rest) = find_head_end(raw).ok_or("no blank line ends the headers")?;
    let head =
        std::str::from_utf8(head).map_err(|_| "the request line and headers are not text")?;
    let mut lines = head.lines();
    let request_line = lines.next().ok_or("no request line")?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().ok_or("no method")?,
        parts.next().ok_or("no request target")?,
    );
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| format!("{method:?} is not a method"))?;
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("{line:?} is not a header"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} is not a header value"))?;
        headers.append(name, value);
    }
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok())
    {
        rest.get(..length)
            .ok_or("the body is shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Captured {
        method,
        target: target.to_owned(),
        headers,
        body,
    })
}

fn find_head_end(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    for (separator, len) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(at) = raw.windows(len).position(|w| w == separator) {
            return Some((&raw[..at], &raw[at + len..]));
        }
    }
    None
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line does not end")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).ok_or("a chunk is cut short")?);
        rest = rest.get(size + 2..).ok_or("a chunk is cut short")?;
    }
}

/// One check and its outcome.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
    causes: Vec<String>,
    /// The rejection, when the request does not verify.
    rejected: Option<(&'static str, String)>,
}

impl Report {
    fn check(&mut self, name: &'static str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            ok,
            detail: detail.into(),
        });
    }
}

pub(crate) fn run(args: &InspectArgs) -> Outcome {
    let raw = std::fs::read(&args.request_file)
        .map_err(|e| Failure::input(format!("cannot read {}: {e}", args.request_file.display())))?;
    let request = parse_request(&raw).map_err(|e| {
        Failure::input(format!(
            "{} is not an HTTP request: {e}",
            args.request_file.display()
        ))
    })?;
    let now = time_or_now(args.now);
    let mut report = Report::default();
    report.check(
        "request",
        true,
        format!(
            "{} {} ({} header(s), {} body bytes)",
            request.method,
            request.target,
            request.headers.len(),
            request.body.len()
        ),
    );
    if !args.contentful_secret.is_empty() {
        inspect_contentful(args, &request, now, &mut report)?;
    } else if let Some(path) = &args.contentstack_key {
        let keys = KeySet::from_file(path).map_err(Failure::input)?;
        inspect_contentstack(args, &request, now, Some(&keys), &mut report)?;
    } else {
        inspect_contentstack(args, &request, now, None, &mut report)?;
    }
    print_report(&report, args.json)?;
    match report.rejected {
        None => Ok(()),
        Some((code, message)) => Err(Failure::Rejected { code, message }),
    }
}

fn seconds_between(signed_at: SystemTime, now: SystemTime) -> String {
    match now.duration_since(signed_at) {
        Ok(age) => format!("{:.1} s old", age.as_secs_f64()),
        Err(ahead) => format!("{:.1} s in the future", ahead.duration().as_secs_f64()),
    }
}

fn inspect_contentful(
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
    let verifier = Verifier::with_secrets(secrets)
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
    let verify = |verifier: &Verifier, target: &str, body: &[u8], prefix: Option<&str>| {
        verifier.verify_with_prefix(&request.method, target, &request.headers, body, now, prefix)
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
        .get("x-forwarded-prefix")
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

fn inspect_contentstack(
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
    match verifier.verify(&request.headers, &request.body, keys, now) {
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
        strict.verify(&request.headers, body, keys, now).is_ok()
            || fallback.verify(&request.headers, body, keys, now).is_ok()
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

fn print_report(report: &Report, as_json: bool) -> Outcome {
    if as_json {
        let checks: Vec<_> = report
            .checks
            .iter()
            .map(|c| json!({ "check": c.name, "ok": c.ok, "detail": c.detail }))
            .collect();
        let out = json!({
            "verified": report.rejected.is_none(),
            "code": report.rejected.as_ref().map(|(code, _)| *code),
            "checks": checks,
            "likely_causes": report.causes,
        });
        return print_line(&out.to_string());
    }
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let paint = |ok: bool, text: &str| match (color, ok) {
        (false, _) => text.to_owned(),
        (true, true) => format!("\x1b[32m{text}\x1b[0m"),
        (true, false) => format!("\x1b[31m{text}\x1b[0m"),
    };
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for check in &report.checks {
        let mark = paint(check.ok, if check.ok { "ok  " } else { "FAIL" });
        print_line(&format!("{mark}  {:<width$}  {}", check.name, check.detail))?;
    }
    let verdict = match &report.rejected {
        None => paint(true, "verified"),
        Some((code, _)) => paint(false, &format!("rejected: {code}")),
    };
    print_line(&format!("\n{verdict}"))?;
    for cause in &report.causes {
        print_line(&format!("likely cause: {cause}"))?;
    }
    Ok(())
}
