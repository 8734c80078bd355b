//! Typed events: Contentstack's `module` and `event`, Contentful's topic. Known names parse to
//! their variants, any other name is kept as sent, serde reads and writes the plain text, and
//! an unknown name never fails a verification.

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, UNIX_EPOCH};

use countersign_core::contentful::{
    self, Action, Context, Entity, RequestToSign, RequestVerifier, SigningSecret, Topic,
};
use countersign_core::contentstack::{
    Event, KeySet, Module, Phase, SaltLength, SigningKey, WebhookVerifier,
};
use http::{HeaderMap, HeaderValue, Method};

const KEY_A: &str = include_str!("../data/keys/contentstack-a.private.pem");

#[test]
fn every_known_module_round_trips_through_its_name() {
    for (text, module) in [
        ("entry", Module::Entry),
        ("asset", Module::Asset),
        ("content_type", Module::ContentType),
        ("global_field", Module::GlobalField),
        ("release", Module::Release),
        ("environment", Module::Environment),
        ("workflow", Module::Workflow),
        ("app_installation", Module::AppInstallation),
    ] {
        assert_eq!(Module::parse(text), module, "{text}");
        assert_eq!(module.as_str(), text);
        assert_eq!(module.to_string(), text);
        assert_eq!(text.parse::<Module>().unwrap(), module);
    }
}

#[test]
fn an_unknown_module_is_kept_as_sent() {
    assert_eq!(Module::parse("taxonomy"), Module::Other("taxonomy".into()));
    assert_eq!(Module::parse("taxonomy").as_str(), "taxonomy");
    // Names are case-sensitive, as Contentstack sends them.
    assert_eq!(Module::parse("Entry"), Module::Other("Entry".into()));
    assert_eq!(Module::parse(""), Module::Other(String::new()));
}

#[test]
fn events_with_and_without_a_phase() {
    for (text, event) in [
        ("create", Event::Create),
        ("update", Event::Update),
        ("delete", Event::Delete),
        ("publish", Event::Publish(None)),
        ("publish.start", Event::Publish(Some(Phase::Start))),
        ("publish.success", Event::Publish(Some(Phase::Success))),
        ("publish.fail", Event::Publish(Some(Phase::Fail))),
        ("unpublish", Event::Unpublish(None)),
        ("unpublish.success", Event::Unpublish(Some(Phase::Success))),
        ("deploy", Event::Deploy(None)),
        ("deploy.fail", Event::Deploy(Some(Phase::Fail))),
        ("install", Event::Install),
        ("upgrade", Event::Upgrade),
        ("uninstall", Event::Uninstall),
    ] {
        assert_eq!(Event::parse(text), event, "{text}");
        assert_eq!(event.as_str(), text);
        assert_eq!(event, text);
    }
    assert_eq!(
        Event::parse("publish.success").phase(),
        Some(Phase::Success)
    );
    assert_eq!(Event::parse("create").phase(), None);
}

#[test]
fn a_phase_on_an_event_without_phases_or_an_unknown_phase_is_kept_as_sent() {
    for text in [
        "create.start",
        "publish.done",
        "publish.",
        ".success",
        "archive",
        "publish.success.extra",
    ] {
        assert_eq!(Event::parse(text), Event::Other(text.into()), "{text}");
        assert_eq!(Event::parse(text).as_str(), text);
    }
}

#[test]
fn contentful_topics_split_into_origin_entity_and_action() {
    let topic = Topic::parse("ContentManagement.Entry.publish");
    assert_eq!(topic.origin(), Some("ContentManagement"));
    assert_eq!(topic.entity(), &Entity::Entry);
    assert_eq!(topic.action(), &Action::Publish);
    assert!(topic.is(Entity::Entry, Action::Publish));
    assert!(!topic.is(Entity::Asset, Action::Publish));

    // App event subscriptions name topics without the origin.
    let short = Topic::parse("AppInstallation.delete");
    assert_eq!(short.origin(), None);
    assert!(short.is(Entity::AppInstallation, Action::Delete));

    for (entity, text) in [
        (Entity::ContentType, "ContentType"),
        (Entity::ReleaseAction, "ReleaseAction"),
        (Entity::ScheduledAction, "ScheduledAction"),
        (Entity::BulkAction, "BulkAction"),
        (Entity::AppActionCall, "AppActionCall"),
    ] {
        assert_eq!(Entity::parse(text), entity);
    }
    for (action, text) in [
        (Action::AutoSave, "auto_save"),
        (Action::Unarchive, "unarchive"),
        (Action::Execute, "execute"),
        (Action::Call, "call"),
    ] {
        assert_eq!(Action::parse(text), action);
    }
}

#[test]
fn an_unknown_topic_is_kept_as_sent() {
    let topic = Topic::parse("ContentManagement.Hologram.levitate");
    assert_eq!(topic.entity(), &Entity::Other("Hologram".into()));
    assert_eq!(topic.action(), &Action::Other("levitate".into()));
    assert_eq!(topic.as_str(), "ContentManagement.Hologram.levitate");

    for text in ["", "publish", ".", "Entry.", ".publish"] {
        let topic = Topic::parse(text);
        assert_eq!(topic.as_str(), text);
        assert_eq!(topic.entity(), &Entity::Other(text.into()), "{text:?}");
    }
}

#[test]
fn serde_reads_and_writes_the_plain_names() {
    let value = serde_json::json!({
        "module": Module::AppInstallation,
        "event": Event::Publish(Some(Phase::Fail)),
        "topic": Topic::parse("ContentManagement.Asset.save"),
        "unknown": Module::Other("taxonomy".into()),
    });
    assert_eq!(
        value,
        serde_json::json!({
            "module": "app_installation",
            "event": "publish.fail",
            "topic": "ContentManagement.Asset.save",
            "unknown": "taxonomy",
        })
    );
    let module: Module = serde_json::from_value(value["module"].clone()).unwrap();
    let event: Event = serde_json::from_value(value["event"].clone()).unwrap();
    let topic: Topic = serde_json::from_value(value["topic"].clone()).unwrap();
    let unknown: Event = serde_json::from_str(r#""rollback""#).unwrap();
    assert_eq!(module, Module::AppInstallation);
    assert_eq!(event, Event::Publish(Some(Phase::Fail)));
    assert!(topic.is(Entity::Asset, Action::Save));
    assert_eq!(unknown, Event::Other("rollback".into()));
    // Inside a handler's own types, with an escaped name:
    #[derive(serde::Deserialize)]
    struct Body {
        module: Module,
    }
    let body: Body = serde_json::from_str(r#"{"module":"entr\u0079"}"#).unwrap();
    assert_eq!(body.module, Module::Entry);
}

#[test]
fn a_verified_webhook_has_typed_module_and_event_and_unknown_ones_verify() {
    let key = SigningKey::from_pem(KEY_A).unwrap();
    let keys = KeySet::from(key.public_key().clone());
    let verifier = WebhookVerifier::new();
    let now = UNIX_EPOCH + Duration::from_millis(1_721_897_326_861 + 1_000);
    for (module, event, typed) in [
        (
            "entry",
            "publish.success",
            (Module::Entry, Event::Publish(Some(Phase::Success))),
        ),
        (
            "hologram",
            "levitate",
            (
                Module::Other("hologram".into()),
                Event::Other("levitate".into()),
            ),
        ),
    ] {
        let body = format!(
            r#"{{"triggered_at":"2024-07-25T08:48:46.861Z","module":"{module}","event":"{event}","api_key":"blt1","data":{{}}}}"#
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-contentstack-request-signature",
            HeaderValue::from_str(
                &key.sign_webhook(body.as_bytes(), SaltLength::Digest)
                    .unwrap(),
            )
            .unwrap(),
        );
        let verified = verifier
            .diagnose()
            .verify_with_keys(&headers, body.as_bytes(), Some(&keys), now)
            .unwrap();
        assert_eq!(verified.module(), Some(typed.0));
        assert_eq!(verified.event(), Some(typed.1));
    }
}

#[test]
fn a_verified_request_has_a_typed_topic_only_when_it_is_signed() {
    let secret = SigningSecret::new("a".repeat(64)).unwrap();
    let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let verifier = RequestVerifier::new(secret.clone());
    let with_topic = |topic: &str, signed: bool| {
        let request = RequestToSign::new(Method::POST, "/events");
        let request = if signed {
            request.with_header("X-Contentful-Topic", topic)
        } else {
            request
        };
        let mut headers = contentful::sign(&secret, &request, at, &Context::default())
            .unwrap()
            .to_header_map()
            .unwrap();
        headers.insert("x-contentful-topic", HeaderValue::from_str(topic).unwrap());
        verifier
            .diagnose()
            .verify_parts(&Method::POST, "/events", &headers, b"", at)
            .unwrap()
            .topic()
    };
    let topic = with_topic("ContentManagement.Entry.unpublish", true).unwrap();
    assert!(topic.is(Entity::Entry, Action::Unpublish));
    let odd = with_topic("Something.new", true).unwrap();
    assert_eq!(odd.as_str(), "Something.new");
    assert_eq!(with_topic("ContentManagement.Entry.publish", false), None);
}
