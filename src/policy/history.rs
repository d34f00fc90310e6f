//! What a session has done so far, for sequence-aware conditions: the marks set by `[[mark]]`
//! rules and the most recent calls.
//!
//! Decisions of one session are serialized through this lock, so a call and the call that
//! marks the session cannot race past each other: a mark is recorded when its call is
//! allowed, before the call reaches the server.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

/// One allowed call, as conditions see it (`session.calls`).
#[derive(Debug, Clone)]
pub struct CallSummary {
    pub method: &'static str,
    pub name: Arc<str>,
}

/// A session's history. Cheap to create; one per session.
#[derive(Debug)]
pub struct History {
    state: Mutex<HistoryState>,
}

/// The locked state of a [`History`].
#[derive(Debug)]
pub struct HistoryState {
    marks: Vec<Arc<str>>,
    calls: VecDeque<CallSummary>,
    keep: usize,
    total: u64,
}

impl History {
    /// A history keeping the last `keep` calls (marks are kept for the whole session).
    pub fn new(keep: usize) -> History {
        History {
            state: Mutex::new(HistoryState {
                marks: Vec::new(),
                calls: VecDeque::with_capacity(keep.min(16)),
                keep,
                total: 0,
            }),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, HistoryState> {
        self.state.lock()
    }

    /// The marks set so far (for audit and tests).
    pub fn marks(&self) -> Vec<Arc<str>> {
        self.state.lock().marks.clone()
    }
}

impl HistoryState {
    pub fn marks(&self) -> impl Iterator<Item = &str> {
        self.marks.iter().map(|m| &**m)
    }

    pub fn has_mark(&self, mark: &str) -> bool {
        self.marks.iter().any(|m| &**m == mark)
    }

    pub fn calls(&self) -> impl Iterator<Item = &CallSummary> {
        self.calls.iter()
    }

    /// Calls allowed in this session, including those no longer kept.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn mark(&mut self, mark: &Arc<str>) {
        if !self.has_mark(mark) {
            self.marks.push(mark.clone());
        }
    }

    pub(crate) fn record(&mut self, method: &'static str, name: &str) {
        self.total += 1;
        if self.keep == 0 {
            return;
        }
        if self.calls.len() == self.keep {
            self.calls.pop_front();
        }
        self.calls.push_back(CallSummary {
            method,
            name: name.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_calls_and_every_mark_once() {
        let h = History::new(2);
        {
            let mut s = h.lock();
            for n in ["a", "b", "c"] {
                s.record("tools/call", n);
            }
            let m: Arc<str> = "x".into();
            s.mark(&m);
            s.mark(&m);
            let names: Vec<_> = s.calls().map(|c| c.name.to_string()).collect();
            assert_eq!(names, ["b", "c"]);
            assert_eq!(s.total(), 3);
        }
        assert_eq!(h.marks().len(), 1);
    }
}
