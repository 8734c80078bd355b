//! `JSON.stringify(JSON.parse(text))`, exactly as JavaScript computes it.
//!
//! Contentstack signs the string `JSON.stringify` made. When something between Contentstack and
//! the backend re-encoded the body (pretty-printed it, reordered keys, rewrote numbers), the
//! original bytes can often be recovered by doing what JavaScript would: parse, then stringify.
//!
//! The rules (shared/spec/contentstack.md, section 6):
//! - no whitespace;
//! - object keys that are array indices (canonical decimal integers below 2^32 - 1) come first,
//!   in ascending numeric order, then the other keys in first-appearance order; a duplicate key
//!   keeps its first position and its last value;
//! - numbers are IEEE-754 doubles printed as ECMAScript's Number::toString prints them
//!   (shortest round-trip digits); non-finite numbers print `null`;
//! - strings escape `"` and `\`, `\b \f \n \r \t` as such, other code units below 0x20 and lone
//!   surrogates as `\u00xx` / `\udxxx` (lower-case hex), and everything else literally.

use std::collections::HashMap;

/// How deeply arrays and objects may nest before the text is refused (JavaScript's own limit is
/// the stack; ours keeps a hostile body from exhausting it).
const MAX_DEPTH: usize = 256;

/// How many values (of any kind, at any depth) a text may hold. The parse tree costs some 32
/// bytes a value, up to 16 times the text for `[0,0,0,...]`; this bounds it at about 8 MiB
/// whatever the body limit, with room for an entry of a quarter of a million fields.
const MAX_VALUES: usize = 1 << 18;

/// Why a text is not JSON that `JSON.parse` would accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) offset: usize,
    pub(crate) reason: &'static str,
}

/// What `JSON.stringify(JSON.parse(text))` returns, as UTF-8 bytes.
pub(crate) fn canonicalize(text: &[u8]) -> Result<Vec<u8>, SyntaxError> {
    let text = std::str::from_utf8(text).map_err(|e| SyntaxError {
        offset: e.valid_up_to(),
        reason: "invalid UTF-8",
    })?;
    let mut parser = Parser {
        text: text.as_bytes(),
        src: text,
        pos: 0,
        depth: 0,
        values: 0,
    };
    parser.skip_whitespace();
    let value = parser.value()?;
    parser.skip_whitespace();
    if parser.pos != parser.text.len() {
        return Err(parser.error("unexpected text after the value"));
    }
    let mut out = Vec::with_capacity(text.len());
    write_value(&value, &mut out);
    Ok(out)
}

enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(Vec<u16>),
    Array(Vec<Value>),
    Object(Vec<(Vec<u16>, Value)>),
}

struct Parser<'a> {
    text: &'a [u8],
    src: &'a str,
    pos: usize,
    depth: usize,
    values: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> SyntaxError {
        SyntaxError {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &'static [u8], value: Value) -> Result<Value, SyntaxError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error("unexpected token"))
        }
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        if self.values == MAX_VALUES {
            return Err(self.error("too many values"));
        }
        self.values += 1;
        match self.peek() {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected token")),
            None => Err(self.error("unexpected end of text")),
        }
    }

    fn nested(
        &mut self,
        parse: fn(&mut Self) -> Result<Value, SyntaxError>,
    ) -> Result<Value, SyntaxError> {
        if self.depth == MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.depth += 1;
        let value = parse(self);
        self.depth -= 1;
        value
    }

    fn array(&mut self) -> Result<Value, SyntaxError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value()?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self) -> Result<Value, SyntaxError> {
        self.pos += 1;
        let mut members = Members::default();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members.entries));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:`"));
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value()?;
            members.insert(key, value);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members.entries));
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit after `.`"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit in the exponent"));
            }
            self.digits();
        }
        // Rust's parser rounds correctly, as JavaScript's does; overflow gives infinity.
        let number = self.src[start..self.pos]
            .parse::<f64>()
            .map_err(|_| SyntaxError {
                offset: start,
                reason: "bad number",
            })?;
        Ok(Value::Number(number))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    /// A string literal, as UTF-16 code units (lone surrogates from `\u` escapes survive).
    fn string(&mut self) -> Result<Vec<u16>, SyntaxError> {
        self.pos += 1;
        let mut units = Vec::new();
        loop {
            // Copy a run of plain characters at once.
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            units.extend(self.src[run_start..self.pos].encode_utf16());
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(units);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let unit = match self.peek() {
                        Some(b'"') => u16::from(b'"'),
                        Some(b'\\') => u16::from(b'\\'),
                        Some(b'/') => u16::from(b'/'),
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => u16::from(b'\n'),
                        Some(b'r') => u16::from(b'\r'),
                        Some(b't') => u16::from(b'\t'),
                        Some(b'u') => {
                            let hex = self
                                .src
                                .get(self.pos + 1..self.pos + 5)
                                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                                .ok_or_else(|| self.error("bad \\u escape"))?;
                            self.pos += 4;
                            u16::from_str_radix(hex, 16)
                                .map_err(|_| self.error("bad \\u escape"))?
                        }
                        _ => return Err(self.error("bad escape")),
                    };
                    self.pos += 1;
                    units.push(unit);
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }
}

/// An object's members as JavaScript keeps them: a repeated key keeps its first position and
/// takes the last value.
#[derive(Default)]
struct Members {
    entries: Vec<(Vec<u16>, Value)>,
    index: Option<HashMap<Vec<u16>, usize>>,
}

impl Members {
    /// Up to this many members, a linear search beats hashing.
    const LINEAR: usize = 16;

    fn insert(&mut self, key: Vec<u16>, value: Value) {
        let existing = match &mut self.index {
            Some(index) => index.get(&key).copied(),
            None => self.entries.iter().position(|(k, _)| *k == key),
        };
        if let Some(i) = existing {
            self.entries[i].1 = value;
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.entries.len());
        } else if self.entries.len() == Self::LINEAR {
            let mut index: HashMap<Vec<u16>, usize> = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
            index.insert(key.clone(), self.entries.len());
            self.index = Some(index);
        }
        self.entries.push((key, value));
    }
}

/// The key's value when it is an array index: a canonical decimal integer below 2^32 - 1.
fn array_index(key: &[u16]) -> Option<u32> {
    let canonical = match key {
        [] => false,
        [d] => (u16::from(b'0')..=u16::from(b'9')).contains(d),
        [first, rest @ ..] => {
            (u16::from(b'1')..=u16::from(b'9')).contains(first)
                && rest
                    .iter()
                    .all(|d| (u16::from(b'0')..=u16::from(b'9')).contains(d))
        }
    };
    if !canonical || key.len() > 10 {
        return None;
    }
    let value = key
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - u16::from(b'0')));
    u32::try_from(value).ok().filter(|v| *v != u32::MAX)
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) if n.is_finite() => {
            out.extend_from_slice(ryu_js::Buffer::new().format_finite(*n).as_bytes());
        }
        Value::Number(_) => out.extend_from_slice(b"null"),
        Value::String(units) => write_string(units, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut indexed: Vec<(u32, usize)> = members
                .iter()
                .enumerate()
                .filter_map(|(i, (key, _))| array_index(key).map(|n| (n, i)))
                .collect();
            indexed.sort_unstable();
            let named = members
                .iter()
                .enumerate()
                .filter(|(_, (key, _))| array_index(key).is_none())
                .map(|(i, _)| i);
            out.push(b'{');
            for (n, i) in indexed.iter().map(|(_, i)| *i).chain(named).enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                let (key, value) = &members[i];
                write_string(key, out);
                out.push(b':');
                write_value(value, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(units: &[u16], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let escape_unit = |unit: u16, out: &mut Vec<u8>| {
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[usize::from((unit >> shift) & 0xf)]);
        }
    };
    out.push(b'"');
    for decoded in char::decode_utf16(units.iter().copied()) {
        match decoded {
            Ok('"') => out.extend_from_slice(b"\\\""),
            Ok('\\') => out.extend_from_slice(b"\\\\"),
            Ok('\u{08}') => out.extend_from_slice(b"\\b"),
            Ok('\u{0c}') => out.extend_from_slice(b"\\f"),
            Ok('\n') => out.extend_from_slice(b"\\n"),
            Ok('\r') => out.extend_from_slice(b"\\r"),
            Ok('\t') => out.extend_from_slice(b"\\t"),
            Ok(c) if u32::from(c) < 0x20 => escape_unit(c as u16, out),
            Ok(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            Err(lone) => escape_unit(lone.unpaired_surrogate(), out),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(text: &str) -> String {
        String::from_utf8(canonicalize(text.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn whitespace_is_removed() {
        assert_eq!(
            js(" {\n  \"a\" : [ 1 , 2 ],\r\n\t\"b\": {} } "),
            r#"{"a":[1,2],"b":{}}"#
        );
    }

    #[test]
    fn array_index_keys_come_first_in_numeric_order() {
        assert_eq!(
            js(r#"{"b":1,"10":2,"a":3,"2":4,"01":5,"-1":6,"4294967295":7,"4294967294":8}"#),
            r#"{"2":4,"10":2,"4294967294":8,"b":1,"a":3,"01":5,"-1":6,"4294967295":7}"#
        );
    }

    #[test]
    fn duplicate_key_keeps_first_position_and_last_value() {
        assert_eq!(js(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{},\"k3\":\"last\"}}", many.join(","));
        assert!(js(&text).contains(r#""k3":"last","k4":4"#));
    }

    #[test]
    fn numbers_print_as_ecmascript_prints_doubles() {
        let cases = [
            ("1.0", "1"),
            ("1e2", "100"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("12345678901234567890", "12345678901234567000"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("0.0000001", "1e-7"),
            ("0.000001", "0.000001"),
            ("0.1", "0.1"),
            ("1.5e-10", "1.5e-10"),
            ("9007199254740993", "9007199254740992"),
            ("1e400", "null"),
            ("-1e400", "null"),
            ("123.456e1", "1234.56"),
        ];
        for (input, expected) in cases {
            assert_eq!(js(input), expected, "{input}");
        }
    }

    #[test]
    fn strings_escape_as_javascript_does() {
        assert_eq!(js(r#""\u00e9\/""#), "\"é/\"");
        assert_eq!(js(r#""\b\f\n\r\t\"\\""#), r#""\b\f\n\r\t\"\\""#);
        assert_eq!(js(r#""\u0001\u001F\u007f""#), "\"\\u0001\\u001f\u{7f}\"");
        assert_eq!(js(r#""\u2028 😀 \uD83D\uDE00""#), "\"\u{2028} 😀 😀\"");
        assert_eq!(js(r#""\uD800x\uDFFF""#), r#""\ud800x\udfff""#);
    }

    #[test]
    fn what_json_parse_refuses_is_refused() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "+1",
            "NaN",
            "'a'",
            "\"\t\"",
            "\"\\x\"",
            "{a:1}",
            "\u{feff}{}",
            "[1] 2",
            "\"\\u12\"",
            "tru",
        ] {
            assert!(canonicalize(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(canonicalize(b"\"\xff\"").is_err());
    }

    #[test]
    fn the_number_of_values_is_bounded() {
        let list = |n: usize| format!("[{}]", vec!["0"; n].join(","));
        // The array itself is one value.
        assert_eq!(
            canonicalize(list(MAX_VALUES - 1).as_bytes()).map(|c| c.len()),
            Ok(list(MAX_VALUES - 1).len())
        );
        let err = canonicalize(list(MAX_VALUES).as_bytes()).unwrap_err();
        assert_eq!(err.reason, "too many values");
        assert!(canonicalize(format!("[{}{{}}]", "{},".repeat(MAX_VALUES)).as_bytes()).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = "[".repeat(100_000);
        assert!(canonicalize(deep.as_bytes()).is_err());
        let fine = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(js(&fine), fine);
    }
}
