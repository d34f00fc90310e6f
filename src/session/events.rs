//! SSE streams of a session: event ids, a bounded replay log per stream, and attachment of
//! the one HTTP connection that currently consumes a stream.
//!
//! Every message for a client goes into exactly one stream's log; a connection reads the log
//! through a cursor. Events stay in the log after delivery so a client that lost its
//! connection can resume with `Last-Event-ID` (event ids are `<stream>-<seq>`, so the id
//! names the stream to resume). The log is bounded: when it is full, the oldest events are
//! evicted, and evicted events that no connection had received are reported to the caller.

use std::collections::VecDeque;
use std::fmt;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::mcp::Kind;

/// Bounds of one stream's log.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_events: 1024,
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// One message on a stream. `seq` starts at 1; 0 names the priming event.
#[derive(Clone)]
pub struct Event {
    pub seq: u64,
    pub kind: Kind,
    pub data: Bytes,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the payload: it may carry user data.
        f.debug_struct("Event")
            .field("seq", &self.seq)
            .field("kind", &self.kind)
            .field("len", &self.data.len())
            .finish()
    }
}

/// An SSE event id: which stream, and which event on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    pub stream: u32,
    pub seq: u64,
}

impl EventId {
    /// Parses `<stream>-<seq>` (both decimal, no sign, no leading `+`).
    pub fn parse(s: &str) -> Option<EventId> {
        let (stream, seq) = s.trim().split_once('-')?;
        let digits =
            |t: &str| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(stream) || !digits(seq) {
            return None;
        }
        Some(EventId {
            stream: stream.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.stream, self.seq)
    }
}

/// Why a connection cannot read a stream from the requested point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error("event id is ahead of the stream")]
    FromTheFuture,
}

/// One stream of one session.
pub struct EventStream {
    id: u32,
    limits: StreamLimits,
    state: Mutex<State>,
    notify: Notify,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

struct State {
    events: VecDeque<Event>,
    bytes: usize,
    next_seq: u64,
    /// The last event the client has: handed to its connection, or named by its
    /// `Last-Event-ID`. Evicted events after it are reported as lost.
    delivered: u64,
    finished: bool,
    /// Bumped by every attach; a cursor of an older generation stops.
    generation: u64,
    attached: bool,
}

impl EventStream {
    pub fn new(id: u32, limits: StreamLimits) -> Arc<EventStream> {
        Arc::new(EventStream {
            id,
            limits,
            state: Mutex::new(State {
                events: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                delivered: 0,
                finished: false,
                generation: 0,
                attached: false,
            }),
            notify: Notify::new(),
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// Appends a message. Returns the events evicted to make room that no connection had
    /// received (the caller decides what their loss means).
    pub fn push(&self, kind: Kind, data: Bytes) -> Vec<Event> {
        let mut lost = Vec::new();
        {
            let mut st = self.state.lock();
            if st.finished {
                lost.push(Event { seq: 0, kind, data });
                return lost;
            }
            let seq = st.next_seq;
            st.next_seq += 1;
            st.bytes += data.len();
            st.events.push_back(Event { seq, kind, data });
            // The newest event always stays, however large: a response is never evicted by
            // its own size.
            while st.events.len() > 1
                && (st.events.len() > self.limits.max_events || st.bytes > self.limits.max_bytes)
            {
                let Some(old) = st.events.pop_front() else {
                    break;
                };
                st.bytes -= old.data.len();
                if old.seq > st.delivered {
                    lost.push(old);
                }
            }
        }
        self.notify.notify_waiters();
        lost
    }

    /// No more events will come; connections end once they have read everything.
    pub fn finish(&self) {
        self.state.lock().finished = true;
        self.notify.notify_waiters();
    }

    pub fn is_finished(&self) -> bool {
        self.state.lock().finished
    }

    /// Whether events after `seq` are retained (something to replay).
    pub fn has_after(&self, seq: u64) -> bool {
        self.state.lock().events.back().is_some_and(|e| e.seq > seq)
    }

    /// Whether a connection currently reads this stream.
    pub fn is_attached(&self) -> bool {
        self.state.lock().attached
    }

    /// Makes a connection the stream's reader, replacing any previous one. `after`: the last
    /// event the client has (from `Last-Event-ID`); `None` starts after what the client was
    /// last known to have, so events queued while nobody listened are delivered now.
    pub fn attach(self: &Arc<Self>, after: Option<u64>) -> Result<Cursor, AttachError> {
        let generation = {
            let mut st = self.state.lock();
            let after = after.unwrap_or(st.delivered);
            if after >= st.next_seq {
                return Err(AttachError::FromTheFuture);
            }
            // The client's word wins: events after its `Last-Event-ID` never reached it, even
            // if an earlier connection was handed them, so they are undelivered again (and
            // reported if evicted before this connection reads them).
            st.delivered = after;
            st.generation += 1;
            st.attached = true;
            (st.generation, after)
        };
        self.notify.notify_waiters(); // a replaced reader stops
        Ok(Cursor {
            stream: self.clone(),
            generation: generation.0,
            position: generation.1,
        })
    }

    /// Events after `after` that are still retained, and how many in between were evicted.
    fn take_after(&self, after: u64, generation: u64) -> Poll {
        let mut st = self.state.lock();
        if st.generation != generation {
            return Poll::Replaced;
        }
        let first = st.events.front().map(|e| e.seq);
        // Seqs in the log are contiguous (eviction only pops the front).
        let skip = first.map_or(0, |f| (after + 1).saturating_sub(f) as usize);
        let events: Vec<Event> = st
            .events
            .range(skip.min(st.events.len())..)
            .cloned()
            .collect();
        if let Some(last) = events.last() {
            st.delivered = st.delivered.max(last.seq);
            let gap = first.map_or(0, |f| f.saturating_sub(after + 1));
            return Poll::Events { events, gap };
        }
        if st.finished { Poll::End } else { Poll::Wait }
    }

    fn detach(&self, generation: u64) {
        let mut st = self.state.lock();
        if st.generation == generation {
            st.attached = false;
        }
    }
}

enum Poll {
    Events { events: Vec<Event>, gap: u64 },
    Wait,
    End,
    Replaced,
}

/// What a connection reads next.
#[derive(Debug)]
pub enum Next {
    /// New events, in order; `gap` events before them were evicted unread.
    Events { events: Vec<Event>, gap: u64 },
    /// The stream is finished and fully read.
    End,
    /// Another connection took the stream over.
    Replaced,
}

/// A connection's position in a stream. Dropping it detaches the connection.
#[derive(Debug)]
pub struct Cursor {
    stream: Arc<EventStream>,
    generation: u64,
    position: u64,
}

impl Cursor {
    pub fn stream(&self) -> &Arc<EventStream> {
        &self.stream
    }

    /// Waits for the next events.
    pub async fn next(&mut self) -> Next {
        loop {
            let mut notified = pin!(self.stream.notify.notified());
            notified.as_mut().enable();
            match self.stream.take_after(self.position, self.generation) {
                Poll::Events { events, gap } => {
                    if let Some(last) = events.last() {
                        self.position = last.seq;
                    }
                    return Next::Events { events, gap };
                }
                Poll::End => return Next::End,
                Poll::Replaced => return Next::Replaced,
                Poll::Wait => notified.await,
            }
        }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.stream.detach(self.generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn seqs(next: Next) -> Vec<u64> {
        match next {
            Next::Events { events, .. } => events.iter().map(|e| e.seq).collect(),
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn event_ids_round_trip_and_reject_garbage() {
        let id = EventId { stream: 3, seq: 17 };
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        for bad in [
            "",
            "3",
            "-1",
            "3-",
            "a-1",
            "3-x",
            "3--1",
            "+3-1",
            "3-99999999999999999999999",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn events_pushed_before_attach_are_delivered_in_order() {
        let s = EventStream::new(1, StreamLimits::default());
        s.push(Kind::Notification, data("a"));
        s.push(Kind::Response, data("b"));
        s.finish();
        let mut c = s.attach(None).unwrap();
        assert_eq!(seqs(c.next().await), vec![1, 2]);
        assert!(matches!(c.next().await, Next::End));
    }

    #[tokio::test]
    async fn resume_replays_exactly_what_follows_the_last_event_id() {
        let s = EventStream::new(2, StreamLimits::default());
        for i in 0..5 {
            s.push(Kind::Notification, data(&i.to_string()));
        }
        let mut first = s.attach(Some(0)).unwrap();
        assert_eq!(seqs(first.next().await), vec![1, 2, 3, 4, 5]);
        s.push(Kind::Notification, data("late"));
        // The client only saw up to 3, and reconnects.
        let mut second = s.attach(Some(3)).unwrap();
        assert!(matches!(first.next().await, Next::Replaced));
        assert_eq!(seqs(second.next().await), vec![4, 5, 6]);
        assert_eq!(s.attach(Some(99)).unwrap_err(), AttachError::FromTheFuture);
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_push() {
        let s = EventStream::new(0, StreamLimits::default());
        let mut c = s.attach(None).unwrap();
        let reader = tokio::spawn(async move { seqs(c.next().await) });
        tokio::task::yield_now().await;
        s.push(Kind::Request, data("x"));
        assert_eq!(reader.await.unwrap(), vec![1]);
    }

    #[test]
    fn full_log_evicts_oldest_and_reports_unread_losses() {
        let s = EventStream::new(
            0,
            StreamLimits {
                max_events: 2,
                max_bytes: 1 << 20,
            },
        );
        assert!(s.push(Kind::Notification, data("1")).is_empty());
        assert!(s.push(Kind::Notification, data("2")).is_empty());
        let lost = s.push(Kind::Request, data("3"));
        assert_eq!(lost.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
    }

    #[tokio::test]
    async fn delivered_events_are_not_reported_when_evicted() {
        let s = EventStream::new(
            0,
            StreamLimits {
                max_events: 1,
                max_bytes: 1 << 20,
            },
        );
        let mut c = s.attach(None).unwrap();
        s.push(Kind::Notification, data("1"));
        assert_eq!(seqs(c.next().await), vec![1]);
        assert!(s.push(Kind::Notification, data("2")).is_empty());
    }

    #[test]
    fn the_newest_event_survives_its_own_size() {
        let s = EventStream::new(
            0,
            StreamLimits {
                max_events: 8,
                max_bytes: 4,
            },
        );
        s.push(Kind::Notification, data("aa"));
        let lost = s.push(Kind::Response, data("a response larger than the byte cap"));
        assert_eq!(lost.len(), 1);
        assert_eq!(s.state.lock().events.len(), 1);
    }

    #[tokio::test]
    async fn events_a_resuming_client_lacks_are_reported_when_evicted_unread() {
        let s = EventStream::new(
            0,
            StreamLimits {
                max_events: 2,
                max_bytes: 1 << 20,
            },
        );
        s.push(Kind::Request, data("1"));
        let mut c = s.attach(None).unwrap();
        assert_eq!(seqs(c.next().await), vec![1]);
        // Event 1 never reached the client: it resumes from before it.
        let _resumed = s.attach(Some(0)).unwrap();
        assert!(s.push(Kind::Notification, data("2")).is_empty());
        let lost = s.push(Kind::Notification, data("3"));
        assert_eq!(lost.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
    }

    #[tokio::test]
    async fn a_reconnect_without_last_event_id_continues_from_the_last_resume_point() {
        let s = EventStream::new(0, StreamLimits::default());
        s.push(Kind::Notification, data("1"));
        let mut c = s.attach(None).unwrap();
        assert_eq!(seqs(c.next().await), vec![1]);
        s.push(Kind::Notification, data("2"));
        // The client says it lacks event 1, then loses that connection before reading.
        drop(s.attach(Some(0)).unwrap());
        let mut again = s.attach(None).unwrap();
        assert_eq!(seqs(again.next().await), vec![1, 2]);
    }

    #[tokio::test]
    async fn dropping_the_cursor_detaches() {
        let s = EventStream::new(0, StreamLimits::default());
        let c = s.attach(None).unwrap();
        assert!(s.is_attached());
        drop(c);
        assert!(!s.is_attached());
    }
}
