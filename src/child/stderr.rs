//! The server's stderr → the sidecar's logs, size- and rate-capped. Never to clients.
//!
//! stderr must be drained continuously or the server blocks on a full pipe, so lines over the
//! rate are counted and dropped, and the count is logged once the rate allows again.

use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::spawn::StderrLimits;

pub(super) async fn log_lines(mut pipe: pipe::Receiver, limits: StderrLimits) {
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
                    emit(&line, truncated);
                } else {
                    suppressed += 1;
                }
                line.clear();
                truncated = false;
            }
        }
    }
    if !line.is_empty() {
        emit(&line, truncated);
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
