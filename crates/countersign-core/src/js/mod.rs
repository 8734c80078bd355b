//! What JavaScript does to strings and JSON, where the reference implementations depend on it.

pub(crate) mod json;

use std::borrow::Cow;
use std::cmp::Ordering;

/// `String.prototype.trim`: strips ECMAScript's WhiteSpace and LineTerminator code points.
///
/// This differs from [`str::trim`], which also strips U+0085 (NEXT LINE) and which
/// JavaScript keeps.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(is_js_whitespace)
}

fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{0009}'..='\u{000D}'
            | '\u{0020}'
            | '\u{00A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
            | '\u{FEFF}'
    )
}

/// Orders strings as JavaScript's `<` does: by UTF-16 code units.
///
/// Both strings agree up to their first differing character (UTF-8 and UTF-16 encode the same
/// characters); the order is that of those characters' first UTF-16 code units, which is the
/// code point order except that a character beyond U+FFFF (a surrogate, 0xD800-0xDBFF) sorts
/// before U+E000-U+FFFF.
pub(crate) fn cmp_utf16(a: &str, b: &str) -> Ordering {
    let Some(mut at) = a.bytes().zip(b.bytes()).position(|(x, y)| x != y) else {
        return a.len().cmp(&b.len());
    };
    let (x, y) = (a.as_bytes()[at], b.as_bytes()[at]);
    if x.is_ascii() && y.is_ascii() {
        // Two different ASCII characters: code units and bytes agree.
        return x.cmp(&y);
    }
    while !a.is_char_boundary(at) {
        at -= 1;
    }
    let first_unit = |s: &str| {
        s.get(at..)
            .and_then(|rest| rest.chars().next())
            .map(|c| c.encode_utf16(&mut [0; 2])[0])
    };
    first_unit(a).cmp(&first_unit(b))
}

/// The text of a raw header value: UTF-8 when the bytes are valid UTF-8, and Latin-1 (what
/// Node.js decodes header bytes as) otherwise. ASCII, the normal case, is unchanged either way.
pub(crate) fn header_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_strips_unicode_whitespace_but_not_next_line() {
        assert_eq!(trim("\u{FEFF}\u{00A0} a b\t\u{3000}"), "a b");
        assert_eq!(trim("\u{0085}a\u{0085}"), "\u{0085}a\u{0085}");
    }

    #[test]
    fn utf16_order_puts_astral_code_points_before_the_private_use_area() {
        // UTF-8 byte order says U+E000 < U+1F600; UTF-16 order says the opposite.
        assert_eq!(cmp_utf16("\u{1F600}", "\u{E000}"), Ordering::Less);
        assert_eq!(cmp_utf16("a", "b"), Ordering::Less);
    }

    proptest::proptest! {
        #[test]
        fn utf16_order_is_that_of_the_utf16_code_units(
            common in "[a\u{E000}\u{1F600}é]{0,3}",
            a in "[a-c\u{7FF}\u{E000}\u{FFFF}\u{10000}\u{1F600}]{0,4}",
            b in "[a-c\u{7FF}\u{E000}\u{FFFF}\u{10000}\u{1F600}]{0,4}",
        ) {
            let (a, b) = (format!("{common}{a}"), format!("{common}{b}"));
            proptest::prop_assert_eq!(cmp_utf16(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
        }
    }

    #[test]
    fn header_bytes_that_are_not_utf8_are_read_as_latin1() {
        assert_eq!(header_text(b"caf\xe9"), "café");
        assert_eq!(header_text("café".as_bytes()), "café");
    }
}
