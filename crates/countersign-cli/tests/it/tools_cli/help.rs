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
