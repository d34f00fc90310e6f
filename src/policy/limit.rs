//! Token buckets for rate limits, keyed by principal, tool, or both. Time is passed in.
//!
//! Keys are 64-bit keyed hashes, so counting a call allocates nothing; two keys colliding
//! would only share a bucket. The table is bounded: when it is full, buckets that have
//! refilled completely (indistinguishable from new ones) are dropped, and if none has, calls
//! that need a new bucket are refused until one has. A bucket still counting is never
//! dropped, so a flood of new keys cannot reset a limit.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What one bucket is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// One bucket per principal (issuer + subject), across its sessions.
    Principal,
    /// One bucket per tool (prompt, resource), shared by all principals.
    Tool,
    /// One bucket per principal and tool.
    PrincipalAndTool,
    /// One bucket per session.
    Session,
}

impl Per {
    pub fn name(self) -> &'static str {
        match self {
            Per::Principal => "principal",
            Per::Tool => "tool",
            Per::PrincipalAndTool => "principal_and_tool",
            Per::Session => "session",
        }
    }
}

/// A rate: `capacity` calls at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub capacity: f64,
    pub per_second: f64,
}

impl Rate {
    /// Parses `N/s`, `N/min`, `N/h`, `N/day` (also `second`, `minute`, `hour`).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let err = || format!("rate {s:?} must look like 10/s, 100/min, 1000/h or 5000/day");
        let (n, unit) = s.split_once('/').ok_or_else(err)?;
        let n: u32 = n.trim().parse().map_err(|_| err())?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            "d" | "day" => 86_400.0,
            _ => return Err(err()),
        };
        if n == 0 {
            return Err(format!(
                "rate {s:?} allows nothing; remove the rule instead"
            ));
        }
        Ok(Rate {
            capacity: f64::from(n),
            per_second: f64::from(n) / secs,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every rate-limit rule.
#[derive(Debug)]
pub(crate) struct Limiter {
    rates: Vec<Rate>,
    buckets: Mutex<HashMap<(u16, u64), Bucket>>,
    hasher: std::collections::hash_map::RandomState,
    max_keys: usize,
}

/// One bucket to draw from: which rule, and the parts of its key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draw<'a> {
    pub(crate) rule: u16,
    pub(crate) key: (&'a str, &'a str, &'a str),
}

impl Limiter {
    /// Buckets for rules with these rates (indexed by rule), at most `max_keys` at once.
    pub(crate) fn new(rates: Vec<Rate>, max_keys: usize) -> Limiter {
        Limiter {
            rates,
            buckets: Mutex::new(HashMap::new()),
            hasher: std::collections::hash_map::RandomState::new(),
            max_keys: max_keys.max(1),
        }
    }

    fn key(&self, d: &Draw<'_>) -> (u16, u64) {
        (d.rule, self.hasher.hash_one(d.key))
    }

    /// Takes one token from every bucket, or from none: returns the index of the first draw
    /// that cannot be served and how long until it could be.
    ///
    /// The table holds at most `max_keys` buckets. When a call needs new ones and there is no
    /// room, buckets that have refilled completely (no different from new ones) are dropped;
    /// if that is not enough, the call is refused until one will have refilled. A bucket
    /// still counting calls is never dropped: forgetting it would reset its limit, and
    /// callers choose the tool names some keys are made of.
    pub(crate) fn take(&self, draws: &[Draw<'_>], now: Instant) -> Result<(), (usize, Duration)> {
        if draws.is_empty() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock();
        let mut levels: Vec<(usize, (u16, u64), f64)> = Vec::with_capacity(draws.len());
        let mut new_keys = 0usize;
        let mut first_new = None;
        for (i, d) in draws.iter().enumerate() {
            let Some(rate) = self.rates.get(usize::from(d.rule)).copied() else {
                continue;
            };
            let key = self.key(d);
            let tokens = match buckets.get(&key) {
                Some(b) => refill(b, rate, now),
                None => {
                    // Two draws of one call on one new key (only with hash collisions) take
                    // one slot.
                    if !levels.iter().any(|(_, k, _)| *k == key) {
                        new_keys += 1;
                        first_new.get_or_insert(i);
                    }
                    rate.capacity
                }
            };
            if tokens < 1.0 {
                let wait = (1.0 - tokens) / rate.per_second;
                return Err((i, Duration::from_secs_f64(wait.max(0.001))));
            }
            levels.push((i, key, tokens));
        }
        if buckets.len() + new_keys > self.max_keys {
            let rates = &self.rates;
            buckets.retain(|(rule, _), b| {
                rates
                    .get(usize::from(*rule))
                    .is_some_and(|r| refill(b, *r, now) < r.capacity)
            });
            if buckets.len() + new_keys > self.max_keys {
                // Until the first bucket will have refilled completely.
                let wait = buckets
                    .iter()
                    .filter_map(|((rule, _), b)| {
                        let r = rates.get(usize::from(*rule))?;
                        Some((r.capacity - refill(b, *r, now)) / r.per_second)
                    })
                    .fold(f64::INFINITY, f64::min);
                let wait = if wait.is_finite() { wait } else { 1.0 };
                return Err((
                    first_new.unwrap_or(0),
                    Duration::from_secs_f64(wait.max(0.001)),
                ));
            }
        }
        for (_, key, tokens) in levels {
            buckets.insert(
                key,
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
        }
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().len()
    }
}

fn refill(b: &Bucket, rate: Rate, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * rate.per_second).min(rate.capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            Rate::parse("60/min").unwrap(),
            Rate {
                capacity: 60.0,
                per_second: 1.0
            }
        );
        assert_eq!(Rate::parse("2/s").unwrap().per_second, 2.0);
        for bad in ["", "10", "x/s", "10/week", "0/s", "-1/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn buckets_drain_refill_and_say_when() {
        let rate = Rate::parse("2/s").unwrap();
        let l = Limiter::new(vec![rate], 100);
        let t0 = Instant::now();
        let d = [Draw {
            rule: 0,
            key: ("iss", "alice", ""),
        }];
        assert!(l.take(&d, t0).is_ok());
        assert!(l.take(&d, t0).is_ok());
        let (i, wait) = l.take(&d, t0).unwrap_err();
        assert_eq!(i, 0);
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(l.take(&d, t0 + Duration::from_millis(500)).is_ok());
        // Another key has its own bucket.
        let other = [Draw {
            key: ("iss", "bob", ""),
            ..d[0]
        }];
        assert!(l.take(&other, t0).is_ok());
    }

    #[test]
    fn all_or_nothing_across_buckets() {
        let wide = Rate::parse("10/s").unwrap();
        let narrow = Rate::parse("1/min").unwrap();
        let l = Limiter::new(vec![wide, narrow], 100);
        let t0 = Instant::now();
        let draws = [
            Draw {
                rule: 0,
                key: ("", "alice", ""),
            },
            Draw {
                rule: 1,
                key: ("", "", "send"),
            },
        ];
        assert!(l.take(&draws, t0).is_ok());
        assert_eq!(l.take(&draws, t0).unwrap_err().0, 1);
        // The refused call did not consume from the first bucket: 9 remain.
        for _ in 0..9 {
            assert!(l.take(&draws[..1], t0).is_ok());
        }
        assert!(l.take(&draws[..1], t0).is_err());
    }

    #[test]
    fn every_matching_limit_is_enforced_however_many() {
        let wide = Rate::parse("100/s").unwrap();
        let narrow = Rate::parse("1/min").unwrap();
        // Eleven limits match the call; only the last is narrow.
        let mut rates = vec![wide; 10];
        rates.push(narrow);
        let l = Limiter::new(rates, 100);
        let draws: Vec<Draw<'_>> = (0..11)
            .map(|rule| Draw {
                rule,
                key: ("iss", "alice", "echo"),
            })
            .collect();
        let t0 = Instant::now();
        assert!(l.take(&draws, t0).is_ok());
        assert_eq!(l.take(&draws, t0).unwrap_err().0, 10);
    }

    #[test]
    fn a_full_table_refuses_new_keys_and_never_forgets_a_drained_bucket() {
        let rate = Rate::parse("1/min").unwrap();
        let l = Limiter::new(vec![rate], 4);
        let t0 = Instant::now();
        let draw = |name: &'static str| {
            [Draw {
                rule: 0,
                key: ("", "", name),
            }]
        };
        assert!(l.take(&draw("victim"), t0).is_ok());
        assert!(l.take(&draw("victim"), t0).is_err(), "drained");
        // Client-chosen names fill the table...
        let names = ["a", "b", "c", "d", "e", "f", "g"];
        let taken = names
            .iter()
            .filter(|n| l.take(&draw(n), t0).is_ok())
            .count();
        assert_eq!(taken, 3, "only room for three more");
        assert!(l.len() <= 4, "{}", l.len());
        // ...and the drained bucket is still there: no reset by eviction.
        let (_, wait) = l.take(&draw("victim"), t0).unwrap_err();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        // A refusal for want of room says when a bucket will have refilled.
        let (_, wait) = l.take(&draw("h"), t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        // Refilled buckets are as good as new and make room.
        let later = t0 + Duration::from_secs(61);
        assert!(l.take(&draw("h"), later).is_ok());
        assert!(l.len() <= 4);
    }

    #[test]
    fn the_table_stays_bounded() {
        let rate = Rate::parse("1/s").unwrap();
        let l = Limiter::new(vec![rate], 4);
        let t0 = Instant::now();
        let names: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            let d = [Draw {
                rule: 0,
                key: ("", n, ""),
            }];
            assert!(l.take(&d, t0 + Duration::from_secs(i as u64 * 2)).is_ok());
        }
        assert!(l.len() <= 5, "{}", l.len());
    }
}
