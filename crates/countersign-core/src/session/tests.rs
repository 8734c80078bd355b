//! The sessions' rules, one test each.

use super::*;

fn claims(stack: Option<&str>) -> AppTokenClaims {
    serde_json::from_value(serde_json::json!({
        "app_uid": "app", "installation_uid": "inst", "organization_uid": "org", "user_uid": "user",
        "stack_api_key": stack, "exp": 4_102_444_800u64
    }))
    .unwrap()
}

fn key(fill: u8) -> SessionKey {
    SessionKey::new([fill; 32]).unwrap()
}

const NOW: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn sessions_bound_to_an_app_neither_mint_nor_accept_another_apps() {
    let ours = Sessions::new([key(1)]).with_app_uid("app");
    let theirs = Sessions::new([key(1)]).with_app_uid("other-app");
    let (token, _) = ours.mint(&claims(Some("blt1")), at(NOW)).unwrap();
    assert!(ours.verify(&token, at(NOW)).is_ok());
    let refused = |r: Result<Session, SessionError>| r.unwrap_err().kind();
    assert_eq!(
        refused(theirs.verify(&token, at(NOW))),
        SessionErrorKind::AppMismatch,
        "a session of another app signed with a shared key"
    );
    assert_eq!(
        theirs
            .mint(&claims(Some("blt1")), at(NOW))
            .unwrap_err()
            .kind(),
        SessionErrorKind::AppMismatch,
        "an app-token of another app"
    );
}

#[test]
fn a_minted_session_verifies_with_its_tenant() {
    let sessions = Sessions::new([key(1)]);
    let (token, minted) = sessions.mint(&claims(Some("blt1")), at(NOW)).unwrap();
    let verified = sessions.verify(&token, at(NOW + 10)).unwrap();
    assert_eq!(verified, minted);
    assert_eq!(
        verified.tenant_key().to_string(),
        "org:org/app:app/inst:inst/stack:blt1"
    );
    assert!(verified.is_stack("blt1") && !verified.is_stack("blt2"));
    assert_eq!(verified.session_id().len(), 32);
    assert_eq!(verified.expires_at(), at(NOW + 3600));
}

#[test]
fn organization_apps_have_no_stack() {
    let sessions = Sessions::new([key(1)]);
    let (token, _) = sessions.mint(&claims(None), at(NOW)).unwrap();
    let session = sessions.verify(&token, at(NOW)).unwrap();
    assert_eq!(session.stack_api_key(), None);
    assert_eq!(
        session.tenant_key().to_string(),
        "org:org/app:app/inst:inst/stack:-"
    );
}

#[test]
fn a_session_expires_after_its_ttl() {
    let sessions = Sessions::new([key(1)]).with_ttl(Duration::from_secs(60));
    let (token, _) = sessions.mint(&claims(Some("blt1")), at(NOW)).unwrap();
    assert!(sessions.verify(&token, at(NOW + 59)).is_ok());
    assert_eq!(
        sessions.verify(&token, at(NOW + 60)).unwrap_err().kind(),
        SessionErrorKind::Expired
    );
}

#[test]
fn rotation_verifies_old_sessions_and_signs_with_the_first_key() {
    let old = Sessions::new([key(1)]);
    let (old_token, _) = old.mint(&claims(Some("blt1")), at(NOW)).unwrap();
    let rotated = Sessions::new([key(2), key(1)]);
    assert!(rotated.verify(&old_token, at(NOW)).is_ok());
    let (new_token, _) = rotated.mint(&claims(Some("blt1")), at(NOW)).unwrap();
    assert_eq!(
        old.verify(&new_token, at(NOW)).unwrap_err().kind(),
        SessionErrorKind::UnknownKey
    );
    let retired = Sessions::new([key(2)]);
    assert_eq!(
        retired.verify(&old_token, at(NOW)).unwrap_err().kind(),
        SessionErrorKind::UnknownKey
    );
}

#[test]
fn a_tampered_session_is_refused() {
    let sessions = Sessions::new([key(1)]);
    let (token, _) = sessions.mint(&claims(Some("blt1")), at(NOW)).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(engine.decode(&parts[1]).unwrap())
        .unwrap()
        .replace("blt1", "blt2");
    parts[1] = engine.encode(payload);
    let forged = parts.join(".");
    assert_eq!(
        sessions.verify(&forged, at(NOW)).unwrap_err().kind(),
        SessionErrorKind::Tampered
    );
    assert_eq!(
        sessions.verify("garbage", at(NOW)).unwrap_err().kind(),
        SessionErrorKind::Malformed
    );
}

#[test]
fn short_keys_are_refused_and_never_shown() {
    assert_eq!(
        SessionKey::new([0u8; 31]).unwrap_err().kind(),
        ConfigErrorKind::InvalidSecret
    );
    let key = SessionKey::new(b"0123456789abcdef0123456789abcdef-secret").unwrap();
    assert!(!format!("{key:?}").contains("secret"));
    assert!(Sessions::try_new([]).is_err());
    let (generated, bytes) = SessionKey::generate().unwrap();
    assert_eq!(generated.id(), SessionKey::new(bytes).unwrap().id());
}
