//! Resource URIs as rules see them.
//!
//! Rules match a resource URI as text (`file:///docs/*`), but servers read it as a URI, and
//! many normalize it first (RFC 3986 §6): the scheme and host in lower case, `%73` read as
//! `s`, dot segments resolved, empty segments collapsed by the file system. A URI whose
//! meaning depends on such a step would be matched as one resource and read as another
//! (`file:///docs/../etc/passwd` under an allow rule for `file:///docs/*`). So the scheme and
//! host are compared in lower case, and a URI that still reads differently once normalized is
//! refused.

use std::borrow::Cow;

/// Why a URI is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguous {
    /// A `.` or `..` segment, plain or percent-encoded.
    DotSegment,
    /// An empty segment inside the path (`a//b`).
    EmptySegment,
    /// An encoded `/`, `\`, or an unreserved character percent-encoded, or a raw `\`.
    Encoding,
}

/// The URI with its scheme and host in lower case, or why it is refused.
pub fn canonical(uri: &str) -> Result<Cow<'_, str>, Ambiguous> {
    let (scheme, rest) = match uri.split_once(':') {
        Some((s, r)) if is_scheme(s) => (Some(s), r),
        _ => (None, uri),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    check_path(path)?;
    if let Some(a) = authority {
        check_encoding(a)?;
    }
    let lower_scheme = scheme.is_some_and(|s| s.bytes().any(|b| b.is_ascii_uppercase()));
    // The host is case-insensitive; user information is not, so it is left alone.
    let lower_host =
        authority.is_some_and(|a| !a.contains('@') && a.bytes().any(|b| b.is_ascii_uppercase()));
    if !lower_scheme && !lower_host {
        return Ok(Cow::Borrowed(uri));
    }
    let mut out = String::with_capacity(uri.len());
    if let Some(s) = scheme {
        out.push_str(&s.to_ascii_lowercase());
        out.push(':');
    }
    if let Some(a) = authority {
        out.push_str("//");
        if lower_host {
            out.push_str(&a.to_ascii_lowercase());
        } else {
            out.push_str(a);
        }
    }
    let tail_start = scheme.map_or(0, |s| s.len() + 1) + authority.map_or(0, |a| a.len() + 2);
    out.push_str(&uri[tail_start..]);
    Ok(Cow::Owned(out))
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

fn check_path(path: &str) -> Result<(), Ambiguous> {
    check_encoding(path)?;
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        let decoded = seg.replace("%2e", ".").replace("%2E", ".");
        if decoded == "." || decoded == ".." {
            return Err(Ambiguous::DotSegment);
        }
        // A leading empty segment is the path's root; a trailing one, a trailing slash.
        if seg.is_empty() && i != 0 && i != last {
            return Err(Ambiguous::EmptySegment);
        }
    }
    Ok(())
}

/// Refuses a raw `\`, an encoded `/` or `\`, and percent-encoded unreserved characters
/// (which normalization decodes), except `%2E` handled as a dot segment when alone.
fn check_encoding(s: &str) -> Result<(), Ambiguous> {
    if s.contains('\\') {
        return Err(Ambiguous::Encoding);
    }
    let b = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err(Ambiguous::Encoding);
        };
        let c = (hi * 16 + lo) as u8;
        if c == b'.' {
            continue;
        }
        if c == b'/' || c == b'\\' || c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~') {
            return Err(Ambiguous::Encoding);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_uris_pass_unchanged() {
        for ok in [
            "file:///docs/readme.md",
            "demo://docs/a",
            "test://static/resource/1",
            "https://example.com/a/b/?q=../x#f",
            "file:///docs/dir/",
            "urn:isbn:0451450523",
            "file:///docs/with%20space.txt",
            "file:///docs/.hidden",
            "file:///docs/a..b",
        ] {
            assert_eq!(canonical(ok), Ok(Cow::Borrowed(ok)), "{ok}");
        }
    }

    #[test]
    fn scheme_and_host_are_compared_in_lower_case() {
        assert_eq!(
            canonical("FILE:///docs/secret/x").unwrap(),
            "file:///docs/secret/x"
        );
        assert_eq!(
            canonical("HTTPS://Example.COM/A/b").unwrap(),
            "https://example.com/A/b"
        );
        assert_eq!(
            canonical("https://User@Example.com/x").unwrap(),
            "https://User@Example.com/x"
        );
    }

    #[test]
    fn uris_that_read_differently_once_normalized_are_refused() {
        for (bad, why) in [
            ("file:///docs/../../etc/passwd", Ambiguous::DotSegment),
            ("file:///docs/./secret/x", Ambiguous::DotSegment),
            ("file:///docs/%2e%2e/etc/passwd", Ambiguous::DotSegment),
            ("file:///docs/.%2E/etc", Ambiguous::DotSegment),
            ("file:///docs/..", Ambiguous::DotSegment),
            ("file:///docs//secret/x", Ambiguous::EmptySegment),
            ("file:///docs/%73ecret/x", Ambiguous::Encoding),
            ("file:///docs%2fsecret/x", Ambiguous::Encoding),
            ("file:///docs/secret%5cx", Ambiguous::Encoding),
            ("file:///docs\\..\\secret", Ambiguous::Encoding),
            ("file:///docs/%zz", Ambiguous::Encoding),
            ("demo://do%63s/x", Ambiguous::Encoding),
        ] {
            assert_eq!(canonical(bad), Err(why), "{bad}");
        }
    }
}
