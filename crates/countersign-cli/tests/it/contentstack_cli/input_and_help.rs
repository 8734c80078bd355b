//! Input errors and help

use super::*;

#[test]
fn bad_input_exits_2() {
    let missing = key("missing.pem");
    let cases: [&[&str]; 6] = [
        &[
            "contentstack",
            "sign",
            "--private-key",
            &missing,
            "--body",
            "{}",
        ],
        &[
            "contentstack",
            "sign",
            "--private-key",
            &key("contentstack-a.public.pem"),
            "--body",
            "{}",
        ],
        &[
            "contentstack",
            "verify",
            "--public-key",
            &key("contentstack-a.private.pem"),
            "--signature",
            "v1=x",
            "--body",
            "{}",
        ],
        &["contentstack", "hmac-sign", "--secret", "", "--body", "{}"],
        &[
            "contentstack",
            "app-token",
            "mint",
            "--private-key",
            &key("contentstack-a.private.pem"),
            "--claims",
            "not json",
        ],
        &[
            "contentstack",
            "sign",
            "--private-key",
            &key("contentstack-a.private.pem"),
            "--salt-length",
            "64",
        ],
    ];
    for args in cases {
        let output = countersign(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn every_contentstack_command_has_help_with_an_example() {
    for args in [
        &["contentstack", "sign"][..],
        &["contentstack", "verify"],
        &["contentstack", "hmac-sign"],
        &["contentstack", "hmac-verify"],
        &["contentstack", "app-token", "mint"],
        &["contentstack", "app-token", "verify"],
    ] {
        let mut args = args.to_vec();
        args.push("--help");
        let output = countersign(&args);
        assert!(output.status.success());
        assert!(stdout(&output).contains("Example:"), "{args:?}");
    }
}
