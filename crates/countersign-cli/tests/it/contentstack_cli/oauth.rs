//! OAuth: the URL, and the code exchange and refresh against a local Developer Hub

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

use super::*;

/// A local Developer Hub at `/apps-api/token`: it records each form and answers a token set,
/// or 400 `invalid_grant` for the code `used` and the refresh token `dead`.
fn developer_hub() -> (String, Arc<Mutex<Vec<String>>>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let forms = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&forms);
    let addr = runtime.block_on(async move {
        let app = Router::new().route(
            "/apps-api/token",
            post(move |form: String| async move {
                recorded.lock().unwrap().push(form.clone());
                if form.contains("code=used&") || form.contains("refresh_token=dead&") {
                    return (
                        StatusCode::BAD_REQUEST,
                        r#"{"error":"invalid_grant","error_description":"The grant was used"}"#,
                    );
                }
                (
                    StatusCode::OK,
                    r#"{"access_token":"at-1","refresh_token":"rt-2","token_type":"Bearer","expires_in":3600,"location":"EU","organization_uid":"org1","authorization_type":"app","stack_api_key":"blt1"}"#,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    (format!("http://{addr}"), forms, runtime)
}

#[test]
fn oauth_url_prints_the_install_or_the_authorize_url() {
    let install = countersign(&[
        "contentstack",
        "oauth",
        "url",
        "--app-uid",
        "app1",
        "--client-id",
        "cid",
        "--redirect-uri",
        "https://my.app/cb",
        "--region",
        "eu",
    ]);
    assert_eq!(install.status.code(), Some(0), "{}", stderr(&install));
    assert_eq!(
        stdout(&install).trim(),
        "https://eu-app.contentstack.com/apps/app1/install"
    );

    let authorize = countersign(&[
        "contentstack",
        "oauth",
        "url",
        "--app-uid",
        "app1",
        "--client-id",
        "cid",
        "--redirect-uri",
        "https://my.app/cb",
        "--user",
        "--scope",
        "user:read",
        "--state",
        "st",
        "--code-verifier",
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    ]);
    assert_eq!(
        stdout(&authorize).trim(),
        "https://app.contentstack.com/apps/app1/authorize?response_type=code&client_id=cid\
         &redirect_uri=https%3A%2F%2Fmy.app%2Fcb&scope=user%3Aread&state=st\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    );
    let bad = countersign(&[
        "contentstack",
        "oauth",
        "url",
        "--app-uid",
        "a",
        "--client-id",
        "c",
        "--redirect-uri",
        "https://x",
        "--code-verifier",
        "short",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn oauth_exchange_and_refresh_post_the_forms_and_print_the_answer() {
    let (base, forms, _runtime) = developer_hub();
    let exchanged = countersign(&[
        "contentstack",
        "oauth",
        "exchange",
        "--client-id",
        "cid",
        "--client-secret",
        "s3cret",
        "--redirect-uri",
        "https://my.app/cb",
        "--code",
        "code-1",
        "--location",
        "AZURE_EU",
        "--region",
        &base,
    ]);
    assert_eq!(exchanged.status.code(), Some(0), "{}", stderr(&exchanged));
    let answer: Value = serde_json::from_str(&stdout(&exchanged)).unwrap();
    assert_eq!(answer["access_token"], "at-1");
    assert_eq!(answer["refresh_token"], "rt-2");

    let refreshed = countersign(&[
        "contentstack",
        "oauth",
        "refresh",
        "--client-id",
        "cid",
        "--redirect-uri",
        "https://my.app/cb",
        "--refresh-token",
        "rt-2",
        "--region",
        &base,
    ]);
    assert_eq!(refreshed.status.code(), Some(0), "{}", stderr(&refreshed));
    assert_eq!(
        forms.lock().unwrap().as_slice(),
        [
            "grant_type=authorization_code&code=code-1&redirect_uri=https%3A%2F%2Fmy.app%2Fcb&client_id=cid&client_secret=s3cret",
            "grant_type=refresh_token&refresh_token=rt-2&client_id=cid&redirect_uri=https%3A%2F%2Fmy.app%2Fcb",
        ]
    );
}

#[test]
fn a_used_grant_exits_1_and_a_location_that_is_a_url_exits_2() {
    let (base, forms, _runtime) = developer_hub();
    let used = countersign(&[
        "contentstack",
        "oauth",
        "exchange",
        "--client-id",
        "cid",
        "--code-verifier",
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "--redirect-uri",
        "https://my.app/cb",
        "--code",
        "used",
        "--region",
        &base,
    ]);
    assert_eq!(used.status.code(), Some(1));
    assert!(
        stderr(&used).starts_with("oauth_invalid_grant: 400 Bad Request invalid_grant"),
        "{}",
        stderr(&used)
    );

    let dead = countersign(&[
        "contentstack",
        "oauth",
        "refresh",
        "--client-id",
        "cid",
        "--redirect-uri",
        "https://my.app/cb",
        "--refresh-token",
        "dead",
        "--region",
        &base,
    ]);
    assert_eq!(dead.status.code(), Some(1));
    assert!(stderr(&dead).starts_with("oauth_invalid_grant"));

    let sent_before = forms.lock().unwrap().len();
    let redirected = countersign(&[
        "contentstack",
        "oauth",
        "exchange",
        "--client-id",
        "cid",
        "--client-secret",
        "s3cret",
        "--redirect-uri",
        "https://my.app/cb",
        "--code",
        "c",
        "--location",
        &base,
    ]);
    assert_eq!(
        redirected.status.code(),
        Some(2),
        "a location is never a URL"
    );
    let public_without_verifier = countersign(&[
        "contentstack",
        "oauth",
        "exchange",
        "--client-id",
        "cid",
        "--redirect-uri",
        "https://my.app/cb",
        "--code",
        "c",
        "--region",
        &base,
    ]);
    assert_eq!(public_without_verifier.status.code(), Some(2));
    let told = stderr(&public_without_verifier);
    assert!(
        told.contains("--client-secret") && told.contains("--code-verifier"),
        "an exchange without either names both: {told}"
    );
    assert_eq!(
        forms.lock().unwrap().len(),
        sent_before,
        "nothing was sent for bad input"
    );
}
