//! The two signature headers, parsed: `X-Contentstack-Request-Signature` (RSA) and
//! `x-contentstack-hmac-signature` (HMAC), and which key, element and salt an RSA signature
//! matches.

use base64::Engine as _;
use http::HeaderMap;

use super::{
    HMAC_SIGNATURE_HEADER, MAX_SIGNATURE_ELEMENTS, MAX_SIGNATURE_HEADER_LEN, RSA_SIGNATURE_HEADER,
    VerifiedBy,
};
use crate::contentstack::{Error, ErrorKind, KeySet};
use crate::crypto::HMAC_SHA256_LEN;
use crate::js;

/// The value of a header, its repeated values joined with `,` as one list.
fn header_list(headers: &HeaderMap, name: &str) -> Result<Option<String>, Error> {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let mut joined = String::new();
    for value in values {
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(&js::header_text(value.as_bytes()));
        if joined.len() > MAX_SIGNATURE_HEADER_LEN {
            return Err(Error::new(
                ErrorKind::MalformedSignature,
                format!("{name} is longer than {MAX_SIGNATURE_HEADER_LEN} bytes"),
            ));
        }
    }
    Ok(Some(joined))
}

/// The `prefix=value` elements of a signature header; each is split on its first `=` only.
fn elements(list: &str) -> impl Iterator<Item = (&str, &str)> {
    list.split(',')
        .filter_map(|element| element.split_once('='))
        .map(|(prefix, value)| (prefix.trim(), value.trim()))
}

/// The decoded `v1` signatures of the RSA header (padded or unpadded base64), without
/// repeats, at most [`MAX_SIGNATURE_ELEMENTS`].
pub(super) fn rsa_signatures(headers: &HeaderMap) -> Result<Vec<Vec<u8>>, Error> {
    let list = header_list(headers, RSA_SIGNATURE_HEADER)?.ok_or_else(|| {
        Error::new(
            ErrorKind::MissingSignature,
            format!("the request has no {RSA_SIGNATURE_HEADER} header"),
        )
    })?;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut v1 = elements(&list)
        .filter(|(prefix, _)| *prefix == "v1")
        .map(|(_, value)| value)
        .peekable();
    if v1.peek().is_none() {
        return Err(Error::new(
            ErrorKind::MalformedSignature,
            format!("{RSA_SIGNATURE_HEADER} has no v1=<signature> element"),
        ));
    }
    // The same signature sent twice (padded and unpadded, say) is tried once, and counts once
    // toward the cap: a forgery costs at most the cap's worth of RSA operations per key.
    let mut decoded: Vec<Vec<u8>> = Vec::with_capacity(MAX_SIGNATURE_ELEMENTS);
    for signature in v1.filter_map(|value| engine.decode(value).ok()) {
        if decoded.len() == MAX_SIGNATURE_ELEMENTS {
            break;
        }
        if !decoded.contains(&signature) {
            decoded.push(signature);
        }
    }
    if decoded.is_empty() {
        return Err(Error::new(
            ErrorKind::MalformedSignature,
            format!("no v1 element of {RSA_SIGNATURE_HEADER} is base64"),
        ));
    }
    Ok(decoded)
}

/// The first (key, element, salt) under which a signature verifies the message whose SHA-256
/// is `digest`. Each key tries first the salt length that last verified with it, so that a
/// sender that uses one salt length costs one RSA operation per delivery.
pub(super) fn match_rsa(
    signatures: &[Vec<u8>],
    digest: &[u8; 32],
    keys: &KeySet,
) -> Option<VerifiedBy> {
    for (key_index, key) in keys.iter().enumerate() {
        let salts = key.salt_order();
        for (element, signature) in signatures.iter().enumerate() {
            for salt in salts {
                if key.verify_pss(digest, signature, salt) {
                    key.remember_salt(salt);
                    return Some(VerifiedBy::Rsa {
                        key_index,
                        key_fingerprint: key.fingerprint().to_owned(),
                        element,
                        salt,
                    });
                }
            }
        }
    }
    None
}

/// `x-contentstack-hmac-signature`, parsed.
pub(super) struct HmacHeader {
    pub(super) t: u64,
    pub(super) t_text: String,
    pub(super) v1: Vec<[u8; HMAC_SHA256_LEN]>,
}

impl HmacHeader {
    pub(super) fn parse(headers: &HeaderMap) -> Result<Self, Error> {
        let list = header_list(headers, HMAC_SIGNATURE_HEADER)?.ok_or_else(|| {
            Error::new(
                ErrorKind::MissingSignature,
                format!("the request has no {HMAC_SIGNATURE_HEADER} header"),
            )
        })?;
        let mut t = None;
        let mut v1 = Vec::new();
        let mut v1_seen = 0;
        for (prefix, value) in elements(&list) {
            match prefix {
                "t" if t.is_some() => {
                    return Err(Error::new(
                        ErrorKind::MalformedTimestamp,
                        format!("{HMAC_SIGNATURE_HEADER} has two t elements"),
                    ));
                }
                "t" => t = Some(value.to_owned()),
                "v1" => {
                    v1_seen += 1;
                    let mut mac = [0u8; HMAC_SHA256_LEN];
                    if v1.len() < MAX_SIGNATURE_ELEMENTS
                        && hex::decode_to_slice(value, &mut mac).is_ok()
                        && !v1.contains(&mac)
                    {
                        v1.push(mac);
                    }
                }
                _ => {}
            }
        }
        let t_text = t.ok_or_else(|| {
            Error::new(
                ErrorKind::MissingTimestamp,
                format!("{HMAC_SIGNATURE_HEADER} has no t=<unix seconds> element"),
            )
        })?;
        let t = (!t_text.is_empty()
            && t_text.len() <= 12
            && t_text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t_text.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::MalformedTimestamp,
                format!("t of {HMAC_SIGNATURE_HEADER} is not Unix seconds"),
            )
        })?;
        if v1.is_empty() {
            let why = if v1_seen == 0 {
                "has no v1=<hex> element"
            } else {
                "has no v1 element of 64 hex digits"
            };
            return Err(Error::new(
                ErrorKind::MalformedSignature,
                format!("{HMAC_SIGNATURE_HEADER} {why}"),
            ));
        }
        Ok(Self { t, t_text, v1 })
    }
}
