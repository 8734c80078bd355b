//! Properties: whatever we sign verifies, a change to any signed part does not, and no
//! canonical string verifies for two sets of signed headers.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, UNIX_EPOCH};

use countersign_core::contentful::{
    Context, ErrorKind, RequestToSign, RequestVerifier, SigningSecret, canonical_string, sign,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
struct Case {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    context: Context,
    secret: String,
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::GET,
        Method::PATCH,
        Method::HEAD,
        Method::POST,
        Method::DELETE,
        Method::OPTIONS,
        Method::PUT,
    ])
}

fn case() -> impl Strategy<Value = Case> {
    (
        method(),
        // Any text after the leading slash: unicode, `#`, `%`, spaces, and at most one `?` (a
        // second one is refused as an unsigned tail: `contentful_rules.rs`).
        "/[^\u{0}-\u{1f}?]{0,40}(\\?[^\u{0}-\u{1f}?]{0,20})?",
        prop::collection::vec(("x-[a-z0-9-]{1,12}", "[^\\p{C}]{0,24}"), 0..5),
        prop::collection::vec(any::<u8>(), 0..200),
        prop::option::of("[a-zA-Z0-9]{1,20}"),
        prop::option::of("[a-zA-Z0-9_-]{1,20}"),
        prop::option::of("[a-zA-Z0-9]{1,22}"),
        "[0-9a-zA-Z+/=_-]{64}",
    )
        .prop_map(
            |(method, path, headers, body, space_id, environment_id, user_id, secret)| Case {
                method,
                path,
                headers,
                body,
                context: Context {
                    space_id,
                    environment_id,
                    user_id,
                    ..Context::default()
                },
                secret,
            },
        )
}

/// Signs `case` and builds the headers that arrive.
fn signed(case: &Case) -> HeaderMap {
    let secret = SigningSecret::new(case.secret.clone()).unwrap();
    let mut request = RequestToSign::new(case.method.clone(), &case.path).with_body(&case.body);
    for (name, value) in &case.headers {
        request = request.with_header(name, value);
    }
    let out = sign(
        &secret,
        &request,
        UNIX_EPOCH + Duration::from_millis(T0),
        &case.context,
    )
    .unwrap();
    let mut map = HeaderMap::new();
    for (name, value) in &case.headers {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    for (name, value) in out.iter() {
        map.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn verify(
    case: &Case,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ErrorKind> {
    let verifier = RequestVerifier::new(SigningSecret::new(case.secret.clone()).unwrap());
    let now = UNIX_EPOCH + Duration::from_millis(T0 + 500);
    verifier
        .diagnose()
        .verify_parts(method, path, headers, body, now)
        .map(|_| ())
        .map_err(|e| e.kind())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn what_we_sign_verifies(case in case()) {
        let headers = signed(&case);
        prop_assert_eq!(verify(&case, &case.method, &case.path, &headers, &case.body), Ok(()));
    }

    #[test]
    fn a_changed_body_fails(case in case(), extra in any::<u8>()) {
        let headers = signed(&case);
        let mut body = case.body.clone();
        body.push(extra);
        prop_assert_eq!(verify(&case, &case.method, &case.path, &headers, &body), Err(ErrorKind::SignatureMismatch));
    }

    #[test]
    fn a_changed_path_fails(case in case(), insert in "[a-zA-Z0-9%~]") {
        let headers = signed(&case);
        // Right after the leading slash: before any `?`, so always a signed part.
        let path = format!("/{insert}{}", &case.path[1..]);
        prop_assert_eq!(verify(&case, &case.method, &path, &headers, &case.body), Err(ErrorKind::SignatureMismatch));
    }

    #[test]
    fn a_changed_method_fails(case in case(), other in method()) {
        prop_assume!(other != case.method);
        let headers = signed(&case);
        prop_assert_eq!(verify(&case, &other, &case.path, &headers, &case.body), Err(ErrorKind::SignatureMismatch));
    }

    #[test]
    fn a_changed_signed_header_fails(case in case(), which in any::<prop::sample::Index>(), extra in "[a-z]") {
        prop_assume!(!case.headers.is_empty());
        let mut headers = signed(&case);
        let (name, _) = &case.headers[which.index(case.headers.len())];
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        let mut value = headers[&name].as_bytes().to_vec();
        value.extend_from_slice(extra.as_bytes());
        headers.insert(name, HeaderValue::from_bytes(&value).unwrap());
        prop_assert_eq!(verify(&case, &case.method, &case.path, &headers, &case.body), Err(ErrorKind::SignatureMismatch));
    }

    #[test]
    fn a_changed_timestamp_fails(case in case(), delta in 1u64..10_000) {
        let mut headers = signed(&case);
        headers.insert("x-contentful-timestamp", HeaderValue::from(T0 - delta));
        prop_assert_eq!(verify(&case, &case.method, &case.path, &headers, &case.body), Err(ErrorKind::SignatureMismatch));
    }

    #[test]
    fn a_changed_context_header_fails(case in case(), extra in "[a-z]") {
        let Some(space) = case.context.space_id.clone() else { return Ok(()) };
        let mut headers = signed(&case);
        headers.insert("x-contentful-space-id", HeaderValue::from_str(&format!("{space}{extra}")).unwrap());
        prop_assert_eq!(verify(&case, &case.method, &case.path, &headers, &case.body), Err(ErrorKind::SignatureMismatch));
    }

    #[test]
    fn arbitrary_headers_never_panic(
        names in prop::collection::vec(prop::sample::select(vec![
            "x-contentful-signature", "x-contentful-timestamp", "x-contentful-signed-headers", "x-other",
        ]), 0..6),
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 6),
        path in "\\PC{0,30}",
        body in prop::collection::vec(any::<u8>(), 0..50),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in names.iter().zip(&values) {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(*name, value);
            }
        }
        let verifier = RequestVerifier::new(SigningSecret::new("a".repeat(64)).unwrap());
        let now = UNIX_EPOCH + Duration::from_millis(T0);
        prop_assert!(verifier.diagnose().verify_parts(&Method::POST, &path, &headers, &body, now).is_err());
    }
}

// One canonical string, one set of headers: the toolkit escapes nothing, so a value that
// holds `;<name>:` lets its string be read as another set of headers. Every such reading of a
// string the toolkit signed must be refused.

/// What the toolkit sends for `headers` (it refuses nothing): the signature over the canonical
/// string, as hex.
fn toolkit_signature(secret: &str, headers: &[(String, String)], timestamp_ms: u64) -> String {
    use hmac::Mac as _;
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let canonical = canonical_string("POST", "/hook", &pairs, b"{}", timestamp_ms);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&canonical);
    hex::encode(mac.finalize().into_bytes())
}

/// Every other reading of the HEADERS line of `headers`' canonical string as a request that
/// the toolkit would verify: entries cut at other `;`s, with names a request can send, sorted,
/// the list entry naming exactly them, the timestamp digits. Each reading is its headers but
/// the list.
fn other_readings(headers: &[(String, String)], timestamp_ms: u64) -> Vec<Vec<(String, String)>> {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let canonical = canonical_string("POST", "/hook", &pairs, b"", timestamp_ms);
    let text = String::from_utf8(canonical).unwrap();
    let line = text.split('\n').nth(2).unwrap();
    let tokens: Vec<&str> = line.split(';').collect();
    assert!(tokens.len() <= 16, "keep the cases small");
    let mut own: Vec<(String, String)> = headers.to_vec();
    own.push(("x-contentful-timestamp".into(), timestamp_ms.to_string()));
    own.sort();
    let mut readings = Vec::new();
    for cuts in 0u32..(1 << (tokens.len() - 1)) {
        let mut entries = vec![tokens[0].to_owned()];
        for (at, token) in tokens.iter().enumerate().skip(1) {
            if cuts & (1 << (at - 1)) != 0 {
                entries.push((*token).to_owned());
            } else if let Some(last) = entries.last_mut() {
                last.push(';');
                last.push_str(token);
            }
        }
        let Some(parsed) = entries
            .iter()
            .map(|entry| {
                let (name, value) = entry.split_once(':')?;
                let sendable = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && value.trim() == value
                    && HeaderValue::from_str(value).is_ok();
                sendable.then(|| (name.to_owned(), value.to_owned()))
            })
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let names: Vec<&str> = parsed.iter().map(|(n, _)| n.as_str()).collect();
        let sorted = names.windows(2).all(|w| w[0] < w[1]);
        let list = parsed
            .iter()
            .find(|(n, _)| n == "x-contentful-signed-headers")
            .map(|(_, v)| v.as_str());
        let timestamp_ok = parsed
            .iter()
            .any(|(n, v)| n == "x-contentful-timestamp" && v.bytes().all(|b| b.is_ascii_digit()));
        if !sorted || list != Some(names.join(",").as_str()) || !timestamp_ok {
            continue;
        }
        let reading: Vec<(String, String)> = parsed
            .into_iter()
            .filter(|(n, _)| n != "x-contentful-signed-headers")
            .collect();
        if reading != own {
            readings.push(reading);
        }
    }
    readings
}

/// The request of `reading` with `signature`, through a verifier with the time checks off:
/// only the signature and the shape of the headers decide.
fn verify_reading(
    secret: &str,
    reading: &[(String, String)],
    signature: &str,
) -> Result<(), ErrorKind> {
    let mut map = HeaderMap::new();
    let mut names: Vec<&str> = reading.iter().map(|(n, _)| n.as_str()).collect();
    names.push("x-contentful-signed-headers");
    names.sort_unstable();
    for (name, value) in reading {
        map.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map.insert(
        "x-contentful-signed-headers",
        HeaderValue::from_str(&names.join(",")).unwrap(),
    );
    map.insert(
        "x-contentful-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    let verifier = RequestVerifier::new(SigningSecret::new(secret).unwrap())
        .with_ttl(Duration::ZERO)
        .with_future_skew(Duration::MAX);
    let now = UNIX_EPOCH + Duration::from_millis(T0);
    verifier
        .diagnose()
        .verify_parts(&Method::POST, "/hook", &map, b"{}", now)
        .map(|_| ())
        .map_err(|e| e.kind())
}

const RESPLIT_SECRET: &str = "resplit-secret-0123456789abcdefghijklmnopqrstuvwxyz0123456789ABC";

#[test]
fn a_frontend_request_re_split_for_another_space_user_and_time_is_refused() {
    // A user of space `mine` has the app frontend sign a request with a header of their choice
    // (appSignedRequest); Contentful adds the context.
    let signed = vec![
        ("x-contentful-so".to_owned(), "a;x-contentful-space-id:victim;x-contentful-timestamp:1700000019494;x-contentful-user-id:u2".to_owned()),
        ("x-contentful-space-id".to_owned(), "mine".to_owned()),
        ("x-contentful-user-id".to_owned(), "me".to_owned()),
    ];
    let signature = toolkit_signature(RESPLIT_SECRET, &signed, T0);
    let readings = other_readings(&signed, T0);
    let forged = readings
        .iter()
        .find(|reading| {
            reading
                .iter()
                .any(|(n, v)| n == "x-contentful-space-id" && v == "victim")
        })
        .expect("the toolkit's canonical string has a reading for space `victim`");
    assert!(forged.contains(&(
        "x-contentful-timestamp".to_owned(),
        "1700000019494".to_owned()
    )));
    // The same string, so the toolkit's check passes; ours refuses the value that moves a
    // boundary.
    assert_eq!(
        verify_reading(RESPLIT_SECRET, forged, &signature),
        Err(ErrorKind::AmbiguousHeader)
    );
    // Nor does countersign sign such a request.
    let mut request = RequestToSign::new(Method::POST, "/hook").with_body(b"{}");
    for (name, value) in &signed {
        request = request.with_header(name, value);
    }
    let at = UNIX_EPOCH + Duration::from_millis(T0);
    assert_eq!(
        sign(
            &SigningSecret::new(RESPLIT_SECRET).unwrap(),
            &request,
            at,
            &Context::default()
        )
        .unwrap_err()
        .kind(),
        ErrorKind::AmbiguousHeader
    );
}

#[test]
fn a_semicolon_that_starts_no_entry_is_signed_and_verified() {
    let headers = vec![
        (
            "content-type".to_owned(),
            "application/json; charset=utf-8".to_owned(),
        ),
        ("x-note".to_owned(), "a;b;c:d".to_owned()),
    ];
    let signature = toolkit_signature(RESPLIT_SECRET, &headers, T0);
    let mut with_time = headers.clone();
    with_time.push(("x-contentful-timestamp".to_owned(), T0.to_string()));
    assert_eq!(
        verify_reading(RESPLIT_SECRET, &with_time, &signature),
        Ok(())
    );
}

/// A header value made of plain text and entries of the names in play.
fn resplit_value() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        "[a-z0-9]{1,3}",
        (
            "(x-a|x-b|x-c|x-contentful-space-id|x-contentful-user-id)",
            "[a-z0-9]{1,3}"
        )
            .prop_map(|(name, value)| format!(";{name}:{value}")),
        (0u64..3).prop_map(|delta| format!(";x-contentful-timestamp:{}", T0 + delta)),
    ];
    prop::collection::vec(fragment, 1..4).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn two_requests_with_different_signed_headers_never_verify_under_one_signature(
        values in prop::collection::vec(resplit_value(), 3),
        present in prop::collection::vec(any::<bool>(), 3),
    ) {
        let mut headers: Vec<(String, String)> = ["x-a", "x-b", "x-contentful-space-id"]
            .into_iter()
            .zip(values)
            .zip(&present)
            .filter(|(_, keep)| **keep)
            .map(|((name, value), _)| (name.to_owned(), value))
            .collect();
        headers.push(("x-contentful-user-id".to_owned(), "me".to_owned()));
        let signature = toolkit_signature(RESPLIT_SECRET, &headers, T0);
        for reading in other_readings(&headers, T0) {
            // The same canonical string: the toolkit would verify it. Here only a timestamp
            // that is no time (or beyond a century ahead) is refused before the value that moves
            // a boundary is.
            let refused = verify_reading(RESPLIT_SECRET, &reading, &signature);
            prop_assert!(
                matches!(
                    refused,
                    Err(ErrorKind::AmbiguousHeader
                        | ErrorKind::MalformedTimestamp
                        | ErrorKind::TimestampInFuture)
                ),
                "{reading:?}: {refused:?}"
            );
        }
    }
}
