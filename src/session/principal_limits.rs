//! Who may open a session now, per principal: at most so many sessions held at once (both
//! transports together), and session starts at a bounded rate (a token bucket). Each session
//! is a server process: without these, one caller with a valid token could hold every
//! session of `--max-sessions`, or start and stop servers as fast as the host forks. Time is
//! passed in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Rate buckets kept at most; beyond it, the full ones (indistinguishable from new ones) go.
const MAX_BUCKETS: usize = 10_000;

/// The limits each principal is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrincipalLimits {
    /// Sessions one principal holds at once.
    pub max_sessions: usize,
    /// Session starts per principal; `None`: unlimited.
    pub rate: Option<SessionRate>,
}

/// `burst` session starts at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionRate {
    pub burst: u32,
    pub per_second: f64,
}

impl SessionRate {
    /// Parses a rate as `[[rate_limit]]` rules write it (`30/min`, `2/s`, `500/h`, `N/day`):
    /// a burst of N, refilled over the unit.
    pub fn parse(s: &str) -> Result<SessionRate, String> {
        let rate = crate::policy::Rate::parse(s)?;
        Ok(SessionRate {
            burst: rate.capacity as u32,
            per_second: rate.per_second,
        })
    }
}

/// Why a principal may not open a session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalRefusal {
    #[error("the principal already holds {0} sessions")]
    Cap(usize),
    #[error("the principal opens sessions too fast")]
    Rate { retry_after: Duration },
}

impl PrincipalRefusal {
    /// The snake_case code of audit records and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            PrincipalRefusal::Cap(_) => "principal_session_cap",
            PrincipalRefusal::Rate { .. } => "principal_session_rate",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The sessions each principal holds and its rate bucket.
#[derive(Debug, Default)]
pub(super) struct Principals {
    limits: Option<PrincipalLimits>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Sessions held (or being started) by each principal that holds any.
    held: HashMap<Arc<str>, usize>,
    buckets: HashMap<Arc<str>, Bucket>,
}

impl Principals {
    /// `None`: no per-principal limits (authentication off: everyone is one principal).
    pub(super) fn new(limits: Option<PrincipalLimits>) -> Principals {
        Principals {
            limits,
            state: Mutex::default(),
        }
    }

    /// Counts a new session of `owner`, or says why not. The cap is checked before the
    /// rate, so a refusal at the cap costs no start.
    pub(super) fn admit(&self, owner: &Arc<str>, now: Instant) -> Result<(), PrincipalRefusal> {
        let Some(limits) = self.limits else {
            return Ok(());
        };
        let mut st = self.state.lock();
        let held = st.held.get(owner).copied().unwrap_or(0);
        if held >= limits.max_sessions {
            return Err(PrincipalRefusal::Cap(limits.max_sessions));
        }
        if let Some(rate) = limits.rate {
            let capacity = f64::from(rate.burst);
            let tokens = st
                .buckets
                .get(owner)
                .map_or(capacity, |b| refill(b, rate, now));
            if tokens < 1.0 {
                let wait = (1.0 - tokens) / rate.per_second;
                return Err(PrincipalRefusal::Rate {
                    retry_after: Duration::from_secs_f64(wait.max(0.001)),
                });
            }
            if st.buckets.len() >= MAX_BUCKETS {
                st.buckets.retain(|_, b| refill(b, rate, now) < capacity);
            }
            st.buckets.insert(
                owner.clone(),
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
        }
        *st.held.entry(owner.clone()).or_insert(0) += 1;
        Ok(())
    }

    /// A session of `owner` ended (or never started).
    pub(super) fn release(&self, owner: &str) {
        if self.limits.is_none() {
            return;
        }
        let mut st = self.state.lock();
        if let Some(n) = st.held.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                st.held.remove(owner);
            }
        }
    }

    #[cfg(test)]
    fn held(&self, owner: &str) -> usize {
        self.state.lock().held.get(owner).copied().unwrap_or(0)
    }
}

fn refill(b: &Bucket, rate: SessionRate, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * rate.per_second).min(f64::from(rate.burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            SessionRate::parse("30/min").unwrap(),
            SessionRate {
                burst: 30,
                per_second: 0.5
            }
        );
        assert_eq!(SessionRate::parse("2/s").unwrap().per_second, 2.0);
        for bad in ["", "30", "x/min", "0/s", "3/week", "-1/s"] {
            assert!(SessionRate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_principal_holds_at_most_its_cap() {
        let a = Principals::new(Some(PrincipalLimits {
            max_sessions: 2,
            rate: None,
        }));
        let t = Instant::now();
        let (alice, bob) = (owner("alice"), owner("bob"));
        assert!(a.admit(&alice, t).is_ok());
        assert!(a.admit(&alice, t).is_ok());
        assert_eq!(a.admit(&alice, t), Err(PrincipalRefusal::Cap(2)));
        assert!(a.admit(&bob, t).is_ok(), "others are not held back");
        a.release(&alice);
        assert!(a.admit(&alice, t).is_ok());
        a.release(&alice);
        a.release(&alice);
        a.release(&bob);
        assert_eq!((a.held("alice"), a.held("bob")), (0, 0));
        assert!(a.state.lock().held.is_empty(), "nobody is remembered");
        // A release too many (never happens) does not underflow.
        a.release(&alice);
    }

    #[test]
    fn starts_refill_at_the_rate_and_say_when() {
        let a = Principals::new(Some(PrincipalLimits {
            max_sessions: 100,
            rate: Some(SessionRate::parse("2/s").unwrap()),
        }));
        let t = Instant::now();
        let alice = owner("alice");
        assert!(a.admit(&alice, t).is_ok());
        assert!(a.admit(&alice, t).is_ok());
        let Err(PrincipalRefusal::Rate { retry_after }) = a.admit(&alice, t) else {
            panic!("a third start in the same instant");
        };
        assert!(
            retry_after > Duration::from_millis(400) && retry_after <= Duration::from_millis(500)
        );
        assert!(a.admit(&owner("bob"), t).is_ok());
        assert!(a.admit(&alice, t + Duration::from_millis(500)).is_ok());
        // A refusal at the cap costs no start.
        let capped = Principals::new(Some(PrincipalLimits {
            max_sessions: 1,
            rate: Some(SessionRate::parse("2/min").unwrap()),
        }));
        assert!(capped.admit(&alice, t).is_ok());
        assert_eq!(capped.admit(&alice, t), Err(PrincipalRefusal::Cap(1)));
        capped.release(&alice);
        assert!(
            capped.admit(&alice, t).is_ok(),
            "the second start was not spent"
        );
    }

    #[test]
    fn without_limits_everything_is_admitted() {
        let a = Principals::new(None);
        let t = Instant::now();
        for _ in 0..1000 {
            assert!(a.admit(&owner("anonymous"), t).is_ok());
        }
    }
}
