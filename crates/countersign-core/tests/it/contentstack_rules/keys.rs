//! Keys

use super::*;

#[test]
fn pkcs1_spki_and_public_keys_json_are_the_same_key() {
    let pkcs1 = PublicKey::from_pem(PUBLIC_A).unwrap();
    let spki = PublicKey::from_pem(SPKI_A).unwrap();
    let json = KeySet::from_public_keys_json(JSON_A.as_bytes()).unwrap();
    assert_eq!(pkcs1, spki);
    assert_eq!(json.iter().next(), Some(&pkcs1));
    assert_eq!(pkcs1.bits(), 2048);
    assert_eq!(pkcs1.fingerprint().len(), 16);
}

#[test]
fn a_key_set_parses_from_any_accepted_form() {
    for text in [PUBLIC_A, SPKI_A, JSON_A] {
        assert_eq!(KeySet::parse(text).unwrap().len(), 1);
    }
    let both = KeySet::parse(&format!("{PUBLIC_A}\n{SPKI_A}\n{PUBLIC_B}")).unwrap();
    assert_eq!(both.len(), 3);
}

#[test]
fn pkcs8_and_pkcs1_private_keys_give_the_same_public_key() {
    let from_pkcs8 = signer(KEY_A);
    let from_pkcs1 = signer(KEY_A_PKCS1);
    assert_eq!(from_pkcs8.public_key(), from_pkcs1.public_key());
    assert_eq!(
        from_pkcs8.public_key(),
        &PublicKey::from_pem(PUBLIC_A).unwrap()
    );
    // What keygen writes parses back to the same key.
    assert_eq!(
        PublicKey::from_pem(&from_pkcs8.public_key().to_pkcs1_pem()).unwrap(),
        from_pkcs8.public_key().clone()
    );
    assert_eq!(
        SigningKey::from_pem(&from_pkcs8.to_pkcs1_pem())
            .unwrap()
            .public_key(),
        from_pkcs8.public_key()
    );
    let json = from_pkcs8.public_key().to_public_keys_json();
    assert_eq!(
        KeySet::parse(&json).unwrap(),
        KeySet::from(from_pkcs8.public_key().clone())
    );
}

#[test]
fn unusable_keys_are_configuration_errors() {
    let cases = [
        include_str!("../../data/keys/weak-1024.public.pem"),
        include_str!("../../data/keys/ec-p256.spki.pem"),
        KEY_A, // a private key where a public one belongs
        "not a key",
        "{\"other\":\"x\"}",
        "{\"signing-key\":42}",
        "",
    ];
    for text in cases {
        let err = KeySet::parse(text).unwrap_err();
        assert_eq!(err.kind(), ConfigErrorKind::InvalidKey, "{text:.40}");
    }
    assert!(SigningKey::from_pem(PUBLIC_A).is_err());
}

#[test]
fn keys_come_from_files_and_environment_variables() {
    let dir = std::env::temp_dir().join(format!("countersign-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("public-keys.json");
    std::fs::write(&path, JSON_A).unwrap();
    assert_eq!(KeySet::from_file(&path).unwrap(), keys_a());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(KeySet::from_file(dir.join("missing.pem")).is_err());

    // A PEM in an environment variable often has literal `\n`.
    read_in_child_process(
        "COUNTERSIGN_TEST_KEYS_FROM_ENV",
        &PUBLIC_A.replace('\n', "\\n"),
    );
    assert!(KeySet::from_env("COUNTERSIGN_TEST_UNSET_VARIABLE").is_err());
}

/// `std::env::set_var` is `unsafe` in edition 2024, and this crate has none: the variable is
/// set for a child process (this test binary, running `env_probe`), which reads the keys.
fn read_in_child_process(name: &str, value: &str) {
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new(exe)
        .args([
            "--exact",
            "contentstack_rules::keys::env_probe",
            "--ignored",
            "--nocapture",
        ])
        .env(name, value)
        .env("COUNTERSIGN_ENV_PROBE", name)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("probe: 1 key"));
}

#[test]
#[ignore = "run in a child process by keys_come_from_files_and_environment_variables"]
fn env_probe() {
    let name = std::env::var("COUNTERSIGN_ENV_PROBE").unwrap();
    let keys = KeySet::from_env(&name).unwrap();
    println!("probe: {} key", keys.len());
}

#[test]
fn debug_never_shows_key_material() {
    let key = signer(KEY_A);
    let shown = format!("{key:?} {:?}", key.public_key());
    assert!(shown.contains(key.public_key().fingerprint()));
    assert!(!shown.contains("MII"));
    let secret = HmacSecret::new("super-secret-value").unwrap();
    assert!(!format!("{secret:?}").contains("super-secret"));
    let verifier = WebhookVerifier::new().with_hmac_secret(secret);
    assert!(!format!("{verifier:?}").contains("super-secret"));
}
