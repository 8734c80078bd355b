#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::{Duration, SystemTime};

use http::StatusCode;

use super::*;

const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

#[test]
fn the_authorize_url_carries_every_field_encoded() {
    let verifier = CodeVerifier::new(RFC_VERIFIER).unwrap();
    let url = Authorization::new("app 1", "cid", "https://my.app/cb?x=1")
        .with_scopes(["cm.entries.management:read", "user:read"])
        .with_state("s&t")
        .with_pkce(&verifier)
        .authorize_url(&Region::AzureEu);
    assert_eq!(
        url,
        "https://azure-eu-app.contentstack.com/apps/app%201/authorize?response_type=code&client_id=cid\
         &redirect_uri=https%3A%2F%2Fmy.app%2Fcb%3Fx%3D1&scope=cm.entries.management%3Aread+user%3Aread\
         &state=s%26t&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    );
}

#[test]
fn the_install_url_is_the_app_hosts_and_a_custom_base_serves_it() {
    let plain = Authorization::new("app1", "cid", "https://my.app/cb");
    assert_eq!(
        plain.install_url(&Region::Na),
        "https://app.contentstack.com/apps/app1/install"
    );
    let local: Region = "http://127.0.0.1:9000".parse().unwrap();
    assert_eq!(
        plain.clone().with_state("st").install_url(&local),
        "http://127.0.0.1:9000/apps/app1/install?state=st"
    );
    assert!(
        plain
            .authorize_url(&local)
            .starts_with("http://127.0.0.1:9000/apps/app1/authorize?")
    );
}

#[test]
fn every_region_has_its_token_endpoint_and_cma_host() {
    let table: Vec<_> = Region::ALL
        .iter()
        .map(|region| (region.location(), region.token_url(), region.cma_base_url()))
        .collect();
    assert_eq!(
        table,
        [
            (
                "NA",
                "https://developerhub-api.contentstack.com/token",
                "https://api.contentstack.io/v3"
            ),
            (
                "EU",
                "https://eu-developerhub-api.contentstack.com/token",
                "https://eu-api.contentstack.com/v3"
            ),
            (
                "AU",
                "https://au-developerhub-api.contentstack.com/token",
                "https://au-api.contentstack.com/v3"
            ),
            (
                "AZURE_NA",
                "https://azure-na-developerhub-api.contentstack.com/token",
                "https://azure-na-api.contentstack.com/v3"
            ),
            (
                "AZURE_EU",
                "https://azure-eu-developerhub-api.contentstack.com/token",
                "https://azure-eu-api.contentstack.com/v3"
            ),
            (
                "GCP_NA",
                "https://gcp-na-developerhub-api.contentstack.com/token",
                "https://gcp-na-api.contentstack.com/v3"
            ),
            (
                "GCP_EU",
                "https://gcp-eu-developerhub-api.contentstack.com/token",
                "https://gcp-eu-api.contentstack.com/v3"
            ),
        ]
        .map(|(l, t, c)| (l, t.to_owned(), c.to_owned()))
    );
    let local: Region = "http://127.0.0.1:9000".parse().unwrap();
    assert_eq!(local.token_url(), "http://127.0.0.1:9000/apps-api/token");
    assert_eq!(local.cma_base_url(), "http://127.0.0.1:9000/v3");
}

#[test]
fn a_location_names_one_of_seven_regions_and_never_a_url() {
    for region in Region::ALL {
        assert_eq!(Region::Na.for_location(region.location()).unwrap(), region);
        assert_eq!(
            Region::Eu
                .for_location(&region.location().to_ascii_lowercase())
                .unwrap(),
            region
        );
    }
    for bad in [
        "",
        "US",
        "eu-west",
        "https://evil.example",
        "http://127.0.0.1:1",
        "NA/../x",
    ] {
        assert!(Region::Na.for_location(bad).is_err(), "{bad:?}");
    }
    let local: Region = "http://127.0.0.1:9000".parse().unwrap();
    assert_eq!(local.for_location("GCP_EU").unwrap(), local);
    assert!(local.for_location("https://evil.example").is_err());
}

#[test]
fn the_forms_are_the_sdks_fields_in_its_order() {
    let verifier = CodeVerifier::new(RFC_VERIFIER).unwrap();
    let public = Client::new("cid", "https://example.com/cb");
    assert_eq!(
        public.exchange_form("code1", Some(&verifier)).unwrap(),
        "grant_type=authorization_code&code=code1&redirect_uri=https%3A%2F%2Fexample.com%2Fcb\
         &client_id=cid&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    );
    assert!(public.exchange_form("code1", None).is_err());
    assert_eq!(
        public.refresh_form(&RefreshToken::new("rt1")),
        "grant_type=refresh_token&refresh_token=rt1&client_id=cid&redirect_uri=https%3A%2F%2Fexample.com%2Fcb"
    );
    let confidential = public.with_secret(ClientSecret::new("s3cr&t").unwrap());
    assert!(
        confidential
            .exchange_form("code1", Some(&verifier))
            .unwrap()
            .ends_with("&client_id=cid&client_secret=s3cr%26t"),
        "a confidential client sends its secret, not a verifier"
    );
    assert!(
        confidential
            .refresh_form(&RefreshToken::new("rt1"))
            .ends_with("&redirect_uri=https%3A%2F%2Fexample.com%2Fcb&client_secret=s3cr%26t")
    );
    assert!(ClientSecret::new(" ").is_err());
}

#[test]
fn an_issued_token_set_is_read_with_its_expiry() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let body = br#"{"access_token":"at","refresh_token":"rt","token_type":"Bearer","expires_in":3600,
        "location":"EU","organization_uid":"org1","authorization_type":"app","stack_api_key":"blt1"}"#;
    let Answer::Issued(tokens) = read_answer(StatusCode::OK, body, now) else {
        panic!("a token set");
    };
    assert_eq!(tokens.access_token.expose(), "at");
    assert_eq!(tokens.refresh_token.as_ref().unwrap().expose(), "rt");
    assert_eq!(tokens.expires_at, now + Duration::from_secs(3600));
    assert_eq!(tokens.location.as_deref(), Some("EU"));
    assert_eq!(tokens.organization_uid.as_deref(), Some("org1"));
    assert_eq!(tokens.authorization_type, Some(AuthorizationType::App));
    assert_eq!(tokens.stack_api_key.as_deref(), Some("blt1"));
    assert_eq!(tokens.user_uid, None);
    let shown = format!("{tokens:?}");
    assert!(
        !shown.contains("\"at\"") && !shown.contains("\"rt\""),
        "{shown}"
    );
    assert!(shown.contains("<redacted>"));

    let kept =
        br#"{"access_token":"at2","expires_in":3600,"authorization_type":"user","user_uid":"u1"}"#;
    let Answer::Issued(tokens) = read_answer(StatusCode::OK, kept, now) else {
        panic!("a token set without a new refresh token");
    };
    assert_eq!(tokens.refresh_token, None);
    assert_eq!(tokens.authorization_type, Some(AuthorizationType::User));
}

#[test]
fn refusals_are_told_apart() {
    let now = SystemTime::UNIX_EPOCH;
    let invalid = br#"{"error":"invalid_grant","error_description":"The code has expired"}"#;
    match read_answer(StatusCode::BAD_REQUEST, invalid, now) {
        Answer::InvalidGrant(refusal) => {
            assert_eq!(refusal.error.as_deref(), Some("invalid_grant"));
            assert_eq!(
                refusal.to_string(),
                "400 Bad Request invalid_grant: The code has expired"
            );
        }
        other => panic!("{other:?}"),
    }
    let client = br#"{"error":"invalid_client","error_description":"bad\nsecret"}"#;
    match read_answer(StatusCode::UNAUTHORIZED, client, now) {
        Answer::Refused(refusal) => assert_eq!(refusal.description, "bad secret"),
        other => panic!("{other:?}"),
    }
    for status in [
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::BAD_GATEWAY,
        StatusCode::INTERNAL_SERVER_ERROR,
    ] {
        assert_eq!(
            read_answer(status, b"<html>", now),
            Answer::Unavailable(status)
        );
    }
    for body in [
        &b"{}"[..],
        b"not json",
        br#"{"access_token":"","expires_in":1}"#,
        br#"{"access_token":"a","expires_in":1,"token_type":"mac"}"#,
        br#"{"access_token":"a","expires_in":1,"authorization_type":"root"}"#,
    ] {
        assert!(
            matches!(read_answer(StatusCode::OK, body, now), Answer::Refused(_)),
            "{body:?}"
        );
    }
    let huge = br#"{"access_token":"a","expires_in":18446744073709551615}"#;
    assert!(
        matches!(read_answer(StatusCode::OK, huge, now), Answer::Issued(_)),
        "a huge expires_in never overflows"
    );
}

#[test]
fn no_secret_reaches_debug_output() {
    let shown = format!(
        "{:?} {:?} {:?} {:?}",
        Client::new("cid", "https://x").with_secret(ClientSecret::new("s3cret").unwrap()),
        AccessToken::new("at-secret"),
        RefreshToken::new("rt-secret"),
        CodeVerifier::new(RFC_VERIFIER).unwrap()
    );
    for secret in ["s3cret", "at-secret", "rt-secret", RFC_VERIFIER] {
        assert!(!shown.contains(secret), "{shown}");
    }
}
