//! The canonical string: `METHOD \n PATH \n HEADERS \n BODY`.

use std::borrow::Cow;
use std::ops::Range;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use smallvec::SmallVec;

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
    let mut out = String::with_capacity(target.len());
    write_path(&mut out, "", target);
    out
}

/// Writes the PATH line of `prefix` followed by `target` (a prefix holds no `?`, so encoding
/// the two apart is encoding them together).
fn write_path(out: &mut String, prefix: &str, target: &str) {
    let (path, query) = match split_at_question_mark(target) {
        // What follows a second `?` is not signed.
        Some((path, rest)) => (
            path,
            split_at_question_mark(rest).map_or(rest, |(query, _)| query),
        ),
        None => (target, ""),
    };
    if !prefix.is_empty() {
        out.extend(utf8_percent_encode(prefix, URI));
    }
    out.extend(utf8_percent_encode(path, URI));
    if !query.is_empty() {
        out.push('?');
        for escaped in utf8_percent_encode(query, URI_COMPONENT) {
            out.extend(utf8_percent_encode(escaped, URI));
        }
    }
}

/// `text.split_once('?')`, by a plain scan of the bytes: a target is short, and `str`'s
/// searcher costs more to set up than the scan.
pub(super) fn split_at_question_mark(text: &str) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == b'?')?;
    // `?` is ASCII: `at` and `at + 1` are character boundaries.
    Some((text.get(..at)?, text.get(at + 1..)?))
}

/// A header name or value, borrowed from the request where possible.
pub(super) type Text<'a> = Cow<'a, str>;

/// Header `(name, value)` pairs, inline for the usual few (and room for the two the head adds).
pub(super) type Pairs<'a> = SmallVec<[(Text<'a>, Text<'a>); 8]>;

/// Where a signed header's name and value sit in the head's text.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

impl Span {
    /// The span of the byte ranges `name` and `value`. Headers never add up to 4 GiB; should
    /// they, an offset saturates, and reading it gives an empty text rather than a panic.
    fn of(name: (usize, usize), value: (usize, usize)) -> Self {
        let at = |offset: usize| u32::try_from(offset).unwrap_or(u32::MAX);
        Self {
            name: (at(name.0), at(name.1)),
            value: (at(value.0), at(value.1)),
        }
    }
}

/// The part of the canonical string before the body, `METHOD \n PATH \n HEADERS \n`, built in
/// one buffer, and where each signed header sits in it.
///
/// HEADERS is `name:value` for each signed header, sorted by name (UTF-16 order, as
/// JavaScript sorts), joined by `;`, with two entries the signer adds: the signed-headers list
/// (every name of HEADERS, sorted, joined by `,`) and the timestamp.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Head {
    text: String,
    /// Name and value of each signed header but the list and the timestamp.
    entries: SmallVec<[Span; 6]>,
    /// The value of the signed-headers list.
    list: Range<usize>,
}

impl Head {
    /// The head of a request to `prefix` + `target`, with normalized `(name, value)` pairs in
    /// the order given (a later pair replaces an earlier one of the same name, as in a
    /// JavaScript object; given list and timestamp entries are replaced).
    pub(super) fn new(
        method: &str,
        prefix: &str,
        target: &str,
        pairs: &mut Pairs<'_>,
        timestamp_ms: u64,
    ) -> Self {
        let own = |name: &str| name == SIGNED_HEADERS || name == TIMESTAMP;
        if pairs.iter().any(|(name, _)| own(name)) {
            pairs.retain(|(name, _)| !own(name));
        }
        pairs.sort_by(|(a, _), (b, _)| js::cmp_utf16(a, b));
        // The sort is stable: of a run of one name, the last value given wins.
        pairs.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                std::mem::swap(&mut later.1, &mut earlier.1);
            }
            same
        });
        // Where the list's and the timestamp's own entries go among the others.
        let list_at =
            pairs.partition_point(|(name, _)| js::cmp_utf16(name, SIGNED_HEADERS).is_lt());
        let timestamp_at =
            pairs.partition_point(|(name, _)| js::cmp_utf16(name, TIMESTAMP).is_lt());
        let (before, rest) = pairs.split_at(list_at);
        let (between, after) = rest.split_at(timestamp_at - list_at);

        let length: usize = pairs.iter().map(|(n, v)| 2 * n.len() + v.len() + 2).sum();
        let mut text = String::with_capacity(
            method.len() + 3 * (prefix.len() + target.len()) + length + 2 * 50 + 24,
        );
        text.push_str(method);
        text.push('\n');
        write_path(&mut text, prefix, target);
        text.push('\n');
        let mut entries = SmallVec::new();
        let mut entry = |text: &mut String, name: &str, value: &str| {
            let name_at = text.len();
            text.push_str(name);
            let name_at = (name_at, text.len());
            text.push(':');
            let value_at = text.len();
            text.push_str(value);
            entries.push(Span::of(name_at, (value_at, text.len())));
        };
        for (name, value) in before {
            entry(&mut text, name, value);
            text.push(';');
        }
        text.push_str(SIGNED_HEADERS);
        text.push(':');
        let list_start = text.len();
        for (name, _) in before {
            text.push_str(name);
            text.push(',');
        }
        text.push_str(SIGNED_HEADERS);
        for (name, _) in between {
            text.push(',');
            text.push_str(name);
        }
        text.push(',');
        text.push_str(TIMESTAMP);
        for (name, _) in after {
            text.push(',');
            text.push_str(name);
        }
        let list = list_start..text.len();
        text.push(';');
        for (name, value) in between {
            entry(&mut text, name, value);
            text.push(';');
        }
        text.push_str(TIMESTAMP);
        text.push(':');
        push_decimal(&mut text, timestamp_ms);
        for (name, value) in after {
            text.push(';');
            entry(&mut text, name, value);
        }
        text.push('\n');
        Self {
            text,
            entries,
            list,
        }
    }

    /// The value of `x-contentful-signed-headers`.
    pub(super) fn list(&self) -> &str {
        self.text.get(self.list.clone()).unwrap_or_default()
    }

    /// The signed headers but the list and the timestamp, sorted by name.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        let at = |(start, end): (u32, u32)| {
            self.text
                .get(start as usize..end as usize)
                .unwrap_or_default()
        };
        self.entries
            .iter()
            .map(move |span| (at(span.name), at(span.value)))
    }

    /// The HMAC-SHA256 of the canonical string: this head, then `body`.
    pub(super) fn mac(&self, key: &HmacSha256Key, body: &[u8]) -> [u8; HMAC_SHA256_LEN] {
        key.mac2(self.text.as_bytes(), body)
    }
}

/// Writes `n` in decimal, as JavaScript's `String(n)` does for an integer below 2^53.
///
/// Two digits per division, from a table of the hundred pairs: half the chain of divisions of
/// one digit at a time.
fn push_decimal(out: &mut String, mut n: u64) {
    /// `00`, `01`, ... `99`.
    const PAIRS: [u8; 200] = {
        let mut pairs = [0u8; 200];
        let mut i = 0;
        while i < 100 {
            pairs[2 * i] = b'0' + (i / 10) as u8;
            pairs[2 * i + 1] = b'0' + (i % 10) as u8;
            i += 1;
        }
        pairs
    };
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while n >= 100 {
        // Below 100: the cast is exact.
        let pair = 2 * (n % 100) as usize;
        n /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    // Below 100: the cast is exact.
    let pair = 2 * n as usize;
    if n >= 10 {
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = PAIRS[pair + 1];
    }
    out.extend(digits[at..].iter().map(|&digit| char::from(digit)));
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
    let mut pairs = headers
        .iter()
        .map(|(name, value)| {
            let (name, value) = normalize_header(name, value);
            (Cow::Owned(name), Cow::Owned(value))
        })
        .collect();
    let head = Head::new(method, "", target, &mut pairs, timestamp_ms);
    let mut out = head.text.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The name of the first header of `pairs` whose value could move a boundary of the canonical
/// string: one that holds `;` followed by a signed name (`is_signed`) and `:`, which is
/// exactly how an entry of HEADERS starts.
///
/// The toolkit escapes nothing, so such a value lets one signature stand for another set of
/// headers: a user who has a request signed for their own space, with a header whose value
/// carries `;x-contentful-space-id:<victim>;...`, can send the same signature with those
/// entries as real headers, and the canonical string is the same. Refusing every such value
/// leaves one reading of each canonical string: two requests whose signed headers differ
/// never share a signature (`../tests/it/contentful_props.rs` tries it). Every header Contentful
/// sends passes: its values hold no `;` (ids, CRNs, timestamps, topics), or a `;` followed by
/// a space or by no name and colon (`content-type: application/json; charset=utf-8`).
pub(super) fn boundary_mover<'p>(
    pairs: &'p [(Text<'_>, Text<'_>)],
    is_signed: impl Fn(&[u8]) -> bool,
) -> Option<&'p str> {
    pairs
        .iter()
        .find(|(_, value)| {
            let value = value.as_bytes();
            memchr::memchr_iter(b';', value).any(|at| {
                let rest = &value[at + 1..];
                memchr::memchr(b':', rest).is_some_and(|colon| {
                    let name = &rest[..colon];
                    name == SIGNED_HEADERS.as_bytes()
                        || name == TIMESTAMP.as_bytes()
                        || is_signed(name)
                })
            })
        })
        .map(|(name, _)| name.as_ref())
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
    fn decimals_are_written_as_javascript_writes_them() {
        for n in [
            0,
            7,
            10,
            99,
            100,
            101,
            999,
            9_999,
            10_000,
            10_001,
            99_990_000,
            1_700_000_000_000,
            (1 << 53) - 1,
            u64::MAX,
        ] {
            let mut out = String::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn the_question_mark_split_is_split_once() {
        for text in ["", "?", "/a", "/a?", "?b", "/a?b?c", "/ü?é"] {
            assert_eq!(
                split_at_question_mark(text),
                text.split_once('?'),
                "{text:?}"
            );
        }
    }

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
        let pairs = smallvec::smallvec![
            ("a".into(), "1".into()),
            ("b".into(), "x".into()),
            ("a".into(), "2".into()),
        ];
        let head = Head::new("GET", "", "/", &mut pairs.clone(), 1);
        assert_eq!(head.entries().next(), Some(("a", "2")));
        assert_eq!(
            head.list(),
            "a,b,x-contentful-signed-headers,x-contentful-timestamp"
        );
    }

    #[test]
    fn given_list_and_timestamp_values_are_overwritten() {
        let pairs = smallvec::smallvec![
            (SIGNED_HEADERS.into(), "forged".into()),
            (TIMESTAMP.into(), "0".into()),
        ];
        let head = Head::new("GET", "", "/", &mut pairs.clone(), 42);
        assert_eq!(
            head.text,
            "GET\n/\nx-contentful-signed-headers:x-contentful-signed-headers,x-contentful-timestamp;\
             x-contentful-timestamp:42\n"
        );
        assert_eq!(head.entries().count(), 0);
    }

    #[test]
    fn a_prefix_is_encoded_as_if_it_were_part_of_the_target() {
        let mut joined = String::new();
        write_path(&mut joined, "/api v1", "/hook?a=1");
        assert_eq!(joined, canonical_path("/api v1/hook?a=1"));
    }
}
