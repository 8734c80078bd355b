//! A signed request as text to paste: a curl command line, or the HTTP request itself.

use clap::ValueEnum;

/// How `sign` prints what it signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// The signature headers only.
    Headers,
    /// A curl command line that sends the whole request: method, URL, every header, the body.
    Curl,
    /// The HTTP/1.1 request as it goes on the wire: request line, headers, blank line, body.
    Http,
}

/// `text` in single quotes for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What to do with a body that cannot be printed as it is.
const NOT_TEXT: &str = "a body that is not UTF-8 text, or holds control characters other than tab and \
     line breaks, cannot be printed as it is: print its signature (--format headers) and send \
     the file itself (curl --data-binary @FILE)";

/// `body` as text to print: UTF-8 without NULs, escapes or other control characters (a
/// terminal would act on them, and a shell argument cannot hold a NUL), or why not.
fn printable(body: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(body)
        .ok()
        .filter(|text| {
            !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        })
        .ok_or_else(|| NOT_TEXT.to_owned())
}

/// The request to `url` as a command line for a POSIX shell (`sh`, `bash`, `zsh`; not fish).
pub(crate) fn curl(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<String, String> {
    // --url: a URL that starts with `-` is not read as an option.
    let mut line = format!("curl -sS -X {method} --url {}", shell_quote(url));
    for (name, value) in headers {
        line.push_str(" -H ");
        line.push_str(&shell_quote(&format!("{name}: {value}")));
    }
    if !body.is_empty() {
        // --data-raw: a body that starts with @ is sent, not read as a file's name.
        line.push_str(" --data-raw ");
        line.push_str(&shell_quote(printable(body)?));
    }
    Ok(line)
}

/// The request to `url` as HTTP/1.1 text: request line, `Host`, the headers, `Content-Length`,
/// a blank line and the body.
///
/// # Errors
/// When `url` is not an http(s) URL, or the body cannot be printed as it is.
pub(crate) fn http(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return Err(format!("{url:?} names no host")),
    };
    let target = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    text.push_str(printable(body)?);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_in_a_value_is_kept_by_the_shell() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_http_text_carries_host_target_headers_length_and_body() {
        let text = http(
            "POST",
            "http://127.0.0.1:3000/hooks?x=1",
            &[("a".into(), "1".into())],
            b"{}",
        )
        .unwrap();
        assert_eq!(
            text,
            "POST /hooks?x=1 HTTP/1.1\r\nHost: 127.0.0.1:3000\r\na: 1\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
