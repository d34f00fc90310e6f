//! The stdio framing both ways. Server stdout, read in arbitrary pieces, gives exactly the
//! lines a whole-stream split gives (blank lines skipped, a CR before the LF removed, lines
//! over the limit reported once and dropped) while holding no more than the limit; a message
//! framed for stdin is one line that means the same JSON and reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden::child::{Frame, LineFramer, push_line};
use mcp_warden::mcp::peek_id;

/// What the framer keeps of an oversized line to find its id (`framing::PEEK_BYTES`).
const PEEK_BYTES: usize = 4096;

// Input: the line limit (small, so that oversized lines are common), a seed for the sizes of
// the successive reads (0: the whole stream in one read), then the stream itself.
fuzz_target!(|data: &[u8]| {
    let [max_line, reads, stream @ ..] = data else {
        return;
    };
    check_stdout(usize::from(*max_line), *reads, stream);
    check_stdin(stream);
});

/// Read sizes from 1 to 64 bytes, from a small xorshift generator.
fn read_sizes(seed: u8) -> impl Iterator<Item = usize> {
    let mut x = u32::from(seed) | 0x9e37_7900;
    std::iter::from_fn(move || {
        if seed == 0 {
            return Some(usize::MAX);
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        Some(1 + (x % 64) as usize)
    })
}

fn check_stdout(max_line: usize, reads: u8, stream: &[u8]) {
    let mut framer = LineFramer::new(max_line);
    let mut got = Vec::new();
    let mut rest = stream;
    let mut sizes = read_sizes(reads);
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(usize::MAX).min(rest.len());
        framer.buf_mut().extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(frame) = framer.next_frame() {
            got.push(frame);
        }
        assert!(
            framer.buf_mut().len() <= max_line,
            "holds more than one line's worth"
        );
    }

    // The same stream split in one go.
    let mut got = got.into_iter();
    let mut lines = stream.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let complete = lines.peek().is_some();
        if line.len() > max_line {
            match got.next() {
                Some(Frame::Oversized { id, len }) => {
                    assert!(len > max_line && len <= line.len(), "len {len}");
                    // Reported early, the id may be unknown yet, never different.
                    if let Some(id) = id {
                        assert_eq!(Some(id), peek_id(&line[..line.len().min(PEEK_BYTES)]));
                    }
                }
                other => panic!("expected Oversized, got {other:?}"),
            }
            if complete {
                assert_eq!(got.next(), Some(Frame::Discarded { len: line.len() }));
            }
        } else if complete {
            let text = line.strip_suffix(b"\r").unwrap_or(line);
            if !text.iter().all(u8::is_ascii_whitespace) {
                match got.next() {
                    Some(Frame::Line(l)) => assert_eq!(&l[..], text),
                    other => panic!("expected {text:?}, got {other:?}"),
                }
            }
        }
    }
    assert_eq!(got.next(), None, "a frame the stream does not hold");
}

fn check_stdin(msg: &[u8]) {
    let mut out = b"{}\n".to_vec();
    push_line(&mut out, msg);
    let framed = &out[3..];
    assert_eq!(framed.len(), msg.len() + 1);
    assert_eq!(framed.last(), Some(&b'\n'));
    let body = &framed[..msg.len()];
    assert!(!body.contains(&b'\n') && !body.contains(&b'\r'));
    for (a, b) in msg.iter().zip(body) {
        assert!(a == b || (matches!(a, b'\n' | b'\r') && *b == b' '));
    }
    // Only insignificant whitespace changed: the JSON means the same.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(msg) {
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(body).ok(),
            Some(v)
        );
    }
    // And the server's side of the pipe reads it back as one line.
    let mut framer = LineFramer::new(usize::MAX);
    framer.buf_mut().extend_from_slice(&out);
    assert_eq!(
        framer.next_frame(),
        Some(Frame::Line(bytes::Bytes::from_static(b"{}")))
    );
    if !body.iter().all(u8::is_ascii_whitespace) {
        assert_eq!(framer.next_frame(), Some(Frame::Line(body.to_vec().into())));
    }
    assert_eq!(framer.next_frame(), None);
}
