//! The stdio framing of MCP: one JSON-RPC message per line, both ways, with no I/O here.
//!
//! [`LineFramer`] splits what the server writes on stdout into lines, whatever the read
//! boundaries; [`push_line`] frames a message for its stdin. Both are pure so that they can be
//! tested and fuzzed without a process.

use bytes::{Buf, Bytes, BytesMut};

use crate::mcp::{Id, peek_id};

/// Read granularity of the stdout reader.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// The first reads' size. A server that writes short lines never needs more, and a session's
/// read buffer is then a few KiB rather than [`READ_CHUNK`] (each page of which a busy
/// session would touch in turn); reads grow to [`READ_CHUNK`] while lines are long.
const FIRST_READ: usize = 4 * 1024;
/// How much of an oversized line is kept to find its id.
const PEEK_BYTES: usize = 4096;

/// What the bytes read so far hold next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete line without its `\n` (and without a `\r` before it). Never blank.
    Line(Bytes),
    /// A line is longer than the limit: it is being discarded. Reported once per line, as
    /// soon as it is known; `id` is its JSON-RPC id when the line's beginning made it
    /// certain, `len` its length so far.
    Oversized { id: Option<Id>, len: usize },
    /// The end of a discarded line was reached; `len` is its whole length.
    Discarded { len: usize },
}

/// Splits a byte stream into lines of at most `max_line` bytes (the `\n` not counted).
///
/// Read into [`LineFramer::buf_mut`], then take frames with [`LineFramer::next_frame`] until
/// it returns `None`. Lines are handed out as slices of the read buffer (no copy); memory stays
/// within `max_line` plus one read, however long a line is, because an oversized line is
/// dropped as it arrives.
#[derive(Debug)]
pub struct LineFramer {
    buf: BytesMut,
    max_line: usize,
    /// Bytes at the start of `buf` known to hold no newline, so no byte is scanned twice.
    scanned: usize,
    /// While an oversized line is being dropped: how many of its bytes were dropped so far.
    discarding: Option<usize>,
    /// The room made for the next read: from [`FIRST_READ`], doubled (up to [`READ_CHUNK`])
    /// whenever an unfinished line holds half of it.
    chunk: usize,
}

impl LineFramer {
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer {
            buf: BytesMut::with_capacity(FIRST_READ),
            max_line,
            scanned: 0,
            discarding: None,
            chunk: FIRST_READ,
        }
    }

    /// The buffer to append what was read to, with room for a sizeable read.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
            self.buf.reserve(self.chunk);
        }
        &mut self.buf
    }

    /// The next frame in what was read, or `None` when more input is needed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) else {
                return self.no_newline_yet();
            };
            let end = self.scanned + i;
            self.scanned = 0;
            if let Some(dropped) = self.discarding.take() {
                self.buf.advance(end + 1);
                return Some(Frame::Discarded { len: dropped + end });
            }
            if end > self.max_line {
                let id = peek_id(&self.buf[..end.min(PEEK_BYTES)]);
                // The next call finds the same newline again and drops the line.
                self.discarding = Some(0);
                self.scanned = end;
                return Some(Frame::Oversized { id, len: end });
            }
            let mut line = self.buf.split_to(end + 1).freeze();
            line.truncate(if end > 0 && line[end - 1] == b'\r' {
                end - 1
            } else {
                end
            });
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(Frame::Line(line));
            }
        }
    }

    /// Bytes of a line that has not ended yet (whitespace-only text not counted): at the
    /// end of the stream, what is lost because the server never finished its line.
    pub fn unterminated(&self) -> usize {
        match self.discarding {
            Some(dropped) => dropped + self.buf.len(),
            None if self.buf.iter().all(u8::is_ascii_whitespace) => 0,
            None => self.buf.len(),
        }
    }

    fn no_newline_yet(&mut self) -> Option<Frame> {
        if let Some(dropped) = self.discarding.as_mut() {
            *dropped += self.buf.len();
            self.buf.clear();
            self.scanned = 0;
            None
        } else if self.buf.len() > self.max_line {
            let len = self.buf.len();
            let id = peek_id(&self.buf[..PEEK_BYTES.min(len)]);
            self.discarding = Some(len);
            self.buf.clear();
            self.scanned = 0;
            Some(Frame::Oversized { id, len })
        } else {
            self.scanned = self.buf.len();
            if self.buf.len() > self.chunk / 2 {
                self.chunk = (self.chunk * 2).min(READ_CHUNK);
            }
            None
        }
    }
}

/// Appends `msg` and a newline, turning any raw CR/LF into spaces. Raw line breaks can only
/// be insignificant whitespace in valid JSON (inside strings they are escaped), so this keeps
/// the message intact while honouring the stdio framing rule.
pub fn push_line(buf: &mut Vec<u8>, msg: &[u8]) {
    let start = buf.len();
    buf.extend_from_slice(msg);
    let mut at = start;
    while let Some(i) = memchr::memchr2(b'\n', b'\r', &buf[at..]) {
        buf[at + i] = b' ';
        at += i + 1;
    }
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stay_small_for_short_lines_and_grow_for_long_ones() {
        let mut f = LineFramer::new(1 << 20);
        for _ in 0..10_000 {
            f.buf_mut()
                .extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
            assert!(matches!(f.next_frame(), Some(Frame::Line(_))));
            assert!(f.next_frame().is_none());
        }
        assert!(f.buf.capacity() <= 2 * FIRST_READ, "{}", f.buf.capacity());
        // A long line arriving in pieces: the reads grow.
        for _ in 0..8 {
            let room = f.buf_mut().capacity() - f.buf.len();
            let piece = vec![b'x'; room.min(READ_CHUNK)];
            f.buf.extend_from_slice(&piece);
            assert!(f.next_frame().is_none());
        }
        assert_eq!(f.chunk, READ_CHUNK);
        f.buf_mut().extend_from_slice(b"\n");
        assert!(matches!(f.next_frame(), Some(Frame::Line(_))));
    }

    #[test]
    fn an_unfinished_last_line_is_counted_not_delivered() {
        let mut f = LineFramer::new(64);
        f.buf_mut()
            .extend_from_slice(b"{\"id\":1}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"res");
        assert!(matches!(f.next_frame(), Some(Frame::Line(_))));
        assert!(f.next_frame().is_none());
        assert_eq!(f.unterminated(), 28);
        // Trailing blank space is not a lost message.
        let mut f = LineFramer::new(64);
        f.buf_mut().extend_from_slice(b"{}\n \r");
        assert!(matches!(f.next_frame(), Some(Frame::Line(_))));
        assert!(f.next_frame().is_none());
        assert_eq!(f.unterminated(), 0);
        // The part of an oversized line being discarded counts too.
        let mut f = LineFramer::new(4);
        f.buf_mut().extend_from_slice(b"0123456789");
        assert!(matches!(
            f.next_frame(),
            Some(Frame::Oversized { len: 10, .. })
        ));
        f.buf_mut().extend_from_slice(b"abc");
        assert!(f.next_frame().is_none());
        assert_eq!(f.unterminated(), 13);
    }

    /// Feeds `chunks` one read at a time and collects every frame.
    fn frames(max_line: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut framer = LineFramer::new(max_line);
        let mut out = Vec::new();
        for chunk in chunks {
            framer.buf_mut().extend_from_slice(chunk);
            while let Some(f) = framer.next_frame() {
                out.push(f);
            }
        }
        out
    }

    fn line(s: &str) -> Frame {
        Frame::Line(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn lines_are_split_whatever_the_read_boundaries() {
        let want = vec![line("{\"a\":1}"), line("{\"b\":2}"), line("{}")];
        let stream = b"{\"a\":1}\n{\"b\":2}\r\n\n  \r\n{}\n{\"partial\"";
        assert_eq!(frames(64, &[stream]), want);
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(64, &bytewise), want);
    }

    #[test]
    fn only_the_cr_of_a_crlf_is_removed() {
        assert_eq!(
            frames(64, &[b"a\r\r\n\rb\n"]),
            vec![line("a\r"), line("\rb")]
        );
    }

    #[test]
    fn an_oversized_line_is_reported_once_and_dropped() {
        let big = br#"{"jsonrpc":"2.0","id":7,"result":{"text":"xxxxxxxxxxxxxxxxxxxxxxxx"}}"#;
        let mut stream = big.to_vec();
        stream.extend_from_slice(b"\n{}\n");
        let want = vec![
            Frame::Oversized {
                id: Some(Id::Int(7)),
                len: big.len(),
            },
            Frame::Discarded { len: big.len() },
            line("{}"),
        ];
        assert_eq!(frames(32, &[&stream]), want);
        // Arriving in pieces, it is reported as soon as it passes the limit.
        let pieces: Vec<&[u8]> = stream.chunks(40).collect();
        assert_eq!(
            frames(32, &pieces),
            vec![
                Frame::Oversized {
                    id: Some(Id::Int(7)),
                    len: 40,
                },
                Frame::Discarded { len: big.len() },
                line("{}"),
            ]
        );
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes() {
        assert_eq!(frames(4, &[b"abcd\n"]), vec![line("abcd")]);
        assert!(matches!(
            frames(4, &[b"abcde\n"])[0],
            Frame::Oversized { len: 5, .. }
        ));
    }

    #[test]
    fn push_line_frames_one_message_per_line() {
        let mut buf = Vec::new();
        push_line(&mut buf, b"{\n  \"a\": 1\r\n}");
        push_line(&mut buf, b"{}");
        assert_eq!(buf, b"{   \"a\": 1  }\n{}\n");
    }
}
