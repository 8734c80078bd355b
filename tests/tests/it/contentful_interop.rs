//! Interoperability with the real `@contentful/node-apps-toolkit` (installed from the committed
//! lockfile in `interop/node`): the toolkit signs a few hundred generated requests, which we
//! verify, and its `verifyRequest` checks our signatures.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, UNIX_EPOCH};

use countersign_core::contentful::{
    Context, ErrorKind, RequestToSign, RequestVerifier, SigningSecret, sign,
};
use countersign_tests::{Rng, run_node};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Value, json};

const CASES: usize = 400;

struct Case {
    secret: String,
    timestamp: u64,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    context: Context,
}

const METHODS: [&str; 7] = ["GET", "PATCH", "HEAD", "POST", "DELETE", "OPTIONS", "PUT"];
const PATH_CHARS: &[&str] = &[
    "a", "Z", "0", "/", "/", "-", "_", ".", "~", "!", "*", "'", "(", ")", " ", "%", "%20", "?",
    "?", "&", "=", "+", "$", ",", ";", ":", "@", "#", "[", "]", "ü", "€", "😀", "\"", "<", "|",
    "^", "`", "{",
];
const VALUE_CHARS: &[&str] = &[
    "a", "B", "7", " ", " ", "\t", "-", ",", ";", ":", "=", "\"", "é", "ß", "中", "\u{a0}",
    "\u{feff}", "\u{2003}", "\u{85}", "/", "{", "}",
];
const BODY_CHARS: &[&str] = &[
    "{", "}", "\"", "a", "1", ":", ",", " ", "\n", "\r\n", "\t", "\\", "é", "€", "😀", "\u{2028}",
    "\u{0}",
];
const SECRET_CHARS: &[&str] = &["a", "b", "Z", "Q", "0", "9", "+", "/", "=", "_", "-"];

fn generate(rng: &mut Rng) -> Case {
    let secret: String = (0..64).map(|_| rng.pick(SECRET_CHARS)).collect();
    let mut headers = Vec::new();
    for _ in 0..rng.below(5) {
        let name = format!("X-Case-{}", rng.below(6));
        let name = if rng.one_in(2) {
            name.to_lowercase()
        } else {
            name
        };
        // The toolkit takes an object: one value per exact name (names that differ in case are
        // distinct keys, and both are signed under the lower-case name, the later one winning).
        headers.retain(|(n, _)| *n != name);
        headers.push((name, rng.string(VALUE_CHARS, 16)));
    }
    if rng.one_in(3) {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    if rng.one_in(4) {
        headers.push((
            "x-contentful-topic".into(),
            "ContentManagement.Entry.publish".into(),
        ));
    }
    let id = |rng: &mut Rng| {
        rng.one_in(2)
            .then(|| format!("id{}", rng.next_u64() % 100_000))
    };
    let space_id = id(rng);
    // The CRN's space is the signed space, but now and then another one's.
    let crn_space = match &space_id {
        Some(space) if !rng.one_in(4) => space.clone(),
        _ => "s".to_owned(),
    };
    let context = Context {
        environment_id: id(rng),
        app_id: id(rng),
        user_id: id(rng),
        crn: rng
            .one_in(3)
            .then(|| format!("crn:contentful:::extensibility:spaces/{crn_space}/environments/e")),
        space_id,
    };
    Case {
        secret,
        timestamp: 1_600_000_000_000 + rng.next_u64() % 400_000_000_000,
        method: METHODS[rng.below(METHODS.len())],
        path: format!("/{}", rng.string(PATH_CHARS, 30)),
        headers,
        body: rng.string(BODY_CHARS, 60),
        context,
    }
}

fn context_json(context: &Context) -> Value {
    let fields = [
        ("spaceId", &context.space_id),
        ("envId", &context.environment_id),
        ("appId", &context.app_id),
        ("userId", &context.user_id),
        ("crn", &context.crn),
    ];
    let map = fields
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|v| (key.to_owned(), Value::from(v))))
        .collect();
    Value::Object(map)
}

fn our_signature(case: &Case) -> Vec<(String, String)> {
    let secret = SigningSecret::new(case.secret.clone()).unwrap();
    let method = Method::from_bytes(case.method.as_bytes()).unwrap();
    let mut request = RequestToSign::new(method, &case.path).with_body(case.body.as_bytes());
    for (name, value) in &case.headers {
        request = request.with_header(name, value);
    }
    sign(
        &secret,
        &request,
        UNIX_EPOCH + Duration::from_millis(case.timestamp),
        &case.context,
    )
    .unwrap()
    .iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect()
}

/// The headers of a request as a server receives them: names lower case, a later header of the
/// same name replacing an earlier one, values as sent.
fn arrived(own: &[(String, String)], signed: &[(String, String)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = Vec::new();
    for (name, value) in own.iter().chain(signed) {
        let name = name.to_lowercase();
        all.retain(|(n, _)| *n != name);
        all.push((name, value.clone()));
    }
    all
}

fn node_input(cases: &[Case], body_suffix: &str) -> Value {
    let cases: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "secret": c.secret,
                "timestamp": c.timestamp,
                "method": c.method,
                "path": c.path,
                "headers": c.headers,
                "body": format!("{}{body_suffix}", c.body),
                "context": context_json(&c.context),
                "arrived": arrived(&c.headers, &our_signature(c)),
            })
        })
        .collect();
    json!({ "cases": cases })
}

#[test]
fn toolkit_and_countersign_agree_on_every_generated_request() {
    let mut rng = Rng::new(0x00C0_FFEE);
    let cases: Vec<Case> = (0..CASES).map(|_| generate(&mut rng)).collect();
    let output = run_node("contentful.mjs", &node_input(&cases, ""));
    let results = output["results"].as_array().unwrap();
    assert_eq!(results.len(), CASES);

    let mut conflicts = 0;
    for (i, (case, result)) in cases.iter().zip(results).enumerate() {
        let what = format!(
            "case {i}: {} {:?} headers {:?}",
            case.method, case.path, case.headers
        );

        // 1. The toolkit's headers are exactly ours, names and values.
        let theirs: Vec<(String, String)> = result["signed"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let mut ours = our_signature(case);
        ours.sort();
        let mut theirs_sorted = theirs.clone();
        theirs_sorted.sort();
        assert_eq!(ours, theirs_sorted, "{what}");

        // 2. The toolkit's verifyRequest accepts our signature.
        assert_eq!(result["verified"], true, "{what}");

        // 3. We verify the toolkit's signature on the request as it arrives.
        let mut headers = HeaderMap::new();
        for (name, value) in arrived(&case.headers, &theirs) {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        let verifier = RequestVerifier::new(SigningSecret::new(case.secret.clone()).unwrap());
        let now = UNIX_EPOCH + Duration::from_millis(case.timestamp + 5);
        let method = Method::from_bytes(case.method.as_bytes()).unwrap();
        let outcome = verifier.diagnose().verify_parts(
            &method,
            &case.path,
            &headers,
            case.body.as_bytes(),
            now,
        );
        // What follows a second `?` is not signed (the toolkit's rule, kept in the canonical
        // string above): the toolkit accepts such a request, countersign refuses it, so that
        // no unsigned byte of the target reaches a handler.
        let unsigned_tail = case
            .path
            .split_once('?')
            .is_some_and(|(_, query)| query.contains('?'));
        if unsigned_tail {
            let error = outcome.expect_err(&what);
            assert_eq!(error.kind(), ErrorKind::UnsignedTarget, "{what}");
            continue;
        }
        // A signed space id and a signed CRN of another space name two tenants: the toolkit
        // accepts such a request, countersign refuses it.
        let two_spaces = case.context.crn.as_ref().is_some_and(|crn| {
            case.context
                .space_id
                .as_ref()
                .is_some_and(|space| !crn.contains(&format!("spaces/{space}/")))
        });
        if two_spaces {
            let error = outcome.expect_err(&what);
            assert_eq!(error.kind(), ErrorKind::ContextConflict, "{what}");
            conflicts += 1;
            continue;
        }
        let verified = outcome.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(verified.context(), case.context, "{what}");
    }
    assert!(conflicts > 0, "the cases include requests of two spaces");
}

#[test]
fn toolkit_rejects_our_signature_over_another_body() {
    let mut rng = Rng::new(7);
    let cases: Vec<Case> = (0..20).map(|_| generate(&mut rng)).collect();
    let output = run_node("contentful.mjs", &node_input(&cases, "x"));
    let results = output["results"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    for result in results {
        assert_eq!(result["verified"], false);
    }
}

#[test]
fn a_re_split_signature_the_toolkit_verifies_is_refused_here() {
    // A user of space `mine` has the frontend sign a header of their choice; the toolkit's
    // canonical string escapes nothing, so the same signature stands for a request of space
    // `victim`, user `u2`, 20 s later.
    let secret = "a".repeat(64);
    let t: u64 = 1_700_000_000_000;
    let later = t + 20_000;
    let chosen = format!(
        "a;x-contentful-space-id:victim;x-contentful-timestamp:{later};x-contentful-user-id:u2"
    );
    let tail =
        format!("u2;x-contentful-space-id:mine;x-contentful-timestamp:{t};x-contentful-user-id:me");
    let forged = vec![
        ("x-contentful-so".to_owned(), "a".to_owned()),
        ("x-contentful-space-id".to_owned(), "victim".to_owned()),
        ("x-contentful-timestamp".to_owned(), later.to_string()),
        ("x-contentful-user-id".to_owned(), tail),
        (
            "x-contentful-signed-headers".to_owned(),
            "x-contentful-signed-headers,x-contentful-so,x-contentful-space-id,x-contentful-timestamp,x-contentful-user-id".to_owned(),
        ),
    ];
    let input = json!({"cases": [{
        "secret": secret,
        "timestamp": t,
        "method": "POST",
        "path": "/actions",
        "headers": [["x-contentful-so", chosen]],
        "body": "{}",
        "context": {"spaceId": "mine", "userId": "me"},
        "forged": forged,
    }]});
    let output = run_node("contentful.mjs", &input);
    let result = &output["results"][0];
    // The toolkit accepts the forgery: this is where we refuse on purpose what it accepts.
    assert_eq!(result["verified"], true, "{result}");
    let signature = result["signed"]["x-contentful-signature"].as_str().unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in forged
        .iter()
        .chain([&("x-contentful-signature".to_owned(), signature.to_owned())])
    {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let verifier = RequestVerifier::new(SigningSecret::new(secret).unwrap());
    let now = UNIX_EPOCH + Duration::from_millis(t + 5);
    let error = verifier
        .diagnose()
        .verify_parts(&Method::POST, "/actions", &headers, b"{}", now)
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AmbiguousHeader);
}
