//! The captured request: raw HTTP/1.1 bytes (as `nc -l` or a proxy's log keeps them), parsed
//! into method, target, headers and body (chunked bodies de-chunked).

use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// A request as captured.
pub(super) struct Captured {
    pub(super) method: Method,
    pub(super) target: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

pub(super) fn parse_request(raw: &[u8]) -> Result<Captured, String> {
    let (head, rest) = find_head_end(raw).ok_or("no blank line ends the headers")?;
    let head =
        std::str::from_utf8(head).map_err(|_| "the request line and headers are not text")?;
    let mut lines = head.lines();
    let request_line = lines.next().ok_or("no request line")?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().ok_or("no method")?,
        parts.next().ok_or("no request target")?,
    );
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| format!("{method:?} is not a method"))?;
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("{line:?} is not a header"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} is not a header value"))?;
        headers.try_append(name, value).map_err(|_| {
            format!(
                "the request has more header fields than a header map holds ({} fields read)",
                headers.len()
            )
        })?;
    }
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok())
    {
        rest.get(..length)
            .ok_or("the body is shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Captured {
        method,
        target: target.to_owned(),
        headers,
        body,
    })
}

fn find_head_end(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    for (separator, len) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(at) = raw.windows(len).position(|w| w == separator) {
            return Some((&raw[..at], &raw[at + len..]));
        }
    }
    None
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line does not end")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).ok_or("a chunk is cut short")?);
        rest = rest.get(size + 2..).ok_or("a chunk is cut short")?;
    }
}
