//! A single pass over JSON bytes that reports every string and every value with its path,
//! and splices replacements into the original bytes.
//!
//! Inspection must not re-serialize what it does not change: a message keeps its exact bytes
//! unless a rule edits it, and then only the edited spans differ. The walker never allocates
//! except for its path stack, and decodes a string only when asked to.

use std::borrow::Cow;
use std::ops::Range;

/// Nesting beyond this is refused (the bridge already bounds client messages at 128 and
/// serde_json bounds what it parses at 128).
const MAX_DEPTH: usize = 256;

/// One step of a path: an object key (its raw, still escaped, contents) or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(usize, usize),
    Index(usize),
}

/// The path of the value being reported, with the bytes its keys point into.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Path<'a> {
    pub(crate) segs: &'a [Seg],
    bytes: &'a [u8],
}

impl<'a> Path<'a> {
    pub(crate) fn len(&self) -> usize {
        self.segs.len()
    }

    /// Whether segment `i` is the object key `name`.
    pub(crate) fn key_is(&self, i: usize, name: &str) -> bool {
        match self.segs.get(i) {
            Some(Seg::Key(s, e)) => key_eq(&self.bytes[*s..*e], name),
            _ => false,
        }
    }

    /// Whether the last segment is the key `name`.
    pub(crate) fn last_key_is(&self, name: &str) -> bool {
        !self.segs.is_empty() && self.key_is(self.segs.len() - 1, name)
    }

    /// The path without its first `n` segments.
    pub(crate) fn skip(&self, n: usize) -> Path<'a> {
        Path {
            segs: self.segs.get(n..).unwrap_or(&[]),
            bytes: self.bytes,
        }
    }

    /// Whether `pointer` names this path or one of its ancestors (`*` matches any one step).
    pub(crate) fn under(&self, pointer: &Pointer) -> bool {
        pointer.tokens.len() <= self.segs.len()
            && pointer
                .tokens
                .iter()
                .zip(self.segs)
                .all(|(t, s)| self.seg_matches(s, t))
    }

    /// Whether `pointer` names exactly this path.
    pub(crate) fn is(&self, pointer: &Pointer) -> bool {
        pointer.tokens.len() == self.segs.len() && self.under(pointer)
    }

    fn seg_matches(&self, seg: &Seg, token: &Token) -> bool {
        match (token, seg) {
            (Token::Any, _) => true,
            (Token::Name(name, folded), Seg::Key(s, e)) => {
                let raw = &self.bytes[*s..*e];
                key_eq(raw, name) || key_folds_to(raw, folded)
            }
            (Token::Name(name, _), Seg::Index(i)) => name.parse::<usize>().is_ok_and(|n| n == *i),
        }
    }
}

fn key_eq(raw: &[u8], name: &str) -> bool {
    if memchr::memchr(b'\\', raw).is_none() {
        return raw == name.as_bytes();
    }
    decode(raw).is_some_and(|k| k == name)
}

/// Whether a raw key equals `folded` (a case-folded name) under case folding.
fn key_folds_to(raw: &[u8], folded: &str) -> bool {
    if raw.is_ascii() && memchr::memchr(b'\\', raw).is_none() {
        // ASCII folds to ASCII lower case; `folded` may hold what non-ASCII keys fold to.
        return raw.eq_ignore_ascii_case(folded.as_bytes());
    }
    decode(raw).is_some_and(|k| crate::mcp::fold_key(&k) == folded)
}

/// An RFC 6901 JSON pointer, where a `*` token matches any key or index. A name also matches
/// keys equal to it under case folding: servers that read keys case-insensitively (Go's
/// `encoding/json`) take `PATH` for `path`, so a rule naming `/path` must see it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Any,
    /// The name and its case-folded form.
    Name(String, String),
}

impl Pointer {
    /// Parses `""` (the whole document) or `/a/b~1c/*/0`.
    pub fn parse(s: &str) -> Result<Pointer, String> {
        if s.is_empty() {
            return Ok(Pointer { tokens: Vec::new() });
        }
        let rest = s
            .strip_prefix('/')
            .ok_or_else(|| format!("JSON pointer {s:?} must start with '/'"))?;
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                tokens.push(Token::Any);
                continue;
            }
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err(format!(
                                "JSON pointer {s:?}: '~' must be followed by 0 or 1"
                            ));
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            let folded = crate::mcp::fold_key(&out).into_owned();
            tokens.push(Token::Name(out, folded));
        }
        Ok(Pointer { tokens })
    }
}

/// What the walker reports.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// A string (quotes included in `span`); `key` for object keys. Reported before the
    /// `Value` event of the same string.
    Str { span: Range<usize>, key: bool },
    /// A complete value of any type, reported after everything inside it.
    Value { span: Range<usize> },
}

/// The bytes are not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON at byte {0}")]
pub struct Malformed(pub usize);

/// Walks one JSON value, calling `f` for each string and each completed value.
pub(crate) fn walk(bytes: &[u8], mut f: impl FnMut(Path<'_>, Event)) -> Result<(), Malformed> {
    let mut w = Walker {
        b: bytes,
        pos: 0,
        path: Vec::with_capacity(8),
    };
    w.value(&mut f)?;
    w.ws();
    if w.pos != bytes.len() {
        return Err(Malformed(w.pos));
    }
    Ok(())
}

struct Walker<'a> {
    b: &'a [u8],
    pos: usize,
    path: Vec<Seg>,
}

impl Walker<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn path(&self) -> Path<'_> {
        Path {
            segs: &self.path,
            bytes: self.b,
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), Malformed> {
        self.ws();
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Malformed(self.pos))
        }
    }

    fn string(&mut self) -> Result<Range<usize>, Malformed> {
        let start = self.pos;
        if self.b.get(self.pos) != Some(&b'"') {
            return Err(Malformed(self.pos));
        }
        self.pos += 1;
        loop {
            let rest = self.b.get(self.pos..).ok_or(Malformed(self.pos))?;
            match memchr::memchr2(b'"', b'\\', rest) {
                Some(p) if rest[p] == b'\\' => self.pos += p + 2,
                Some(p) => {
                    self.pos += p + 1;
                    return Ok(start..self.pos);
                }
                None => return Err(Malformed(self.b.len())),
            }
        }
    }

    fn value(&mut self, f: &mut impl FnMut(Path<'_>, Event)) -> Result<(), Malformed> {
        if self.path.len() > MAX_DEPTH {
            return Err(Malformed(self.pos));
        }
        self.ws();
        let start = self.pos;
        match *self.b.get(self.pos).ok_or(Malformed(self.pos))? {
            b'{' => {
                self.pos += 1;
                self.ws();
                if self.b.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        let key = self.string()?;
                        f(
                            self.path(),
                            Event::Str {
                                span: key.clone(),
                                key: true,
                            },
                        );
                        self.expect(b':')?;
                        self.path.push(Seg::Key(key.start + 1, key.end - 1));
                        self.value(f)?;
                        self.path.pop();
                        self.ws();
                        match self.b.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(Malformed(self.pos)),
                        }
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                self.ws();
                if self.b.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                } else {
                    let mut i = 0;
                    loop {
                        self.path.push(Seg::Index(i));
                        self.value(f)?;
                        self.path.pop();
                        i += 1;
                        self.ws();
                        match self.b.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(Malformed(self.pos)),
                        }
                    }
                }
            }
            b'"' => {
                let span = self.string()?;
                f(self.path(), Event::Str { span, key: false });
            }
            _ => {
                while let Some(c) = self.b.get(self.pos) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(Malformed(start));
                }
            }
        }
        f(
            self.path(),
            Event::Value {
                span: start..self.pos,
            },
        );
        Ok(())
    }
}

/// The text of a JSON string given its raw contents (between the quotes). `None` when the
/// escapes or the UTF-8 are invalid.
pub(crate) fn decode(raw: &[u8]) -> Option<Cow<'_, str>> {
    if memchr::memchr(b'\\', raw).is_none() {
        return std::str::from_utf8(raw).ok().map(Cow::Borrowed);
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted)
        .ok()
        .map(Cow::Owned)
}

/// The text of a JSON string given its raw contents, for matching: never fails. A lone
/// UTF-16 surrogate escape (which denotes no text; servers write them when they cut a string
/// in the middle of an emoji) becomes `lone`, invalid UTF-8 becomes U+FFFD, and an invalid
/// escape stays as written. Inspection must not skip what a lenient client would show.
pub(crate) fn decode_lossy<'a>(raw: &'a [u8], lone: &str) -> Cow<'a, str> {
    if memchr::memchr(b'\\', raw).is_none() {
        return String::from_utf8_lossy(raw);
    }
    if let Some(s) = decode(raw) {
        return s;
    }
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let Some(p) = memchr::memchr(b'\\', &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        out.extend_from_slice(&raw[i..i + p]);
        let at = i + p;
        let simple = match raw.get(at + 1) {
            Some(b'"') => Some('"'),
            Some(b'\\') => Some('\\'),
            Some(b'/') => Some('/'),
            Some(b'b') => Some('\u{8}'),
            Some(b'f') => Some('\u{c}'),
            Some(b'n') => Some('\n'),
            Some(b'r') => Some('\r'),
            Some(b't') => Some('\t'),
            _ => None,
        };
        if let Some(c) = simple {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            i = at + 2;
            continue;
        }
        let unit = (raw.get(at + 1) == Some(&b'u'))
            .then(|| hex(at + 2))
            .flatten();
        match unit {
            Some(hi @ 0xD800..=0xDBFF) => {
                let lo = (raw.get(at + 6..at + 8) == Some(b"\\u"))
                    .then(|| hex(at + 8))
                    .flatten()
                    .filter(|lo| (0xDC00..=0xDFFF).contains(lo));
                match lo {
                    Some(lo) => {
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        let c = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        i = at + 12;
                    }
                    None => {
                        out.extend_from_slice(lone.as_bytes());
                        i = at + 6;
                    }
                }
            }
            Some(0xDC00..=0xDFFF) => {
                out.extend_from_slice(lone.as_bytes());
                i = at + 6;
            }
            Some(u) => {
                let c = char::from_u32(u).unwrap_or(char::REPLACEMENT_CHARACTER);
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i = at + 6;
            }
            None => {
                out.push(b'\\');
                i = at + 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The text of the JSON string at `span` (quotes included).
#[cfg(test)]
pub(crate) fn decode_span<'a>(bytes: &'a [u8], span: &Range<usize>) -> Option<Cow<'a, str>> {
    decode(bytes.get(span.start + 1..span.end.checked_sub(1)?)?)
}

/// `s` as a JSON string literal.
pub(crate) fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Replaces non-overlapping, ascending `edits` in `bytes`.
pub(crate) fn splice(bytes: &[u8], edits: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let grow: usize = edits.iter().map(|(_, r)| r.len()).sum();
    let mut out = Vec::with_capacity(bytes.len() + grow);
    let mut at = 0;
    for (range, replacement) in edits {
        out.extend_from_slice(&bytes[at..range.start]);
        out.extend_from_slice(replacement);
        at = range.end;
    }
    out.extend_from_slice(&bytes[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(json: &str) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        walk(json.as_bytes(), |path, ev| {
            if let Event::Str { span, key } = ev {
                let p: Vec<String> = path
                    .segs
                    .iter()
                    .map(|s| match s {
                        Seg::Key(a, b) => decode(&json.as_bytes()[*a..*b]).unwrap().into_owned(),
                        Seg::Index(i) => i.to_string(),
                    })
                    .collect();
                out.push((
                    p.join("/"),
                    decode_span(json.as_bytes(), &span).unwrap().into_owned(),
                    key,
                ));
            }
        })
        .unwrap();
        out
    }

    #[test]
    fn reports_strings_with_their_paths() {
        let got = strings(r#"{"a":[1,"x",{"b\u0063":"y\n"}], "k" : true}"#);
        assert_eq!(
            got,
            vec![
                ("".into(), "a".into(), true),
                ("a/1".into(), "x".into(), false),
                ("a/2".into(), "bc".into(), true),
                ("a/2/bc".into(), "y\n".into(), false),
                ("".into(), "k".into(), true),
            ]
        );
    }

    #[test]
    fn values_end_after_their_children() {
        let json = br#"{"a":{"b":[1,2]},"c":null}"#;
        let mut spans = Vec::new();
        walk(json, |path, ev| {
            if let Event::Value { span } = ev {
                spans.push((
                    path.len(),
                    String::from_utf8_lossy(&json[span]).into_owned(),
                ));
            }
        })
        .unwrap();
        assert_eq!(
            spans,
            vec![
                (3, "1".into()),
                (3, "2".into()),
                (2, "[1,2]".into()),
                (1, r#"{"b":[1,2]}"#.into()),
                (1, "null".into()),
                (0, r#"{"a":{"b":[1,2]},"c":null}"#.into()),
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            "{",
            r#"{"a"}"#,
            r#"{"a":1,}"#,
            r#"["unterminated]"#,
            "[1 2]",
            r#"{"a":1} x"#,
        ] {
            assert!(walk(bad.as_bytes(), |_, _| {}).is_err(), "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(walk(deep.as_bytes(), |_, _| {}).is_err());
    }

    #[test]
    fn pointers_parse_and_match() {
        let json = br#"{"result":{"content":[{"type":"text","text":"hi"}],"a/b":{"c~d":1}}}"#;
        let p_text = Pointer::parse("/result/content/*/text").unwrap();
        let p_esc = Pointer::parse("/result/a~1b/c~0d").unwrap();
        let p_idx = Pointer::parse("/result/content/0").unwrap();
        let (mut text, mut esc, mut under_idx) = (0, 0, 0);
        walk(json, |path, ev| {
            if let Event::Value { .. } = ev {
                text += usize::from(path.is(&p_text));
                esc += usize::from(path.is(&p_esc));
                under_idx += usize::from(path.under(&p_idx));
            }
        })
        .unwrap();
        assert_eq!((text, esc, under_idx), (1, 1, 3));
        assert!(Pointer::parse("no-slash").is_err());
        assert!(Pointer::parse("/bad~2").is_err());
        assert_eq!(Pointer::parse("").unwrap().tokens.len(), 0);
    }

    #[test]
    fn lossy_decoding_keeps_all_it_can() {
        let d = |raw: &str, lone: &str| decode_lossy(raw.as_bytes(), lone).into_owned();
        assert_eq!(d(r"caf\u00e9 \ud83d\ude00\n", ""), "café 😀\n");
        assert_eq!(d(r"a\ud800b", "\u{fffd}"), "a\u{fffd}b");
        assert_eq!(d(r"a\udc00b\ud83dc\\", ""), "abc\\");
        assert_eq!(d(r"\ud83d\u0041 \/", "?"), "?A /");
        assert_eq!(d(r"bad \x and \u12", "?"), r"bad \x and \u12");
    }

    #[test]
    fn splice_keeps_everything_else_byte_for_byte() {
        let b = br#"{"a": "x", "b" : 2}"#;
        let out = splice(b, &[(6..9, quote("y\"").into_bytes())]);
        assert_eq!(out, br#"{"a": "y\"", "b" : 2}"#);
        assert_eq!(splice(b, &[]), b.to_vec());
    }
}
