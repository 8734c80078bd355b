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

/// The request to `url` as a curl command line.
pub(crate) fn curl(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<String, String> {
    let mut line = format!("curl -sS -X {method} {}", shell_quote(url));
    for (name, value) in headers {
        line.push_str(" -H ");
        line.push_str(&shell_quote(&format!("{name}: {value}")));
    }
    if !body.is_empty() {
        // A shell argument carries text, never a NUL; anything else would send other bytes
        // than those signed.
        let text = std::str::from_utf8(body)
            .ok()
            .filter(|text| !text.contains('\0'))
            .ok_or("a body that is not UTF-8 text, or holds a NUL, cannot go on a curl command line: use --format http")?;
        // --data-raw: a body that starts with @ is sent, not read as a file's name.
        line.push_str(" --data-raw ");
        line.push_str(&shell_quote(text));
    }
    Ok(line)
}

/// The request to `url` as HTTP/1.1 text: request line, `Host`, the headers, `Content-Length`,
/// a blank line and the body.
///
/// # Errors
/// When `url` is not an http(s) URL.
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
    text.push_str(&String::from_utf8_lossy(body));
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
