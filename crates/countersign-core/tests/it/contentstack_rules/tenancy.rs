//! Binding to this app and its tenants (spec section 8)

use super::*;

fn installation(app_uid: &str, event: &str, stack: &str) -> Vec<u8> {
    format!(
        r#"{{"triggered_at":"2024-07-25T08:48:46.861Z","module":"app_installation","event":"{event}","api_key":"{stack}","data":{{"app_installation":{{"app_uid":"{app_uid}","app_version":1,"organization_uid":"bltorg","installation_uid":"inst","target":{{"type":"stack","uid":"{stack}"}}}}}}}}"#
    )
    .into_bytes()
}

fn verified(body: &[u8]) -> VerifiedWebhook {
    WebhookVerifier::new()
        .diagnose()
        .verify_with_keys(
            &signed(body, SaltLength::Digest),
            body,
            Some(&keys_a()),
            soon(),
        )
        .unwrap()
}

/// Polls a future that is ready at once.
fn now_or_never<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the check was not ready"),
    }
}

fn tenancy_error<S: StackCheck>(tenancy: &Tenancy<S>, body: &[u8]) -> Option<ErrorKind> {
    now_or_never(tenancy.check(&verified(body)))
        .err()
        .map(|e| e.kind())
}

#[test]
fn installation_events_are_accepted_only_for_this_app() {
    let tenancy = Tenancy::new()
        .with_app_uid("app-ours")
        .with_stacks(StackAllowlist::new(["blt-known"]));
    for event in ["install", "upgrade", "update", "uninstall"] {
        let ours = installation("app-ours", event, "blt-new");
        assert_eq!(verified(&ours).installation_app_uid(), Some("app-ours"));
        assert_eq!(
            tenancy_error(&tenancy, &ours),
            None,
            "{event}: a stack becomes ours by its install"
        );
        assert_eq!(
            tenancy_error(&tenancy, &installation("app-theirs", event, "blt-known")),
            Some(ErrorKind::AppMismatch),
            "{event}"
        );
    }
    let no_app = br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"app_installation","event":"install","api_key":"blt-known","data":[1,2]}"#;
    assert_eq!(
        tenancy_error(&tenancy, no_app),
        Some(ErrorKind::AppMismatch)
    );
}

#[test]
fn other_deliveries_are_accepted_only_from_our_stacks() {
    let tenancy = Tenancy::new()
        .with_app_uid("app-ours")
        .with_stacks(StackAllowlist::new(["blt1"]));
    assert_eq!(tenancy_error(&tenancy, &body()), None);
    let foreign = br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","api_key":"blt-other","event":"publish","data":{}}"#;
    assert_eq!(
        tenancy_error(&tenancy, foreign),
        Some(ErrorKind::StackNotAllowed)
    );
    let no_stack = br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","event":"publish","data":{}}"#;
    assert_eq!(
        tenancy_error(&tenancy, no_stack),
        Some(ErrorKind::StackNotAllowed)
    );
}

#[test]
fn an_async_stack_check_can_answer_or_fail() {
    let tenancy = Tenancy::new().with_stacks(stack_check_fn(|api_key: &str| {
        let answer = match api_key {
            "blt1" => Ok(true),
            "blt-down" => Err(TenantUnavailable::new("the database is down")),
            _ => Ok(false),
        };
        std::future::ready(answer)
    }));
    assert_eq!(tenancy_error(&tenancy, &body()), None);
    let down = br#"{"triggered_at":"2024-07-25T08:48:46.861Z","module":"entry","api_key":"blt-down","event":"publish","data":{}}"#;
    assert_eq!(
        tenancy_error(&tenancy, down),
        Some(ErrorKind::TenantCheckUnavailable)
    );
    assert_eq!(
        ErrorKind::TenantCheckUnavailable.code(),
        "tenant_check_unavailable"
    );
    assert_eq!(ErrorKind::StackNotAllowed.code(), "stack_not_allowed");
    assert_eq!(ErrorKind::AppMismatch.code(), "app_uid_mismatch");
}

#[test]
fn an_app_token_of_another_app_is_refused_when_the_app_uid_is_required() {
    let now = at_ms(TRIGGERED_MS);
    let token = mint_app_token(&signer(KEY_A), &claims(), now, Duration::from_secs(300)).unwrap();
    let ours = AppTokenVerifier::new().with_app_uid("app");
    assert_eq!(ours.verify(&token, &keys_a(), now).unwrap().app_uid, "app");
    let err = AppTokenVerifier::new()
        .with_app_uid("another-app")
        .verify(&token, &keys_a(), now)
        .unwrap_err();
    assert_eq!(err.kind(), AppTokenErrorKind::AppMismatch);
    assert_eq!(err.kind().code(), "app_token_app_mismatch");
}

/// A stack's admins can read its HMAC secret, so an installation event signed with it could be
/// a forged uninstall of their own stack (or an install of one): only RSA makes one, whatever
/// the tenancy, and even with no app uid set.
#[test]
fn installation_events_are_trusted_only_when_rsa_signed() {
    let secret = HmacSecret::new("stack-admins-secret").unwrap();
    for tenancy in [Tenancy::new().with_app_uid("app-ours"), Tenancy::new()] {
        for event in ["install", "upgrade", "uninstall"] {
            let body = installation("app-ours", event, "blt-known");
            let refused = now_or_never(tenancy.check(&hmac_verified(&secret, &body))).unwrap_err();
            assert_eq!(
                refused.kind(),
                ErrorKind::InstallationEventNotRsa,
                "{event}"
            );
            assert_eq!(refused.kind().code(), "installation_event_not_rsa");
            assert_eq!(refused.kind().reason().status, http::StatusCode::FORBIDDEN);
            assert_eq!(
                tenancy_error(&tenancy, &body),
                None,
                "{event}, signed with RSA"
            );
        }
    }
    // A content event signed with the stack's HMAC secret is the stack's own to send.
    let content = hmac_verified(&secret, &body());
    assert!(now_or_never(Tenancy::new().check(&content)).is_ok());
}

/// `body` signed with `secret` by the HMAC method, verified.
fn hmac_verified(secret: &HmacSecret, body: &[u8]) -> VerifiedWebhook {
    WebhookVerifier::hmac_only(secret.clone())
        .diagnose()
        .verify_with_keys(
            &hmac_headers(&secret.sign(body, at_ms(TRIGGERED_MS))),
            body,
            None,
            soon(),
        )
        .unwrap()
}
