//! A sink bound after the spawn. A warm spare's server starts before any session exists to
//! hear it; what it writes meanwhile (servers rarely write before `initialize`) is held, a
//! bounded amount, and handed to the session it is given to, in order, before anything else.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;

use super::bridge::{ChildSink, Closed};
use crate::mcp::Id;

/// Lines held before a session is bound, at most; later ones are dropped (and counted).
const EARLY_LINES: usize = 64;
/// Bytes held before a session is bound, at most.
const EARLY_BYTES: usize = 1 << 20;

#[derive(Debug)]
enum Early {
    Line(Bytes),
    Oversized(Option<Id>, usize),
}

#[derive(Debug, Default)]
struct Held {
    early: VecDeque<Early>,
    bytes: usize,
    dropped: usize,
    closed: Option<Closed>,
}

/// See the module docs.
#[derive(Default)]
pub struct LateSink {
    held: Mutex<Held>,
    /// Set once, after what was held has been handed over: a reader that sees it may
    /// forward directly.
    target: OnceLock<Arc<dyn ChildSink>>,
}

impl std::fmt::Debug for LateSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateSink")
            .field("bound", &self.target.get().is_some())
            .finish()
    }
}

impl LateSink {
    pub fn new() -> Arc<LateSink> {
        Arc::new(LateSink::default())
    }

    /// Whether the server stopped talking before any session was bound.
    pub fn is_closed(&self) -> bool {
        self.target.get().is_none() && self.held.lock().closed.is_some()
    }

    /// Gives the server to `target`: what it wrote so far first. Refused (and nothing is
    /// handed over) when the server already stopped talking: the caller starts another.
    pub fn bind(&self, target: Arc<dyn ChildSink>) -> Result<(), Closed> {
        let mut held = self.held.lock();
        if let Some(why) = held.closed {
            return Err(why);
        }
        if held.dropped > 0 {
            tracing::warn!(
                dropped = held.dropped,
                "the server wrote more than is kept before its session started; the rest was dropped"
            );
        }
        for e in held.early.drain(..) {
            match e {
                Early::Line(line) => target.on_message(line),
                Early::Oversized(id, len) => target.on_oversized(id, len),
            }
        }
        held.bytes = 0;
        // Under the lock, after the hand-over: a line read now waits for the lock, then
        // finds the target.
        let _ = self.target.set(target);
        Ok(())
    }

    /// Runs `forward` on the target if one is bound, else holds `e`.
    fn deliver(&self, e: Early, forward: impl FnOnce(&Arc<dyn ChildSink>, Early)) {
        if let Some(t) = self.target.get() {
            return forward(t, e);
        }
        let mut held = self.held.lock();
        if let Some(t) = self.target.get() {
            drop(held);
            return forward(t, e);
        }
        let size = match &e {
            Early::Line(l) => l.len(),
            Early::Oversized(..) => 0,
        };
        if held.early.len() >= EARLY_LINES || held.bytes + size > EARLY_BYTES {
            held.dropped += 1;
            return;
        }
        held.bytes += size;
        held.early.push_back(e);
    }
}

impl ChildSink for LateSink {
    fn on_message(&self, line: Bytes) {
        self.deliver(Early::Line(line), |t, e| {
            if let Early::Line(l) = e {
                t.on_message(l);
            }
        });
    }

    fn on_oversized(&self, id: Option<Id>, len: usize) {
        self.deliver(Early::Oversized(id, len), |t, e| {
            if let Early::Oversized(id, len) = e {
                t.on_oversized(id, len);
            }
        });
    }

    fn on_closed(&self, why: Closed) {
        if let Some(t) = self.target.get() {
            return t.on_closed(why);
        }
        let mut held = self.held.lock();
        match self.target.get() {
            Some(t) => {
                drop(held);
                t.on_closed(why);
            }
            None => {
                held.closed.get_or_insert(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);

    impl ChildSink for Record {
        fn on_message(&self, line: Bytes) {
            self.0
                .lock()
                .push(String::from_utf8_lossy(&line).into_owned());
        }
        fn on_oversized(&self, _: Option<Id>, len: usize) {
            self.0.lock().push(format!("oversized {len}"));
        }
        fn on_closed(&self, why: Closed) {
            self.0.lock().push(format!("closed {why:?}"));
        }
    }

    #[test]
    fn what_came_before_the_session_comes_first_and_in_order() {
        let late = LateSink::new();
        late.on_message(Bytes::from_static(b"a"));
        late.on_oversized(None, 9);
        let r = Arc::new(Record::default());
        late.bind(r.clone()).unwrap();
        late.on_message(Bytes::from_static(b"b"));
        late.on_closed(Closed::StdoutClosed);
        assert_eq!(
            *r.0.lock(),
            vec!["a", "oversized 9", "b", "closed StdoutClosed"]
        );
    }

    #[test]
    fn a_server_that_stopped_before_its_session_is_not_bound() {
        let late = LateSink::new();
        late.on_closed(Closed::StdoutClosed);
        assert!(late.is_closed());
        assert!(late.bind(Arc::new(Record::default())).is_err());
    }

    #[test]
    fn what_is_held_is_bounded() {
        let late = LateSink::new();
        for i in 0..(EARLY_LINES + 10) {
            late.on_message(Bytes::from(i.to_string()));
        }
        let r = Arc::new(Record::default());
        late.bind(r.clone()).unwrap();
        assert_eq!(r.0.lock().len(), EARLY_LINES);
        assert_eq!(r.0.lock()[0], "0");
    }
}
