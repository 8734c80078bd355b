//! The canonical string: `METHOD \n PATH \n HEADERS \n BODY`.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{SIGNED_HEADERS, TIMESTAMP};
use crate::crypto::{HMAC_SHA256_LEN, HmacSha256Key};
use crate::js;

/// What `encodeURIComponent` (and Node's `querystring.escape`) escape: all but
/// `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// What `encodeURI` escapes: as `encodeURIComponent`, but `; , / ? : @ & = + $ #` stay.
const URI: &AsciiSet = &URI_COMPONENT
    .remove(b';')
    .remove(b',')
    .remove(b'/')
    .remove(b'?')
    .remove(b':')
    .remove(b'@')
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b'#');

/// The PATH line of the canonical string for a request target.
///
/// Only the part before the first `?` and the part between the first and a second `?` are
/// kept. A non-empty query is escaped as by `encodeURIComponent`, then the whole `path?query`
/// as by `encodeURI`, so the query ends up encoded twice:
///
/// ```
/// use countersign_core::contentful::canonical_path;
/// assert_eq!(canonical_path("/a?b=1&c=2"), "/a?b%253D1%2526c%253D2");
/// assert_eq!(canonical_path("/a?x=1?y=2"), "/a?x%253D1");
/// assert_eq!(canonical_path("/a b/ü"), "/a%20b/%C3%BC");
/// ```
#[must_use]
pub fn canonical_path(target: &str) -> String {
    let mut parts = target.split('?');
    let path = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    if query.is_empty() {
        return utf8_percent_encode(path, URI).to_string();
    }
    let escaped_query: Cow<'_, str> = utf8_percent_encode(query, URI_COMPONENT).into();
    let mut out = utf8_percent_encode(path, URI).to_string();
    out.push('?');
    out.extend(utf8_percent_encode(&escaped_query, URI));
    out
}

/// A header name or value, borrowed from the request where possible.
pub(super) type Text<'a> = Cow<'a, str>;

/// The signed headers of a request, normalized, completed and sorted.
pub(super) struct CanonicalHeaders<'a> {
    /// `(name, value)`, sorted by name; includes the list and the timestamp.
    entries: Vec<(Text<'a>, Text<'a>)>,
    /// The value of `x-contentful-signed-headers`.
    list: String,
}

impl<'a> CanonicalHeaders<'a> {
    /// Builds the HEADERS part from normalized `(name, value)` pairs in the order given (a later
    /// pair replaces an earlier one of the same name, as in a JavaScript object). The
    /// signed-headers list and the timestamp are added, replacing any given values.
    pub(super) fn new(pairs: Vec<(Text<'a>, Text<'a>)>, timestamp_ms: u64) -> Self {
        let mut entries = pairs;
        entries.retain(|(name, _)| name != SIGNED_HEADERS && name != TIMESTAMP);
        // A stable sort keeps equal names in input order, so the last of a run wins.
        entries.sort_by(|(a, _), (b, _)| js::cmp_utf16(a, b));
        entries.reverse();
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        entries.reverse();

        let names = entries.iter().map(|(name, _)| name.as_ref());
        let mut list: Vec<&str> = names.chain([SIGNED_HEADERS, TIMESTAMP]).collect();
        list.sort_by(|a, b| js::cmp_utf16(a, b));
        let list = list.join(",");

        entries.push((Cow::Borrowed(SIGNED_HEADERS), Cow::Owned(list.clone())));
        entries.push((
            Cow::Borrowed(TIMESTAMP),
            Cow::Owned(timestamp_ms.to_string()),
        ));
        entries.sort_by(|(a, _), (b, _)| js::cmp_utf16(a, b));
        Self { entries, list }
    }

    /// The value of `x-contentful-signed-headers`.
    pub(super) fn list(&self) -> &str {
        &self.list
    }

    fn write(&self, sink: &mut impl FnMut(&[u8])) {
        for (i, (name, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                sink(b";");
            }
            sink(name.as_bytes());
            sink(b":");
            sink(value.as_bytes());
        }
    }
}

/// A request reduced to what the signature covers.
pub(super) struct Canonical<'a> {
    pub(super) method: &'a str,
    pub(super) path: String,
    pub(super) headers: &'a CanonicalHeaders<'a>,
    pub(super) body: &'a [u8],
}

impl Canonical<'_> {
    fn write_head(&self, sink: &mut impl FnMut(&[u8])) {
        sink(self.method.as_bytes());
        sink(b"\n");
        sink(self.path.as_bytes());
        sink(b"\n");
        self.headers.write(sink);
        sink(b"\n");
    }

    fn write(&self, sink: &mut impl FnMut(&[u8])) {
        self.write_head(sink);
        sink(self.body);
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.path.len() + self.body.len() + 256);
        self.write(&mut |part| out.extend_from_slice(part));
        out
    }

    pub(super) fn mac(&self, key: &HmacSha256Key) -> [u8; HMAC_SHA256_LEN] {
        // Everything before the body in one update: many small updates cost more than a copy.
        let mut head = Vec::with_capacity(self.path.len() + 512);
        self.write_head(&mut |part| head.extend_from_slice(part));
        let mut mac = key.start();
        mac.update(&head);
        mac.update(self.body);
        mac.finish()
    }
}

/// The exact bytes the signature of a request covers, as `signRequest` builds them.
///
/// `headers` are the headers to sign, as given to `signRequest` (names are lower-cased and
/// trimmed, values trimmed); the list and timestamp entries are added. Useful to compare with
/// what another implementation signed when a signature does not match.
///
/// ```
/// use countersign_core::contentful::canonical_string;
/// let canonical = canonical_string("GET", "/x?a=1", &[("Authorization", " Bearer T ")], b"", 1_700_000_000_000);
/// assert_eq!(
///     String::from_utf8(canonical).unwrap(),
///     "GET\n/x?a%253D1\nauthorization:Bearer T;\
///      x-contentful-signed-headers:authorization,x-contentful-signed-headers,x-contentful-timestamp;\
///      x-contentful-timestamp:1700000000000\n"
/// );
/// ```
#[must_use]
pub fn canonical_string(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timestamp_ms: u64,
) -> Vec<u8> {
    let pairs = headers
        .iter()
        .map(|(name, value)| {
            let (name, value) = normalize_header(name, value);
            (Cow::Owned(name), Cow::Owned(value))
        })
        .collect();
    let headers = CanonicalHeaders::new(pairs, timestamp_ms);
    Canonical {
        method,
        path: canonical_path(target),
        headers: &headers,
        body,
    }
    .to_bytes()
}

/// A header as `signRequest` normalizes it: name lower-cased and trimmed, value trimmed.
pub(super) fn normalize_header(name: &str, value: &str) -> (String, String) {
    (
        js::trim(&name.to_lowercase()).to_owned(),
        js::trim(value).to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_encoded_twice() {
        assert_eq!(canonical_path("/a?b=1&c=2"), "/a?b%253D1%2526c%253D2");
    }

    #[test]
    fn empty_query_is_dropped() {
        assert_eq!(canonical_path("/a?"), "/a");
    }

    #[test]
    fn anything_after_a_second_question_mark_is_not_signed() {
        assert_eq!(canonical_path("/a?x=1?y=2"), "/a?x%253D1");
        assert_eq!(canonical_path("/a??y=2"), "/a");
    }

    #[test]
    fn non_ascii_is_utf8_percent_encoded_upper_case() {
        assert_eq!(canonical_path("/a b/ü/€"), "/a%20b/%C3%BC/%E2%82%AC");
    }

    #[test]
    fn existing_percent_escapes_are_encoded_again() {
        assert_eq!(canonical_path("/a%20b"), "/a%2520b");
    }

    #[test]
    fn fragment_is_kept_and_signed() {
        assert_eq!(canonical_path("/a#frag"), "/a#frag");
        assert_eq!(canonical_path("/a?q=1#f"), "/a?q%253D1%2523f");
    }

    #[test]
    fn encode_uri_component_set_is_exact() {
        let unreserved = "AZaz09-_.!~*'()";
        assert_eq!(
            canonical_path(&format!("/?{unreserved}")),
            format!("/?{unreserved}")
        );
        for reserved in [";", ",", "/", "?", ":", "@", "&", "=", "+", "$", "#"] {
            let once = utf8_percent_encode(reserved, URI_COMPONENT).to_string();
            assert_eq!(once.len(), 3, "{reserved} is escaped in a query");
            if reserved != "?" {
                assert_eq!(
                    canonical_path(&format!("/{reserved}")).len(),
                    2,
                    "{reserved} stays in a path"
                );
            }
        }
    }

    #[test]
    fn parameter_order_matters() {
        assert_ne!(canonical_path("/a?x=1&y=2"), canonical_path("/a?y=2&x=1"));
    }

    #[test]
    fn header_names_are_lower_cased_and_trimmed_and_values_trimmed() {
        assert_eq!(
            normalize_header("  AUTHORIZATION ", "  Bearer TOKEN\t"),
            ("authorization".to_owned(), "Bearer TOKEN".to_owned())
        );
    }

    #[test]
    fn later_duplicate_header_replaces_earlier() {
        let headers = CanonicalHeaders::new(
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x".into()),
                ("a".into(), "2".into()),
            ],
            1,
        );
        assert_eq!(headers.entries[0], (Cow::Borrowed("a"), Cow::Borrowed("2")));
        assert_eq!(
            headers.list(),
            "a,b,x-contentful-signed-headers,x-contentful-timestamp"
        );
    }

    #[test]
    fn given_list_and_timestamp_values_are_overwritten() {
        let headers = CanonicalHeaders::new(
            vec![
                (SIGNED_HEADERS.into(), "forged".into()),
                (TIMESTAMP.into(), "0".into()),
            ],
            42,
        );
        let mut text = Vec::new();
        headers.write(&mut |part| text.extend_from_slice(part));
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "x-contentful-signed-headers:x-contentful-signed-headers,x-contentful-timestamp;\
             x-contentful-timestamp:42"
        );
    }
}
