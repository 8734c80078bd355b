//! The request's headers as Node.js hands them to the toolkit, and the signature, the
//! signed-headers list and the timestamp read from them.

use std::borrow::Cow;

use http::header::GetAll;
use http::{HeaderMap, HeaderValue};
use smallvec::SmallVec;

use super::EARLIEST_TIMESTAMP_MS;
use crate::contentful::canonical::{Pairs, Text};
use crate::contentful::{Error, ErrorKind, SIGNATURE, SIGNED_HEADERS, TIMESTAMP};
use crate::crypto::HMAC_SHA256_LEN;
use crate::js;

/// The value(s) of one header name, read lazily: most headers of a request are not looked at.
pub(super) enum Raw<'a> {
    One(&'a HeaderValue),
    /// A name sent more than once: its values are joined by `", "`, as Node.js joins them,
    /// when the text is read.
    Many(GetAll<'a, HeaderValue>),
}

impl<'a> Raw<'a> {
    /// The text as Node.js hands it to the toolkit: trimmed, and borrowed from the request in
    /// the usual case of one UTF-8 value.
    pub(super) fn text(&self) -> Text<'a> {
        match self {
            // Visible ASCII, the usual case: of JavaScript's white space only spaces and tabs
            // can be in it.
            Self::One(value) => match value.to_str() {
                Ok(text) => Cow::Borrowed(trim_spaces_and_tabs(text)),
                Err(_) => match js::header_text(value.as_bytes()) {
                    Cow::Borrowed(text) => Cow::Borrowed(js::trim(text)),
                    Cow::Owned(text) => Cow::Owned(js::trim(&text).to_owned()),
                },
            },
            Self::Many(values) => {
                let mut joined = String::new();
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        joined.push_str(", ");
                    }
                    joined.push_str(&js::header_text(value.as_bytes()));
                }
                Cow::Owned(js::trim(&joined).to_owned())
            }
        }
    }
}

/// `text.trim_matches([' ', '\t'])`, by bytes rather than by characters.
fn trim_spaces_and_tabs(text: &str) -> &str {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let bytes = text.as_bytes();
    let Some(start) = bytes.iter().position(|b| !blank(b)) else {
        return "";
    };
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |last| last + 1);
    // Next to a space or a tab, or at an end: character boundaries.
    text.get(start..end).unwrap_or_default()
}

impl<'a> Raw<'a> {
    /// The value's bytes trimmed of spaces and tabs, when that is exactly what JavaScript's
    /// trim gives: one value whose ends, once trimmed, are ASCII (a header value holds no other
    /// ASCII white space, and JavaScript's other white space is never ASCII). What the protocol
    /// headers are read from without building text.
    pub(super) fn ascii_trimmed(&self) -> Option<&'a [u8]> {
        let Self::One(value) = self else {
            return None;
        };
        let trimmed = value.as_bytes().trim_ascii();
        let ascii = |end: Option<&u8>| end.is_none_or(u8::is_ascii);
        (ascii(trimmed.first()) && ascii(trimmed.last())).then_some(trimmed)
    }
}

/// The request's headers, each name once with its value(s), read in one pass over the map
/// (whose repeated values of a name come one after another): the three of the signing
/// protocol apart, the others inline for the usual dozen.
pub(super) struct Received<'a> {
    pub(super) signature: Option<Raw<'a>>,
    pub(super) timestamp: Option<Raw<'a>>,
    pub(super) list: Option<Raw<'a>>,
    others: SmallVec<[(&'a str, Raw<'a>); 12]>,
}

impl<'a> Received<'a> {
    /// None yet. Filled where it is kept ([`Received::read`]): its dozen inline headers,
    /// returned, were copied from frame to frame.
    pub(super) fn new() -> Self {
        Self {
            signature: None,
            timestamp: None,
            list: None,
            others: SmallVec::new(),
        }
    }

    /// Reads `headers` into this (new) one.
    pub(super) fn read(&mut self, headers: &'a HeaderMap) {
        let mut all = headers.iter().peekable();
        while let Some((name, first)) = all.next() {
            let mut repeated = false;
            while all.next_if(|(next, _)| *next == name).is_some() {
                repeated = true;
            }
            let raw = if repeated {
                Raw::Many(headers.get_all(name))
            } else {
                Raw::One(first)
            };
            match name.as_str() {
                SIGNATURE => self.signature = Some(raw),
                TIMESTAMP => self.timestamp = Some(raw),
                SIGNED_HEADERS => self.list = Some(raw),
                other => self.others.push((other, raw)),
            }
        }
    }

    /// The headers whose names are in the signed list, exactly as listed (a listed name in
    /// another case, or with spaces, matches nothing), with their texts. The list and the
    /// timestamp are the head's own entries, never taken from here; the signature is taken
    /// when listed. Into `pairs` (empty), so that they are written once, where the caller
    /// keeps them.
    pub(super) fn pick(&self, listed: &Listed<'_>, pairs: &mut Pairs<'a>) {
        for (name, raw) in &self.others {
            if listed.contains(name.as_bytes()) {
                pairs.push((Cow::Borrowed(*name), raw.text()));
            }
        }
        if let Some(raw) = &self.signature
            && listed.contains(SIGNATURE.as_bytes())
        {
            pairs.push((Cow::Borrowed(SIGNATURE), raw.text()));
        }
    }
}

/// The names of a signed-header list, for looking request headers up in. A few names (the
/// usual three to six) are scanned, where comparing lengths first skips most comparisons of
/// bytes; more are sorted once and bisected, so that a long list and many headers cost
/// `O(n log n)`, not `O(n * m)`.
pub(super) struct Listed<'l> {
    names: SmallVec<[&'l [u8]; 8]>,
}

impl<'l> Listed<'l> {
    /// Up to this many names are scanned.
    const SCANNED: usize = 8;

    /// No names yet. Filled where it is kept ([`Listed::split`]), so that its names are
    /// written once, not moved from frame to frame.
    pub(super) fn new() -> Self {
        Self {
            names: SmallVec::new(),
        }
    }

    /// Adds the names of a signed-header list, split at every comma, nothing trimmed (as the
    /// toolkit splits it), keeping at most `most` of them: how many names the list has. A
    /// list of many empty names (all commas) is counted, not kept, so that refusing it costs
    /// no memory. Eight bytes at a time, with no dispatch: a list is a few dozen bytes,
    /// shorter than a vectorized search needs to pay off.
    pub(super) fn split(&mut self, list: &'l [u8], most: usize) -> usize {
        let mut start = 0;
        let mut names = 1;
        for comma in memchr::arch::all::memchr::One::new(b',').iter(list) {
            if self.names.len() < most {
                self.names.push(&list[start..comma]);
            }
            names += 1;
            start = comma + 1;
        }
        if self.names.len() < most {
            self.names.push(&list[start..]);
        }
        names
    }

    /// Readies [`Listed::contains`] once every name is in: more than a few are sorted.
    pub(super) fn index(&mut self) {
        if self.names.len() > Self::SCANNED {
            self.names.sort_unstable();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether `name` is one of the names, exactly ([`Listed::index`] first).
    pub(super) fn contains(&self, name: &[u8]) -> bool {
        if self.names.len() > Self::SCANNED {
            self.names.binary_search(&name).is_ok()
        } else {
            self.names.contains(&name)
        }
    }
}

pub(super) fn parse_signature(raw: Option<&Raw<'_>>) -> Result<[u8; HMAC_SHA256_LEN], Error> {
    let raw = raw.ok_or_else(|| {
        Error::new(
            ErrorKind::MissingSignature,
            "the request has no x-contentful-signature header",
        )
    })?;
    if let Some(signature) = raw.ascii_trimmed().and_then(decode_lower_hex) {
        return Ok(signature);
    }
    let text = raw.text();
    decode_lower_hex(text.as_bytes()).ok_or_else(|| {
        Error::new(
            ErrorKind::MalformedSignature,
            format!(
                "x-contentful-signature must be 64 lower-case hex characters; it has {} characters",
                text.chars().count()
            ),
        )
    })
}

/// 64 lower-case hex digits (what the toolkit sends), decoded; anything else is `None`.
///
/// Arithmetic rather than a table, and without early exits: every digit's value and validity
/// first, in a loop of independent bytes that the compiler vectorizes, then the pairs joined.
fn decode_lower_hex(text: &[u8]) -> Option<[u8; HMAC_SHA256_LEN]> {
    /// Whether `c` is `0`-`9` or `a`-`f`.
    const fn is_digit(c: u8) -> bool {
        (c.wrapping_sub(b'0') < 10) | (c.wrapping_sub(b'a') < 6)
    }
    /// The value of a digit: `0`-`9` are 0x30-0x39, `a`-`f` are 0x61-0x66 (bit 6 set).
    const fn value(c: u8) -> u8 {
        (c & 0x0f) + 9 * (c >> 6)
    }
    let digits: &[u8; 2 * HMAC_SHA256_LEN] = text.try_into().ok()?;
    let mut values = [0u8; 2 * HMAC_SHA256_LEN];
    let mut invalid = 0u8;
    for (v, &c) in values.iter_mut().zip(digits) {
        invalid |= u8::from(!is_digit(c));
        *v = value(c);
    }
    let mut out = [0u8; HMAC_SHA256_LEN];
    for (byte, &[high, low]) in out.iter_mut().zip(values.as_chunks::<2>().0) {
        *byte = (high << 4) | low;
    }
    (invalid == 0).then_some(out)
}

pub(super) fn parse_timestamp(raw: Option<&Raw<'_>>) -> Result<u64, Error> {
    let raw = raw.ok_or_else(|| {
        Error::new(
            ErrorKind::MissingTimestamp,
            "the request has no x-contentful-timestamp header",
        )
    })?;
    let malformed = |why: &str| {
        Error::new(
            ErrorKind::MalformedTimestamp,
            format!("x-contentful-timestamp must be Unix milliseconds after 2020-01-01; {why}"),
        )
    };
    let text: Cow<'_, [u8]> = match raw.ascii_trimmed() {
        Some(bytes) => Cow::Borrowed(bytes),
        None => Cow::Owned(raw.text().into_owned().into_bytes()),
    };
    if text.is_empty() {
        return Err(malformed("it is not a decimal number"));
    }
    let mut ms = 0u64;
    let mut too_large = false;
    for &byte in text.iter() {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(malformed("it is not a decimal number"));
        }
        let (times_ten, over) = ms.overflowing_mul(10);
        let (sum, carried) = times_ten.overflowing_add(u64::from(digit));
        too_large |= over | carried;
        ms = sum;
    }
    if too_large {
        return Err(malformed("it is too large"));
    }
    if ms <= EARLIEST_TIMESTAMP_MS {
        return Err(malformed(
            "it is earlier (seconds instead of milliseconds?)",
        ));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::{Listed, decode_lower_hex, trim_spaces_and_tabs};

    #[test]
    fn a_listed_name_is_found_whether_scanned_or_bisected() {
        let names: Vec<String> = (0..20).map(|i| format!("h{}", 19 - i)).collect();
        for len in [0, 1, 2, 8, 9, 20] {
            let list = names[..len].join(",");
            let mut listed = Listed::new();
            if len > 0 {
                assert_eq!(listed.split(list.as_bytes(), usize::MAX), len);
            }
            listed.index();
            for name in &names {
                assert_eq!(
                    listed.contains(name.as_bytes()),
                    names[..len].contains(name),
                    "{name} in a list of {len}"
                );
            }
            assert!(!listed.contains(b"h"));
            assert!(!listed.contains(b""));
        }
    }

    #[test]
    fn spaces_and_tabs_are_trimmed_as_trim_matches_trims_them() {
        for text in [
            "",
            " ",
            "\t \t",
            "a",
            " a ",
            "\ta b\t ",
            " ü ",
            "é\t",
            "\u{a0}a\u{a0}",
        ] {
            assert_eq!(
                trim_spaces_and_tabs(text),
                text.trim_matches([' ', '\t']),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_list_splits_at_every_comma_as_javascript_splits_it() {
        for list in [
            "",
            "a",
            "a,b",
            ",a,,b,",
            " a , b ",
            "x-contentful-timestamp,content-type",
        ] {
            let expected: Vec<&[u8]> = list.split(',').map(str::as_bytes).collect();
            let mut listed = Listed::new();
            assert_eq!(listed.split(list.as_bytes(), usize::MAX), expected.len());
            assert_eq!(listed.names.to_vec(), expected, "{list:?}");
            // Counted in full, kept up to the bound.
            let mut bounded = Listed::new();
            assert_eq!(bounded.split(list.as_bytes(), 2), expected.len());
            assert_eq!(
                bounded.names.to_vec(),
                expected[..expected.len().min(2)],
                "{list:?}"
            );
        }
    }

    #[test]
    fn hex_digits_decode_exactly_when_lower_case_hex() {
        let reference = hex::encode((0..32u8).map(|b| b.wrapping_mul(37)).collect::<Vec<_>>());
        assert_eq!(
            decode_lower_hex(reference.as_bytes()).map(Vec::from),
            hex::decode(&reference).ok()
        );
        // Every byte value, at an even and an odd position.
        for c in 0..=255u8 {
            for at in [0, 63] {
                let mut text = reference.clone().into_bytes();
                text[at] = c;
                let expected = (c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
                    .then(|| hex::decode(&text).unwrap());
                assert_eq!(
                    decode_lower_hex(&text).map(Vec::from),
                    expected,
                    "{c:#04x} at {at}"
                );
            }
        }
        for len in [0, 62, 63, 65, 66, 128] {
            assert_eq!(decode_lower_hex(&vec![b'a'; len]), None, "{len} digits");
        }
    }
}
