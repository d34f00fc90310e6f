//! The server's stderr → the sidecar's logs, size- and rate-capped, with the session's
//! injected credentials redacted. Never to clients.
//!
//! stderr must be drained continuously or the server blocks on a full pipe, so lines over the
//! rate are counted and dropped, and the count is logged once the rate allows again.

use std::ops::Range;
use std::time::Instant;

use aho_corasick::{AhoCorasick, MatchKind};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::spawn::StderrLimits;
use crate::credentials::SecretSet;

/// What replaces an injected credential in a logged line.
const REDACTED: &[u8] = b"[REDACTED:injected_secret]";

pub(super) async fn log_lines(mut pipe: pipe::Receiver, limits: StderrLimits, secrets: SecretSet) {
    let redactor = Redactor::new(secrets.values());
    let mut buf = vec![0u8; 16 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut bucket = TokenBucket::new(limits.lines_per_sec, limits.burst);
    let mut suppressed: u64 = 0;
    loop {
        // While lines are being suppressed, report the count once the output goes quiet.
        let read = pipe.read(&mut buf);
        let n = if suppressed > 0 {
            match tokio::time::timeout(std::time::Duration::from_secs(1), read).await {
                Ok(r) => r,
                Err(_) => {
                    report_suppressed(&mut suppressed);
                    continue;
                }
            }
        } else {
            read.await
        };
        let n = match n {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let (chunk, complete) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            rest = &rest[chunk.len() + usize::from(complete)..];
            let room = limits.max_line_bytes.saturating_sub(line.len());
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            truncated |= chunk.len() > room;
            if complete {
                if bucket.take() {
                    report_suppressed(&mut suppressed);
                    emit(&redactor.redact(&line, truncated), truncated);
                } else {
                    suppressed += 1;
                }
                line.clear();
                truncated = false;
            }
        }
    }
    if !line.is_empty() {
        emit(&redactor.redact(&line, truncated), truncated);
    }
    report_suppressed(&mut suppressed);
}

fn report_suppressed(suppressed: &mut u64) {
    if *suppressed > 0 {
        tracing::warn!(
            source = "child",
            lines = *suppressed,
            "server stderr lines suppressed (rate limit)"
        );
        *suppressed = 0;
    }
}

fn emit(line: &[u8], truncated: bool) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    if truncated {
        tracing::info!(source = "child", truncated = true, "{text}");
    } else {
        tracing::info!(source = "child", "{text}");
    }
}

/// Finds the session's injected credentials in a line of text, written as they are or
/// escaped the ways programs escape text (JSON and JavaScript `\uXXXX`, `\xHH`, `\"`, …).
struct Redactor {
    matcher: Option<AhoCorasick>,
    /// Bytes of the longest credential, escaped the longest way (`\u` per byte).
    longest_written: usize,
}

impl Redactor {
    fn new<'a>(secrets: impl Iterator<Item = &'a [u8]>) -> Redactor {
        let values: Vec<&[u8]> = secrets.filter(|v| !v.is_empty()).collect();
        let longest_written = values.iter().map(|v| v.len() * 6).max().unwrap_or(0);
        let matcher = (!values.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&values)
                    .ok()
            })
            .flatten();
        Redactor {
            matcher,
            longest_written,
        }
    }

    /// The line with every credential replaced. A line `truncated` at the size cap also
    /// loses its tail, which could hold the first part of a credential.
    fn redact<'a>(&self, line: &'a [u8], truncated: bool) -> std::borrow::Cow<'a, [u8]> {
        let Some(m) = &self.matcher else {
            return line.into();
        };
        let line = if truncated {
            &line[..line.len().saturating_sub(self.longest_written)]
        } else {
            line
        };
        let mut hits: Vec<Range<usize>> = m.find_iter(line).map(|f| f.start()..f.end()).collect();
        if memchr::memchr(b'\\', line).is_some() {
            let (view, origin) = unescape(line);
            for f in m.find_iter(&view) {
                hits.push(origin[f.start()].start..origin[f.end() - 1].end);
            }
        }
        if hits.is_empty() {
            return line.into();
        }
        hits.sort_by_key(|h| h.start);
        let mut out = Vec::with_capacity(line.len());
        let mut at = 0;
        for h in hits {
            if h.end <= at {
                continue;
            }
            out.extend_from_slice(&line[at..h.start.max(at)]);
            out.extend_from_slice(REDACTED);
            at = h.end;
        }
        out.extend_from_slice(&line[at..]);
        out.into()
    }
}

/// `line` with its backslash escapes decoded, and for each byte of the result the bytes of
/// `line` it came from.
fn unescape(line: &[u8]) -> (Vec<u8>, Vec<Range<usize>>) {
    let hex = |at: usize, n: usize| -> Option<u32> {
        let digits = std::str::from_utf8(line.get(at..at + n)?).ok()?;
        digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| u32::from_str_radix(digits, 16).ok())
            .flatten()
    };
    let mut view = Vec::with_capacity(line.len());
    let mut origin = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let (bytes, len): (Vec<u8>, usize) = if line[i] != b'\\' {
            (vec![line[i]], 1)
        } else {
            match line.get(i + 1) {
                Some(b'u') => match hex(i + 2, 4) {
                    Some(hi @ 0xD800..=0xDBFF) => {
                        let lo = (line.get(i + 6..i + 8) == Some(b"\\u"))
                            .then(|| hex(i + 8, 4))
                            .flatten()
                            .filter(|lo| (0xDC00..=0xDFFF).contains(lo));
                        match lo {
                            Some(lo) => {
                                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                (char_bytes(c), 12)
                            }
                            None => (char_bytes(0xFFFD), 6),
                        }
                    }
                    Some(u) => (char_bytes(u), 6),
                    None => (vec![b'\\'], 1),
                },
                Some(b'x') => match hex(i + 2, 2) {
                    Some(b) => (vec![b as u8], 4),
                    None => (vec![b'\\'], 1),
                },
                Some(&c @ (b'"' | b'\'' | b'\\' | b'/')) => (vec![c], 2),
                Some(b'n') => (vec![b'\n'], 2),
                Some(b't') => (vec![b'\t'], 2),
                Some(b'r') => (vec![b'\r'], 2),
                Some(b'b') => (vec![8], 2),
                Some(b'f') => (vec![12], 2),
                _ => (vec![b'\\'], 1),
            }
        };
        for b in bytes {
            view.push(b);
            origin.push(i..i + len);
        }
        i += len;
    }
    (view, origin)
}

fn char_bytes(c: u32) -> Vec<u8> {
    let c = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
    c.encode_utf8(&mut [0; 4]).as_bytes().to_vec()
}

/// Lines per second with a burst allowance.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(values: &[&str]) -> Redactor {
        Redactor::new(values.iter().map(|v| v.as_bytes()))
    }

    fn redacted(r: &Redactor, line: &str) -> String {
        String::from_utf8(r.redact(line.as_bytes(), false).into_owned()).unwrap()
    }

    #[test]
    fn credentials_are_redacted_however_a_program_escapes_them() {
        let r = redactor(&["s3cr3t-Value", "p\"w"]);
        for (line, want) in [
            (
                "token=s3cr3t-Value end",
                "token=[REDACTED:injected_secret] end",
            ),
            (
                r#"{"t":"\u0073\u0033cr3t-Value"}"#,
                r#"{"t":"[REDACTED:injected_secret]"}"#,
            ),
            (r"\x73\x33cr3t-Value!", "[REDACTED:injected_secret]!"),
            (
                r#"pw: "p\"w" and p"w"#,
                r#"pw: "[REDACTED:injected_secret]" and [REDACTED:injected_secret]"#,
            ),
            ("nothing here \\ at all", "nothing here \\ at all"),
        ] {
            assert_eq!(redacted(&r, line), want, "{line}");
        }
    }

    #[test]
    fn a_truncated_line_loses_a_credential_it_cut() {
        let r = redactor(&["s3cr3t-Value"]);
        let line = format!("{}s3cr3t-Va", "x".repeat(200));
        let out = r.redact(line.as_bytes(), true);
        assert!(!String::from_utf8_lossy(&out).contains("s3cr3t"), "{out:?}");
        // Without credentials nothing is cut.
        assert_eq!(
            redactor(&[]).redact(line.as_bytes(), true).len(),
            line.len()
        );
    }
}
