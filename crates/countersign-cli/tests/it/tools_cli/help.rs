//! Help and input errors

use super::*;

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        &["keygen"][..],
        &["contentful", "secret"],
        &["send", "contentstack"],
        &["send", "contentful"],
        &["inspect"],
        &["reconcile", "contentstack"],
        &["reconcile", "contentful"],
    ] {
        let mut args = args.to_vec();
        args.push("--help");
        let output = countersign(&args);
        assert!(output.status.success(), "{args:?}");
        assert!(stdout(&output).contains("Example:"), "{args:?}");
    }
}

#[test]
fn inspect_of_a_request_with_too_many_header_names_exits_2_with_a_message() {
    let dir = temp_dir("too-many-headers");
    // 25,000 distinct names: more than a header map holds (it used to panic).
    let headers: Vec<(String, String)> = (0..25_000)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let file = capture(&dir, "many.http", "POST", "/hook", &headers, b"{}");
    let output = inspect_contentful(&file, &["a".repeat(64).as_str()], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("more header fields"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("panicked"));
}

#[test]
fn reconcile_refuses_bad_input_with_exit_2_and_an_unreachable_provider_with_exit_3() {
    let dir = temp_dir("reconcile-input");
    let inbox = format!("sqlite:{}", dir.join("inbox.sqlite3").display());
    let base = [
        "reconcile",
        "contentstack",
        "--region",
        "http://127.0.0.1:9",
        "--api-key",
        "blt1",
        "--management-token",
        "t",
        "--webhook",
        "w",
        "--since",
        "1700000000000",
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        countersign(&args)
    };
    for (extra, says) in [
        (
            &["--inbox", "mysql://x"][..],
            "sqlite:PATH or a postgres:// URL",
        ),
        (
            &["--inbox", inbox.as_str(), "--table", "t"],
            "--table names a PostgreSQL table",
        ),
        (
            &["--inbox", inbox.as_str(), "--commit", "--retry"],
            "cannot be used with",
        ),
    ] {
        let output = run(extra);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{extra:?}: {}",
            stderr(&output)
        );
    }
    let remote = countersign(&[
        "reconcile",
        "contentstack",
        "--region",
        "http://example.com",
        "--api-key",
        "blt1",
        "--management-token",
        "t",
        "--webhook",
        "w",
        "--since",
        "1700000000000",
        "--inbox",
        &inbox,
    ]);
    assert_eq!(
        remote.status.code(),
        Some(2),
        "plain http elsewhere: {}",
        stderr(&remote)
    );
    // No inbox there: it cannot be read.
    let output = run(&["--inbox", inbox.as_str()]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no SQLite inbox"),
        "{}",
        stderr(&output)
    );
    // An inbox (an empty SQLite file is an empty database), and nothing answers on port 9:
    // the provider cannot be read.
    std::fs::write(dir.join("inbox.sqlite3"), b"").unwrap();
    let output = run(&["--inbox", inbox.as_str()]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cma_unavailable"),
        "{}",
        stderr(&output)
    );
}
