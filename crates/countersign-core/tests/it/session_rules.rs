//! The two entry points of sessions, rule by rule: `Sessions::open` (a signed UI location's
//! page load) and `Sessions::authenticate` (every later call).

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countersign_core::contentstack::{
    AppTokenErrorKind, AppTokenVerifier, SigningKey, StaticKeys, mint_app_token,
};
use countersign_core::session::{
    COOKIE_NAME, CSRF_HEADER, OpenError, SessionErrorKind, SessionKey, Sessions, Transport,
    carries_app_token,
};
use http::{HeaderMap, HeaderValue, Method, header};

const PRIVATE: &str = include_str!("../data/keys/contentstack-a.private.pem");
const APP: &str = "app-1";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn sessions() -> Sessions {
    Sessions::new([SessionKey::new([7u8; 32]).unwrap()]).with_app_uid(APP)
}

fn app_token(app_uid: &str) -> String {
    let claims = serde_json::json!({
        "app_uid": app_uid, "installation_uid": "inst", "organization_uid": "org",
        "user_uid": "user", "stack_api_key": "blt1",
    });
    let key = SigningKey::from_pem(PRIVATE).unwrap();
    mint_app_token(&key, &claims, now(), Duration::from_secs(300)).unwrap()
}

fn open(
    query: Option<&str>,
    transport: Transport,
) -> Result<countersign_core::session::Opened, OpenError> {
    let key = SigningKey::from_pem(PRIVATE).unwrap();
    let keys = StaticKeys::new(key.public_key().clone().into());
    let verifier = AppTokenVerifier::new().with_app_uid(APP);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(sessions().open(query, &verifier, &keys, transport, now()))
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

#[test]
fn the_app_token_is_read_percent_decoded_from_the_query() {
    let token = app_token(APP);
    let query = format!("location=config&app-token={}", token.replace('.', "%2E"));
    assert!(carries_app_token(Some(&query)));
    let opened = open(Some(&query), Transport::Bearer).unwrap();
    assert_eq!(opened.session.app_uid(), APP);
    assert_eq!(opened.set_cookie, None);
}

#[test]
fn a_page_load_without_an_app_token_is_app_token_missing() {
    assert!(!carries_app_token(Some("location=config")));
    let Err(OpenError::AppToken(error)) = open(Some("location=config"), Transport::Bearer) else {
        panic!("opened without a token");
    };
    assert_eq!(error.kind(), AppTokenErrorKind::Missing);
}

#[test]
fn an_app_token_of_another_app_opens_no_session() {
    let query = format!("app-token={}", app_token("someone-else"));
    let Err(OpenError::AppToken(error)) = open(Some(&query), Transport::Bearer) else {
        panic!("opened a session for another app");
    };
    assert_eq!(error.kind(), AppTokenErrorKind::AppMismatch);
}

#[test]
fn cookie_transport_sets_a_partitioned_host_cookie_for_the_session_lifetime() {
    let query = format!("app-token={}", app_token(APP));
    let opened = open(Some(&query), Transport::Cookie).unwrap();
    let cookie = opened.set_cookie.unwrap();
    assert_eq!(
        cookie,
        format!(
            "{COOKIE_NAME}={}; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=None; Partitioned",
            opened.token
        )
    );
}

#[test]
fn a_bearer_session_authenticates_any_method() {
    let query = format!("app-token={}", app_token(APP));
    let opened = open(Some(&query), Transport::Bearer).unwrap();
    let bearer = format!("Bearer {}", opened.token);
    let session = sessions()
        .authenticate(
            &Method::POST,
            &headers(&[("authorization", &bearer)]),
            now(),
        )
        .unwrap();
    assert_eq!(session.tenant_key(), opened.session.tenant_key());
}

#[test]
fn the_authorization_header_is_the_only_place_looked_at_when_present() {
    let query = format!("app-token={}", app_token(APP));
    let opened = open(Some(&query), Transport::Cookie).unwrap();
    let cookie = format!("{COOKIE_NAME}={}", opened.token);
    let both = headers(&[("authorization", "Basic abc"), ("cookie", &cookie)]);
    let error = sessions()
        .authenticate(&Method::GET, &both, now())
        .unwrap_err();
    assert_eq!(error.kind(), SessionErrorKind::Missing);
}

#[test]
fn a_state_changing_call_by_cookie_needs_the_csrf_token() {
    let query = format!("app-token={}", app_token(APP));
    let opened = open(Some(&query), Transport::Cookie).unwrap();
    let cookie = format!("other=1; {COOKIE_NAME}={}", opened.token);
    let csrf = opened.session.csrf_token().to_owned();
    let without = headers(&[("cookie", &cookie)]);
    let wrong = headers(&[("cookie", &cookie), (CSRF_HEADER, "0000")]);
    let right = headers(&[("cookie", &cookie), (CSRF_HEADER, &csrf)]);
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        for refused in [&without, &wrong] {
            let error = sessions()
                .authenticate(&method, refused, now())
                .unwrap_err();
            assert_eq!(error.kind(), SessionErrorKind::CsrfMismatch, "{method}");
        }
        assert!(sessions().authenticate(&method, &right, now()).is_ok());
    }
    for safe in [Method::GET, Method::HEAD, Method::OPTIONS] {
        assert!(
            sessions().authenticate(&safe, &without, now()).is_ok(),
            "{safe}"
        );
    }
}

#[test]
fn a_raw_app_token_is_never_a_session() {
    let bearer = format!("Bearer {}", app_token(APP));
    let error = sessions()
        .authenticate(
            &Method::GET,
            &headers(&[(header::AUTHORIZATION.as_str(), &bearer)]),
            now(),
        )
        .unwrap_err();
    assert_eq!(error.kind(), SessionErrorKind::UnknownKey);
}

#[test]
fn a_session_lasts_at_most_twelve_hours_whatever_is_asked() {
    use countersign_core::session::MAX_TTL;
    let query = format!("app-token={}", app_token(APP));
    let key = SigningKey::from_pem(PRIVATE).unwrap();
    let keys = StaticKeys::new(key.public_key().clone().into());
    let verifier = AppTokenVerifier::new().with_app_uid(APP);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Duration::MAX used to overflow the clock's arithmetic and panic on every page load.
    for asked in [Duration::from_secs(30 * 24 * 3600), Duration::MAX] {
        let sessions = sessions().with_ttl(asked);
        let opened = runtime
            .block_on(sessions.open(Some(&query), &verifier, &keys, Transport::Cookie, now()))
            .unwrap();
        assert!(
            opened
                .set_cookie
                .unwrap()
                .contains(&format!("Max-Age={};", MAX_TTL.as_secs())),
            "{asked:?}"
        );
        let bearer = headers(&[("authorization", &format!("Bearer {}", opened.token))]);
        let later = |secs| now() + Duration::from_secs(secs);
        assert!(
            sessions
                .authenticate(&Method::GET, &bearer, later(MAX_TTL.as_secs() - 60))
                .is_ok()
        );
        assert!(
            sessions
                .authenticate(&Method::GET, &bearer, later(MAX_TTL.as_secs() + 120))
                .is_err()
        );
    }
}

#[test]
fn open_once_spends_the_app_token_and_remembers_it_until_it_expires() {
    use countersign_core::replay::MemoryStore;
    let query = format!("app-token={}", app_token(APP));
    let key = SigningKey::from_pem(PRIVATE).unwrap();
    let keys = StaticKeys::new(key.public_key().clone().into());
    let verifier = AppTokenVerifier::new().with_app_uid(APP);
    let store = MemoryStore::new(100);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let open_once = |at| {
        runtime.block_on(sessions().open_once(
            Some(&query),
            &verifier,
            &keys,
            &store,
            Transport::Bearer,
            at,
        ))
    };
    open_once(now()).unwrap();
    match open_once(now() + Duration::from_secs(1)) {
        Err(OpenError::AppToken(error)) => {
            assert_eq!(error.kind(), AppTokenErrorKind::Reused);
            assert_eq!(error.kind().code(), "app_token_reused");
        }
        other => panic!("{other:?}"),
    }
    // An invalid token is refused for what it is, before the store is asked.
    assert!(matches!(
        runtime.block_on(sessions().open_once(
            Some("app-token=nonsense"),
            &verifier,
            &keys,
            &store,
            Transport::Bearer,
            now(),
        )),
        Err(OpenError::AppToken(e)) if e.kind() == AppTokenErrorKind::Malformed
    ));
    // `open` does not consult the store.
    assert!(open(Some(&query), Transport::Bearer).is_ok());
}

#[test]
fn debug_shows_no_session_id_csrf_token_session_token_or_cookie() {
    let query = format!("app-token={}", app_token(APP));
    let opened = open(Some(&query), Transport::Cookie).unwrap();
    let printed = format!("{opened:?} {:?}", opened.session);
    let sid = opened.session.session_id().to_owned();
    for secret in [
        opened.token.as_str(),
        opened.session.csrf_token(),
        sid.as_str(),
    ] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(printed.contains("org"), "{printed}");
}
