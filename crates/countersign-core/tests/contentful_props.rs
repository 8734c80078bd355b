//! Properties: whatever we sign verifies, and a change to any signed part does not.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, UNIX_EPOCH};

use countersign_core::contentful::{
    Context, ErrorKind, RequestToSign, SigningSecret, Verifier, sign,
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
    );
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
    let verifier = Verifier::new(SigningSecret::new(case.secret.clone()).unwrap());
    let now = UNIX_EPOCH + Duration::from_millis(T0 + 500);
    verifier
        .verify(method, path, headers, body, now)
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
        let verifier = Verifier::new(SigningSecret::new("a".repeat(64)).unwrap());
        let now = UNIX_EPOCH + Duration::from_millis(T0);
        prop_assert!(verifier.verify(&Method::POST, &path, &headers, &body, now).is_err());
    }
}
