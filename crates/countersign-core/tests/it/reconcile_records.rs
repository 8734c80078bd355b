//! A provider's record of a delivery gives the id, tenant and body that the live path gives
//! the same delivery, and what a tenant could plant in a record is refused.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use countersign_core::contentful::{self, Context, RequestToSign, RequestVerifier, SigningSecret};
use countersign_core::contentstack::{KeySet, SaltLength, SigningKey, WebhookVerifier};
use countersign_core::reconcile::contentful::{CallsPage, Health, TRUNCATED_AT, call_details};
use countersign_core::reconcile::contentstack::{ExecutionsPage, WebhookState};
use countersign_core::reconcile::{RecordedDelivery, Unusable};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::json;

const KEY_A: &str = include_str!("../data/keys/contentstack-a.private.pem");
const PUBLIC_A: &str = include_str!("../data/keys/contentstack-a.public.pem");
const BODY: &str = r#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","api_key":"blt1","event":"publish","data":{"entry":{"uid":"e1","title":"Ünïcode / \u2028","n":1.50}}}"#;

fn live_contentstack_id(body: &[u8], namespace: Option<&str>) -> String {
    let signature = SigningKey::from_pem(KEY_A)
        .unwrap()
        .sign_webhook(body, SaltLength::Digest)
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-contentstack-request-signature",
        HeaderValue::from_str(&signature).unwrap(),
    );
    let verifier = match namespace {
        Some(ns) => WebhookVerifier::new().with_namespace(ns),
        None => WebhookVerifier::new(),
    }
    .with_json_fallback(true);
    verifier
        .diagnose()
        .verify_with_keys(
            &headers,
            body,
            Some(&KeySet::parse(PUBLIC_A).unwrap()),
            countersign_core::contentstack::triggered_at(body).unwrap() + Duration::from_secs(1),
        )
        .unwrap()
        .delivery_id()
}

/// An execution as the API answers it, its attempts' bodies given as JSON texts (written into
/// the answer as they are, so that their keys keep their order).
fn execution(uid: &str, bodies: &[&str]) -> String {
    let details: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(n, body)| {
            format!(
                r#"{{"retry_number":{n},"request":{{"method":"POST","uri":"https://example.com/hook","body":{body}}},"response":{{"statusCode":500}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"uid":"{uid}","channel":["content_types.entries.publish"],"created_at":"2024-07-25T08:48:47.000Z","status":500,"retry_count":{},"event_data":{{"module":"entry","api_key":"blt1","event":"publish"}},"request_details":[{}]}}"#,
        bodies.len().saturating_sub(1),
        details.join(",")
    )
}

fn one(
    execution: &str,
    api_key: &str,
    namespace: Option<&str>,
) -> Result<RecordedDelivery, Unusable> {
    let answer = format!(r#"{{"webhooks":[{execution}]}}"#);
    let page = ExecutionsPage::parse(answer.as_bytes(), api_key, namespace).unwrap();
    assert_eq!(page.len, 1);
    page.attempts.into_iter().next().unwrap().delivery
}

/// What Contentstack sent: `JSON.stringify` of the event.
fn sent() -> Vec<u8> {
    countersign_core::contentstack::json_reencode(BODY.as_bytes()).unwrap()
}

/// The body as a record may hold it: the same JSON, spaced and escaped otherwise.
fn recorded() -> String {
    BODY.replace(r#"{"triggered_at""#, r#"{ "triggered_at""#)
        .replace(r#","module":"#, ",\n  \"module\" : ")
}

#[test]
fn a_contentstack_execution_has_the_id_the_live_path_gave_its_delivery() {
    let sent = sent();
    assert_ne!(
        sent,
        recorded().as_bytes(),
        "the record re-encodes the body"
    );
    for namespace in [None, Some("app-1")] {
        let live = live_contentstack_id(&sent, namespace);
        let delivery = one(&execution("ex1", &[&recorded()]), "blt1", namespace).unwrap();
        assert_eq!(delivery.id(), live, "namespace {namespace:?}");
        assert_eq!(delivery.body, Bytes::from(sent.clone()));
        assert_eq!(delivery.tenant.as_deref(), Some("blt1"));
        // A body recorded as the string that was sent gives the same.
        let text = serde_json::to_string(std::str::from_utf8(&sent).unwrap()).unwrap();
        assert_eq!(
            one(&execution("ex1", &[&text]), "blt1", namespace)
                .unwrap()
                .id(),
            live
        );
    }
    let other = one(&execution("ex1", &[&recorded()]), "blt1", Some("app-2")).unwrap();
    assert_ne!(
        other.id(),
        live_contentstack_id(&sent, Some("app-1")),
        "another namespace"
    );
}

#[test]
fn a_contentstack_execution_whose_attempts_sent_different_bodies_has_a_key_for_each() {
    let second = BODY.replace("08:48:46.861Z", "08:50:00.000Z");
    let delivery = one(
        &execution("ex1", &[&recorded(), BODY, &second]),
        "blt1",
        None,
    )
    .unwrap();
    let second = countersign_core::contentstack::json_reencode(second.as_bytes()).unwrap();
    // Committed as the last form sent, the one a retry of Contentstack's would take.
    assert_eq!(delivery.id(), live_contentstack_id(&second, None));
    assert_eq!(delivery.body, Bytes::from(second));
    assert_eq!(delivery.other_keys.len(), 1, "one body twice is one key");
    assert_eq!(
        delivery.other_keys[0].to_hex(),
        live_contentstack_id(&sent(), None)
    );
    // A body recorded as text other than JSON.stringify's: the id of those bytes too.
    let spaced = serde_json::to_string(&recorded()).unwrap();
    let delivery = one(&execution("ex1", &[&spaced]), "blt1", None).unwrap();
    assert_eq!(delivery.id(), live_contentstack_id(&sent(), None));
    assert_eq!(delivery.other_keys.len(), 1);
}

#[test]
fn a_contentstack_record_cannot_carry_another_stacks_delivery_or_an_installation_event() {
    assert_eq!(
        one(&execution("ex1", &[BODY]), "blt2", None),
        Err(Unusable::OtherTenant {
            expected: "blt2".into(),
            found: Some("blt1".into())
        })
    );
    let install = BODY.replace(r#""module":"entry""#, r#""module":"app_installation""#);
    assert_eq!(
        one(&execution("ex1", &[&install]), "blt1", None),
        Err(Unusable::InstallationEvent)
    );
    assert_eq!(
        one(&execution("ex1", &[]), "blt1", None),
        Err(Unusable::NoBody)
    );
    assert!(matches!(
        one(&execution("ex1", &[r#""not json""#]), "blt1", None),
        Err(Unusable::Malformed(_))
    ));
    assert!(ExecutionsPage::parse(b"[]", "blt1", None).is_err());
    assert!(
        WebhookState::parse(br#"{"webhook":{"uid":"w","disabled":true}}"#)
            .unwrap()
            .disabled
    );
}

fn secret() -> SigningSecret {
    SigningSecret::new("w".repeat(64)).unwrap()
}

/// A webhook call as Contentful signs it and as the live path verifies it: the headers, and
/// the live id.
fn signed_call(extra: &[(&str, &str)], space: &str, body: &str) -> (Vec<(String, String)>, String) {
    let mut request =
        RequestToSign::new(Method::POST, "/hooks/contentful?x=1").with_body(body.as_bytes());
    for (name, value) in extra {
        request = request.with_header(name, value);
    }
    let context = Context {
        space_id: Some(space.into()),
        ..Context::default()
    };
    let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let signed = contentful::sign(&secret(), &request, at, &context).unwrap();
    let mut headers: Vec<(String, String)> = extra
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    headers.extend(signed.iter().map(|(n, v)| (n.to_owned(), v.to_owned())));
    let mut map = HeaderMap::new();
    for (name, value) in &headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let mut parts = http::Request::post("/hooks/contentful?x=1")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    parts.headers = map;
    let verdict = RequestVerifier::for_space_webhooks(space, secret())
        .with_namespace("app-1")
        .verify(&parts, Bytes::from(body.to_owned()), None, at)
        .unwrap();
    (headers, verdict.replay_key().to_hex())
}

fn details(headers: &[(String, String)], body: &str) -> Vec<u8> {
    let headers: serde_json::Map<String, serde_json::Value> =
        headers.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    serde_json::to_vec(&json!({
        "sys": {"id": "call-1", "type": "WebhookCallDetails"},
        "request": {"url": "https://app.example/hooks/contentful?x=1", "method": "POST", "headers": headers, "body": body},
        "response": {"statusCode": 502, "body": ""},
        "statusCode": 502, "errors": [], "eventType": "publish",
        "requestAt": "2023-11-14T22:13:20.000Z", "responseAt": "2023-11-14T22:13:21.000Z",
    }))
    .unwrap()
}

#[test]
fn a_contentful_call_has_the_id_the_live_path_gave_its_delivery() {
    let body = r#"{"sys":{"id":"entry-1"}}"#;
    // A signed value beyond ASCII (a webhook's name) is read as the live path reads it.
    for extra in [
        vec![
            ("x-contentful-topic", "ContentManagement.Entry.publish"),
            ("x-contentful-idempotency-key", "idem-1"),
        ],
        vec![
            ("x-contentful-webhook-name", "Caf\u{e9}"),
            ("x-contentful-idempotency-key", "idem-2"),
        ],
    ] {
        let (headers, live) = signed_call(&extra, "space-1", body);
        let attempt = call_details(&details(&headers, body), "space-1", Some("app-1")).unwrap();
        assert_eq!(attempt.provider_id, "call-1");
        assert_eq!(attempt.status, Some(502));
        let delivery = attempt.delivery.unwrap();
        assert_eq!(delivery.id(), live);
        assert_eq!(delivery.tenant.as_deref(), Some("space-1"));
        assert_eq!(delivery.body, Bytes::from(body));
        assert!(
            delivery.signed_headers.iter().any(|(n, _)| n == extra[0].0),
            "{:?}",
            delivery.signed_headers
        );
        assert!(
            !delivery
                .signed_headers
                .iter()
                .any(|(n, _)| n == "x-contentful-signature")
        );
    }
}

#[test]
fn a_contentful_record_cannot_carry_another_spaces_delivery_a_cut_body_or_an_unsigned_call() {
    let body = "{}";
    let (headers, _) = signed_call(
        &[("x-contentful-idempotency-key", "idem-1")],
        "space-2",
        body,
    );
    assert_eq!(
        call_details(&details(&headers, body), "space-1", None)
            .unwrap()
            .delivery,
        Err(Unusable::OtherTenant {
            expected: "space-1".into(),
            found: Some("space-2".into())
        })
    );
    let long = "x".repeat(TRUNCATED_AT);
    let (headers, _) = signed_call(
        &[("x-contentful-idempotency-key", "idem-9")],
        "space-1",
        &long,
    );
    assert_eq!(
        call_details(&details(&headers, &long), "space-1", None)
            .unwrap()
            .delivery,
        Err(Unusable::Truncated)
    );
    // Without a signed idempotency key its retries have other ids: never committed.
    let (headers, _) = signed_call(&[], "space-1", body);
    assert!(matches!(
        call_details(&details(&headers, body), "space-1", None).unwrap().delivery,
        Err(Unusable::Refused(why)) if why.contains("idempotency")
    ));
    let unsigned = vec![("x-contentful-space-id".to_owned(), "space-1".to_owned())];
    assert!(matches!(
        call_details(&details(&unsigned, body), "space-1", None)
            .unwrap()
            .delivery,
        Err(Unusable::Refused(_))
    ));
}

#[test]
fn contentful_listings_and_health_are_read() {
    let page = CallsPage::parse(br#"{"sys":{"type":"Array"},"total":3,"skip":0,"limit":2,"items":[
        {"sys":{"id":"c1","type":"WebhookCallOverview"},"statusCode":200,"errors":[],"requestAt":"2023-11-14T22:13:20.000Z"},
        {"sys":{"id":"c2","type":"WebhookCallOverview"},"statusCode":0,"errors":["Timeout"],"requestAt":"2023-11-14T22:13:21.000Z"}]}"#).unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(page.items[0].id, "c1");
    assert_eq!(page.items[0].status, Some(200));
    assert_eq!(page.items[1].status, None, "no answer");
    assert_eq!(
        page.items[1].requested_at,
        Some(UNIX_EPOCH + Duration::from_millis(1_700_000_001_000))
    );
    let health = Health::parse(br#"{"sys":{"id":"w"},"calls":{"total":10,"healthy":7}}"#).unwrap();
    assert_eq!(
        (health.total, health.healthy, health.is_healthy()),
        (10, 7, false)
    );
}
