//! One SSE stream's replay log driven by arbitrary pushes, reads, reconnections (with and
//! without `Last-Event-ID`, honest or forged), detaches and finishes, against a model of a
//! client. Every event reaches the client exactly once and in order, or is reported: by
//! `push` when it is evicted before the reader got it, or as a gap when the client asks for
//! events that were already evicted. Nothing disappears silently.
#![no_main]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mcp_warden::mcp::Kind;
use mcp_warden::session::{AttachError, Cursor, EventStream, Next, StreamLimits};

/// One step of the client, the server or the connection.
#[derive(Debug, Clone, Copy)]
enum Op {
    Push {
        request: bool,
        len: u8,
    },
    /// Poll the current connection once.
    Read,
    /// A new connection without `Last-Event-ID`.
    Connect,
    /// A new connection resuming from what the client has, less `lost` events that were
    /// handed out but never reached it.
    Resume {
        lost: u8,
    },
    /// A new connection with any `Last-Event-ID` at all.
    Forged {
        after: u8,
    },
    /// The connection goes away.
    Disconnect,
    /// Poll a connection that was replaced.
    ReadReplaced,
    Finish,
}

impl Op {
    /// One byte per op: the low three bits choose it, the high five are its argument.
    fn decode(b: u8) -> Op {
        let arg = b >> 3;
        match b & 7 {
            0 => Op::Push {
                request: arg & 1 == 1,
                len: (arg >> 1) * 8,
            },
            1 => Op::Read,
            2 => Op::Connect,
            3 => Op::Resume { lost: arg },
            4 => Op::Forged { after: arg },
            5 => Op::Disconnect,
            6 => Op::ReadReplaced,
            _ if arg == 31 => Op::Finish,
            _ => Op::Push {
                request: false,
                len: arg,
            },
        }
    }
}

/// Where each event is from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// In the log, not yet read by the client.
    Unread,
    /// The client has it.
    Received,
    /// The client said (by `Last-Event-ID`) it has it; it was never read.
    Claimed,
    /// Evicted before the client got it; `push` reported it.
    Reported,
    /// The client had it, then said it had not, and it was already evicted: only the
    /// gap of the next read can tell.
    Gone,
}

struct Model {
    /// Per seq (index seq - 1): kind, length, fate.
    events: Vec<(Kind, usize, Fate)>,
    /// Seqs still in the log, oldest first, and their total size.
    log: VecDeque<u64>,
    bytes: usize,
    limits: StreamLimits,
    finished: bool,
    /// The last event the client has (or claims), i.e. where a reader continues.
    client: u64,
}

impl Model {
    fn next_seq(&self) -> u64 {
        self.events.len() as u64 + 1
    }

    fn fate(&mut self, seq: u64) -> &mut Fate {
        &mut self.events[(seq - 1) as usize].2
    }

    /// The client continues after `after`: what it had beyond that it no longer has.
    fn rewind(&mut self, after: u64) {
        for seq in after + 1..=self.client.min(self.next_seq() - 1) {
            let retained = self.log.contains(&seq);
            let fate = self.fate(seq);
            if matches!(*fate, Fate::Received | Fate::Claimed) {
                *fate = if retained { Fate::Unread } else { Fate::Gone };
            }
        }
        for seq in self.client + 1..=after {
            let fate = self.fate(seq);
            if *fate == Fate::Unread {
                *fate = Fate::Claimed;
            }
        }
        self.client = after;
    }
}

fn payload(seq: u64, len: usize) -> Bytes {
    let mut d = format!("{seq}:").into_bytes();
    d.resize(d.len().max(len), b'x');
    d.truncate(len.max(1));
    Bytes::from(d)
}

fn poll_once(cursor: &mut Cursor) -> Option<Next> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(cursor.next()).poll(&mut cx) {
        Poll::Ready(next) => Some(next),
        Poll::Pending => None,
    }
}

// Input: the log's event cap (1 to 16) and byte cap (1 to 511), then one byte per op.
fuzz_target!(|data: &[u8]| {
    let [max_events, max_bytes, ops @ ..] = data else {
        return;
    };
    let limits = StreamLimits {
        max_events: 1 + usize::from(max_events % 16),
        max_bytes: 1 + usize::from(*max_bytes) * 2,
    };
    let stream: Arc<EventStream> = EventStream::new(7, limits);
    let mut m = Model {
        events: Vec::new(),
        log: VecDeque::new(),
        bytes: 0,
        limits,
        finished: false,
        client: 0,
    };
    let mut reader: Option<Cursor> = None;
    let mut replaced: Vec<Cursor> = Vec::new();

    for op in ops.iter().copied().map(Op::decode) {
        match op {
            Op::Push { request, len } => {
                let kind = if request {
                    Kind::Request
                } else {
                    Kind::Notification
                };
                let seq = m.next_seq();
                let sent = payload(seq, usize::from(len));
                let lost = stream.push(kind, sent.clone());
                if m.finished {
                    assert_eq!(lost.len(), 1, "a push after finish comes back");
                    assert_eq!((lost[0].seq, &lost[0].data), (0, &sent));
                    continue;
                }
                m.events.push((kind, sent.len(), Fate::Unread));
                m.log.push_back(seq);
                m.bytes += sent.len();
                let mut evicted = Vec::new();
                while m.log.len() > 1
                    && (m.log.len() > m.limits.max_events || m.bytes > m.limits.max_bytes)
                {
                    let old = m.log.pop_front().expect("non-empty");
                    m.bytes -= m.events[(old - 1) as usize].1;
                    evicted.push(old);
                }
                let reported: Vec<u64> = lost.iter().map(|e| e.seq).collect();
                let unread: Vec<u64> = evicted.iter().copied().filter(|&s| s > m.client).collect();
                assert_eq!(
                    reported, unread,
                    "evicted {evicted:?}, client has {}",
                    m.client
                );
                for e in &lost {
                    assert_eq!(e.data, payload(e.seq, m.events[(e.seq - 1) as usize].1));
                    assert_eq!(e.kind, m.events[(e.seq - 1) as usize].0);
                    let fate = m.fate(e.seq);
                    assert_eq!(*fate, Fate::Unread, "seq {} reported twice", e.seq);
                    *fate = Fate::Reported;
                }
                let client = m.client;
                for &s in evicted.iter().filter(|&&s| s <= client) {
                    let fate = *m.fate(s);
                    assert!(
                        matches!(fate, Fate::Received | Fate::Claimed),
                        "seq {s} evicted unread ({fate:?}) and not reported"
                    );
                }
            }
            Op::Read => {
                let Some(cursor) = reader.as_mut() else {
                    continue;
                };
                let next = poll_once(cursor);
                let pending: Vec<u64> = m.log.iter().copied().filter(|&s| s > m.client).collect();
                match next {
                    Some(Next::Events { events, gap }) => {
                        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
                        assert_eq!(seqs, pending, "client has {}", m.client);
                        let first = m.log.front().copied().expect("events come from the log");
                        assert_eq!(gap, first.saturating_sub(m.client + 1), "gap");
                        for s in m.client + 1..first {
                            let fate = m.fate(s);
                            assert!(
                                matches!(*fate, Fate::Reported | Fate::Gone),
                                "seq {s} vanished ({fate:?})"
                            );
                        }
                        for e in &events {
                            let (kind, len, _) = m.events[(e.seq - 1) as usize];
                            assert_eq!((e.kind, &e.data), (kind, &payload(e.seq, len)));
                            let fate = m.fate(e.seq);
                            assert_eq!(*fate, Fate::Unread, "seq {} delivered twice", e.seq);
                            *fate = Fate::Received;
                        }
                        m.client = *seqs.last().expect("events are never empty");
                    }
                    Some(Next::End) => {
                        assert!(m.finished && pending.is_empty(), "early end");
                    }
                    Some(Next::Replaced) => panic!("the current reader was replaced"),
                    None => assert!(!m.finished && pending.is_empty(), "stalled"),
                }
            }
            Op::Connect | Op::Resume { .. } | Op::Forged { .. } => {
                let after = match op {
                    Op::Connect => None,
                    Op::Resume { lost } => Some(m.client.saturating_sub(u64::from(lost))),
                    Op::Forged { after } => Some(u64::from(after)),
                    _ => unreachable!(),
                };
                match stream.attach(after) {
                    Ok(cursor) => {
                        assert!(after.is_none_or(|a| a < m.next_seq()));
                        if let Some(a) = after {
                            m.rewind(a);
                        }
                        if let Some(old) = reader.replace(cursor) {
                            replaced.push(old);
                        }
                    }
                    Err(AttachError::FromTheFuture) => {
                        assert!(
                            after.is_some_and(|a| a >= m.next_seq()),
                            "refused {after:?}"
                        );
                    }
                }
            }
            Op::Disconnect => reader = None,
            Op::ReadReplaced => {
                if let Some(old) = replaced.last_mut() {
                    assert!(matches!(poll_once(old), Some(Next::Replaced)));
                }
                replaced.pop();
            }
            Op::Finish => {
                stream.finish();
                m.finished = true;
            }
        }
        assert_eq!(stream.is_attached(), reader.is_some(), "attached");
        assert_eq!(stream.is_finished(), m.finished);
        assert_eq!(
            stream.has_after(m.client),
            m.log.back().is_some_and(|&s| s > m.client)
        );
    }

    // Nothing disappeared: every event is with the client, reported, or still in the log.
    for seq in 1..m.next_seq() {
        if *m.fate(seq) == Fate::Unread {
            assert!(m.log.contains(&seq), "seq {seq} vanished");
        }
    }
});
