//! The hash chain of audit lines, and its verification.
//!
//! Every line is a JSON object that starts with `"seq"` and `"prev"` (the hash of the line
//! before; 64 zeros for the first) and ends with `,"hash":"<hex>"}`, where the hash is
//! SHA-256 (HMAC-SHA-256 with a key) of the line with that last field removed. So editing a
//! record breaks its own hash, and inserting, deleting or reordering records breaks the
//! `seq`/`prev` links. Without a key, someone able to rewrite the file can recompute every
//! hash after the edit; a key kept away from that someone prevents it.
//!
//! An intact chain can still be incomplete, and [`verify`] reports each such gap: records
//! the writer dropped (a `records_dropped` record), a run that stopped without closing the
//! log (killed or crashed: a run's first record, `audit_opened`, follows a record other than
//! `audit_closed`), and a cut tail. A cut back to any record leaves a valid shorter chain,
//! so it is seen only from outside the cut bytes: the writer keeps the head in an anchor file
//! beside the log (or where configured), and every run's `audit_opened` carries the head the
//! anchor named when it started. A head named there or in the anchor that the log does not
//! hold is a cut.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, Seek, SeekFrom};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_FIELD: &str = ",\"hash\":\"";

/// Hashes with SHA-256 or HMAC-SHA-256.
#[derive(Clone)]
pub struct Hasher {
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("keyed", &self.key.is_some())
            .finish()
    }
}

impl Hasher {
    pub fn new(key: Option<Vec<u8>>) -> Hasher {
        Hasher { key }
    }

    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// Hex digest of `parts`, concatenated.
    pub fn hex(&self, parts: &[&[u8]]) -> String {
        let digest: [u8; 32] = match &self.key {
            Some(k) => {
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(k) else {
                    // HMAC accepts keys of any length; unreachable in practice.
                    return GENESIS.to_owned();
                };
                for p in parts {
                    mac.update(p);
                }
                mac.finalize().into_bytes().into()
            }
            None => {
                let mut h = Sha256::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().into()
            }
        };
        let mut s = String::with_capacity(64);
        for b in digest {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

/// Appends the hash field to a serialized record (`{…}` without a hash) and returns the line
/// and its hash.
pub fn seal(hasher: &Hasher, body: &str) -> (String, String) {
    let hash = hasher.hex(&[body.as_bytes()]);
    let open = body.strip_suffix('}').unwrap_or(body);
    let mut line = String::with_capacity(body.len() + 76);
    line.push_str(open);
    line.push_str(HASH_FIELD);
    line.push_str(&hash);
    line.push_str("\"}");
    (line, hash)
}

/// Splits a line into the body that was hashed and the hash it claims.
fn unseal(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_suffix("\"}")?;
    let at = rest.rfind(HASH_FIELD)?;
    let hash = &rest[at + HASH_FIELD.len()..];
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut body = rest[..at].to_owned();
    body.push('}');
    Some((body, hash))
}

/// Where the chain of a file ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub records: u64,
    pub seq: u64,
    pub hash: String,
    /// Whether the last record is `audit_closed` (a clean stop).
    pub closed: bool,
}

/// A head kept outside the log: record `seq` has hash `hash`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
}

impl Anchor {
    /// The anchor file's text.
    pub fn to_line(&self) -> String {
        format!("{{\"seq\":{},\"hash\":\"{}\"}}\n", self.seq, self.hash)
    }

    /// Reads an anchor file's text.
    pub fn parse(text: &str) -> Option<Anchor> {
        let a: Anchor = serde_json::from_str(text.trim()).ok()?;
        (a.hash.len() == 64 && a.hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(a)
    }
}

/// The first thing wrong with a file, by line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("line {line}: not an audit record")]
    NotARecord { line: u64 },
    #[error("line {line}: record {seq} was modified (its hash does not match its content)")]
    Modified { line: u64, seq: u64 },
    #[error("line {line}: {missing} record(s) deleted before record {seq}")]
    Deleted { line: u64, seq: u64, missing: u64 },
    #[error("line {line}: record {seq} was inserted or moved (expected record {expected})")]
    Inserted { line: u64, seq: u64, expected: u64 },
    #[error(
        "line {line}: record {seq} does not follow the record before it (replaced or inserted)"
    )]
    Unlinked { line: u64, seq: u64 },
    #[error("line {line}: cannot read: {error}")]
    Io { line: u64, error: String },
}

/// Records missing from an intact chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gap {
    #[error(
        "line {line}: {count} record(s) dropped before record {seq} (the writer could not keep up or could not write)"
    )]
    Dropped { line: u64, seq: u64, count: u64 },
    #[error(
        "line {line}: the run ending at record {seq} was not closed (killed or crashed): the records it had not written yet are lost"
    )]
    Unclosed { line: u64, seq: u64 },
    #[error(
        "line {line}: the log was cut: the run starting at record {seq} was told the head was record {anchor}, which the log before it does not hold"
    )]
    Cut { line: u64, seq: u64, anchor: u64 },
    #[error(
        "the log was cut: its anchor names record {anchor}, which the log does not hold (it ends at record {head})"
    )]
    CutTail { anchor: u64, head: u64 },
    #[error(
        "the last run (from record {seq} on) has no audit_closed: it is still running (pass --live), or was killed, or its tail was cut"
    )]
    OpenTail { seq: u64 },
    #[error(
        "the log keeps an anchor and none was found: a cut tail cannot be ruled out (give it with --anchor)"
    )]
    NoAnchor,
}

/// What a verification found: where the chain ends and every gap in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub head: Head,
    pub gaps: Vec<Gap>,
}

/// What [`verify`] compares the log with.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The head kept outside the log, if any.
    pub anchor: Option<Anchor>,
    /// The log is still being written: its last run may be open.
    pub live: bool,
}

/// The fields of a record verification reads besides its links.
#[derive(serde::Deserialize)]
struct Fields {
    seq: u64,
    prev: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    anchor: Option<Anchor>,
    #[serde(default)]
    anchored: Option<bool>,
}

/// Verifies a whole file: every record's hash and link (the first break is an error), then
/// every gap (dropped records, runs not closed, cuts). An empty file is a valid, empty
/// chain. Reads the file twice: first for the heads that runs and the anchor name, then to
/// check them against the records.
pub fn verify(
    mut reader: impl BufRead + Seek,
    hasher: &Hasher,
    expect: &Expect,
) -> Result<Report, Broken> {
    // The heads to check, by seq, and the hash each record with such a seq has.
    let mut named: HashMap<u64, Option<String>> = HashMap::new();
    if let Some(a) = &expect.anchor {
        named.insert(a.seq, None);
    }
    for line in (&mut reader).lines() {
        let Ok(line) = line else { break };
        if !line.contains("\"event\":\"audit_opened\"") {
            continue;
        }
        if let Some(a) = unseal(&line)
            .and_then(|(body, _)| serde_json::from_str::<Fields>(&body).ok())
            .and_then(|f| f.anchor)
        {
            named.insert(a.seq, None);
        }
    }
    reader.seek(SeekFrom::Start(0)).map_err(|e| Broken::Io {
        line: 0,
        error: e.to_string(),
    })?;
    if let Some(slot) = named.get_mut(&0) {
        *slot = Some(GENESIS.to_owned());
    }
    let mut head = Head {
        records: 0,
        seq: 0,
        hash: GENESIS.to_owned(),
        closed: false,
    };
    let mut gaps = Vec::new();
    let mut anchored = false;
    for (i, line) in reader.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.map_err(|e| Broken::Io {
            line: n,
            error: e.to_string(),
        })?;
        if line.is_empty() {
            continue;
        }
        let (body, claimed) = unseal(&line).ok_or(Broken::NotARecord { line: n })?;
        let f: Fields = serde_json::from_str(&body).map_err(|_| Broken::NotARecord { line: n })?;
        let seq = f.seq;
        if hasher.hex(&[body.as_bytes()]) != claimed {
            return Err(Broken::Modified { line: n, seq });
        }
        let expected = head.seq + 1;
        if seq > expected {
            return Err(Broken::Deleted {
                line: n,
                seq,
                missing: seq - expected,
            });
        }
        if seq < expected {
            return Err(Broken::Inserted {
                line: n,
                seq,
                expected,
            });
        }
        if f.prev != head.hash {
            return Err(Broken::Unlinked { line: n, seq });
        }
        match f.event.as_str() {
            "audit_opened" => {
                if head.records > 0 && !head.closed {
                    gaps.push(Gap::Unclosed {
                        line: n - 1,
                        seq: head.seq,
                    });
                }
                if let Some(a) = &f.anchor {
                    let held = named.get(&a.seq).and_then(Option::as_deref);
                    if a.seq >= seq || held != Some(a.hash.as_str()) {
                        gaps.push(Gap::Cut {
                            line: n,
                            seq,
                            anchor: a.seq,
                        });
                    }
                }
                anchored = f.anchored == Some(true);
            }
            "records_dropped" => gaps.push(Gap::Dropped {
                line: n,
                seq,
                count: f.count.unwrap_or(0),
            }),
            _ => {}
        }
        if let Some(slot) = named.get_mut(&seq) {
            *slot = Some(claimed.to_owned());
        }
        head = Head {
            records: head.records + 1,
            seq,
            hash: claimed.to_owned(),
            closed: f.event == "audit_closed",
        };
    }
    if head.records > 0 && !head.closed && !expect.live {
        gaps.push(Gap::OpenTail { seq: head.seq });
    }
    match &expect.anchor {
        Some(a) => {
            let held = named.get(&a.seq).and_then(Option::as_deref);
            if a.seq > head.seq || held != Some(a.hash.as_str()) {
                gaps.push(Gap::CutTail {
                    anchor: a.seq,
                    head: head.seq,
                });
            }
        }
        None if anchored => gaps.push(Gap::NoAnchor),
        None => {}
    }
    Ok(Report { head, gaps })
}

/// Where an existing file's chain ends, to continue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    pub seq: u64,
    pub hash: String,
    /// Whether its last record is `audit_closed`; `true` for an empty file.
    pub closed: bool,
}

impl Tail {
    /// Where a new, empty log starts.
    pub fn empty() -> Tail {
        Tail {
            seq: 0,
            hash: GENESIS.to_owned(),
            closed: true,
        }
    }
}

/// Reads where an existing file's chain ends. `Err` when the last line is not a record (the
/// file needs attention before it is appended to).
pub fn tail(last_line: Option<&str>) -> Result<Tail, String> {
    let Some(line) = last_line.filter(|l| !l.trim().is_empty()) else {
        return Ok(Tail::empty());
    };
    let (body, hash) = unseal(line).ok_or("its last line is not an audit record")?;
    let f: Fields =
        serde_json::from_str(&body).map_err(|_| "its last line is not an audit record")?;
    Ok(Tail {
        seq: f.seq,
        hash: hash.to_owned(),
        closed: f.event == "audit_closed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(hasher: &Hasher, n: u64) -> Vec<String> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let body =
                    format!(r#"{{"seq":{seq},"prev":"{prev}","event":"call","name":"t{seq}"}}"#);
                let (line, hash) = seal(hasher, &body);
                prev = hash;
                line
            })
            .collect()
    }

    fn check(lines: &[String], hasher: &Hasher) -> Result<Head, Broken> {
        report(lines, hasher, &Expect::default()).map(|r| r.head)
    }

    fn report(lines: &[String], hasher: &Hasher, expect: &Expect) -> Result<Report, Broken> {
        verify(
            std::io::Cursor::new(lines.join("\n").into_bytes()),
            hasher,
            expect,
        )
    }

    #[test]
    fn an_intact_chain_verifies() {
        let h = Hasher::new(None);
        let lines = chain(&h, 5);
        let head = check(&lines, &h).unwrap();
        assert_eq!((head.records, head.seq), (5, 5));
        assert_eq!(
            tail(lines.last().map(String::as_str)).unwrap(),
            Tail {
                seq: 5,
                hash: head.hash,
                closed: false
            }
        );
        assert_eq!(check(&[], &h).unwrap().records, 0);
    }

    #[test]
    fn modification_insertion_deletion_and_reordering_are_caught() {
        let h = Hasher::new(None);
        let lines = chain(&h, 5);
        let mut modified = lines.clone();
        modified[2] = modified[2].replace("t3", "t9");
        assert_eq!(
            check(&modified, &h),
            Err(Broken::Modified { line: 3, seq: 3 })
        );
        let mut deleted = lines.clone();
        deleted.remove(1);
        assert_eq!(
            check(&deleted, &h),
            Err(Broken::Deleted {
                line: 2,
                seq: 3,
                missing: 1
            })
        );
        let mut first_gone = lines.clone();
        first_gone.remove(0);
        assert!(matches!(
            check(&first_gone, &h),
            Err(Broken::Deleted { .. })
        ));
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert!(matches!(
            check(&swapped, &h),
            Err(Broken::Deleted { line: 2, .. })
        ));
        let mut inserted = lines.clone();
        inserted.insert(3, lines[1].clone());
        assert!(matches!(
            check(&inserted, &h),
            Err(Broken::Inserted { line: 4, .. })
        ));
        // A forged record with a correct own hash but a made-up link.
        let forged_body = format!(r#"{{"seq":3,"prev":"{GENESIS}","event":"call","name":"x"}}"#);
        let mut forged = lines.clone();
        forged[2] = seal(&h, &forged_body).0;
        assert_eq!(
            check(&forged, &h),
            Err(Broken::Unlinked { line: 3, seq: 3 })
        );
        let mut junk = lines;
        junk[4] = "{\"seq\":5}".into();
        assert_eq!(check(&junk, &h), Err(Broken::NotARecord { line: 5 }));
    }

    #[test]
    fn a_keyed_chain_needs_the_key() {
        let keyed = Hasher::new(Some(b"k".to_vec()));
        let lines = chain(&keyed, 3);
        assert!(check(&lines, &keyed).is_ok());
        assert!(matches!(
            check(&lines, &Hasher::new(None)),
            Err(Broken::Modified { line: 1, .. })
        ));
        assert!(check(&lines, &Hasher::new(Some(b"other".to_vec()))).is_err());
    }

    #[test]
    fn tail_refuses_garbage() {
        assert!(tail(Some("not a record")).is_err());
        assert_eq!(tail(None).unwrap().seq, 0);
    }

    /// A chain of runs: each `(event, extra fields)` becomes one record, linked.
    fn records(hasher: &Hasher, events: &[(&str, String)]) -> (Vec<String>, Vec<String>) {
        let mut prev = GENESIS.to_owned();
        let mut hashes = Vec::new();
        let lines = events
            .iter()
            .enumerate()
            .map(|(i, (event, extra))| {
                let seq = i + 1;
                let body = format!(r#"{{"seq":{seq},"prev":"{prev}","event":"{event}"{extra}}}"#);
                let (line, hash) = seal(hasher, &body);
                prev = hash.clone();
                hashes.push(hash);
                line
            })
            .collect();
        (lines, hashes)
    }

    fn anchored(a: &Anchor) -> String {
        format!(
            r#","anchor":{{"seq":{},"hash":"{}"}},"anchored":true"#,
            a.seq, a.hash
        )
    }

    #[test]
    fn clean_runs_have_no_gap_and_an_open_one_is_reported_unless_live() {
        let h = Hasher::new(None);
        let plain = || String::new();
        let (lines, hashes) = records(
            &h,
            &[
                ("audit_opened", plain()),
                ("call", plain()),
                ("audit_closed", plain()),
                ("audit_opened", plain()),
                ("call", plain()),
            ],
        );
        let r = report(&lines, &h, &Expect::default()).unwrap();
        assert_eq!(r.gaps, vec![Gap::OpenTail { seq: 5 }]);
        let live = Expect {
            anchor: None,
            live: true,
        };
        assert_eq!(report(&lines, &h, &live).unwrap().gaps, vec![]);
        assert_eq!(
            report(&lines[..3], &h, &Expect::default()).unwrap().gaps,
            vec![]
        );
        // An anchor that the log holds is no gap; one it does not hold is a cut.
        let at = |seq: u64| Expect {
            anchor: Some(Anchor {
                seq,
                hash: hashes[seq as usize - 1].clone(),
            }),
            live: false,
        };
        assert_eq!(report(&lines[..3], &h, &at(3)).unwrap().gaps, vec![]);
        assert_eq!(report(&lines[..3], &h, &at(2)).unwrap().gaps, vec![]);
        // Cut back to the first run's clean stop: the anchor names record 5.
        assert_eq!(
            report(&lines[..3], &h, &at(5)).unwrap().gaps,
            vec![Gap::CutTail { anchor: 5, head: 3 }]
        );
        // An anchor of the right seq but another hash (the records after it rewritten).
        let mut forged = at(3);
        forged.anchor.as_mut().unwrap().hash = hashes[0].clone();
        assert_eq!(
            report(&lines[..3], &h, &forged).unwrap().gaps,
            vec![Gap::CutTail { anchor: 3, head: 3 }]
        );
    }

    #[test]
    fn drops_unclosed_runs_and_cuts_are_each_reported() {
        let h = Hasher::new(None);
        let plain = String::new;
        // Run 1 closes at 3; run 2 is killed after 5; run 3 starts at 6.
        let (lines, hashes) = records(
            &h,
            &[
                ("audit_opened", plain()),
                ("call", plain()),
                ("audit_closed", plain()),
                ("audit_opened", plain()),
                ("call", plain()),
                ("audit_opened", plain()),
                ("records_dropped", r#","count":7"#.into()),
                ("audit_closed", plain()),
            ],
        );
        let r = report(&lines, &h, &Expect::default()).unwrap();
        assert_eq!(
            r.gaps,
            vec![
                Gap::Unclosed { line: 5, seq: 5 },
                Gap::Dropped {
                    line: 7,
                    seq: 7,
                    count: 7
                },
            ]
        );
        assert_eq!(r.head.seq, 8);
        // A run that starts on a log cut back to record 3 records the head it was told of
        // (record 5): the cut stays visible even after the anchor moved on.
        let told = Anchor {
            seq: 5,
            hash: hashes[4].clone(),
        };
        let (cut, cut_hashes) = records(
            &h,
            &[
                ("audit_opened", plain()),
                ("call", plain()),
                ("audit_closed", plain()),
                ("audit_opened", anchored(&told)),
                ("audit_closed", plain()),
            ],
        );
        let now = Expect {
            anchor: Some(Anchor {
                seq: 5,
                hash: cut_hashes[4].clone(),
            }),
            live: false,
        };
        assert_eq!(
            report(&cut, &h, &now).unwrap().gaps,
            vec![Gap::Cut {
                line: 4,
                seq: 4,
                anchor: 5
            }]
        );
        // Told of a head the log holds, with its hash: no gap. With another hash: a cut.
        let (fine, fine_hashes) = records(
            &h,
            &[
                ("audit_opened", plain()),
                ("audit_closed", plain()),
                (
                    "audit_opened",
                    anchored(&Anchor {
                        seq: 1,
                        hash: String::new(),
                    }),
                ),
            ],
        );
        assert!(
            report(&fine, &h, &Expect::default())
                .unwrap()
                .gaps
                .contains(&Gap::Cut {
                    line: 3,
                    seq: 3,
                    anchor: 1
                })
        );
        let _ = fine_hashes;
        let (fine, _) = records(
            &h,
            &[
                ("audit_opened", plain()),
                ("audit_closed", plain()),
                (
                    "audit_opened",
                    anchored(&Anchor {
                        seq: 1,
                        hash: records(&h, &[("audit_opened", plain())]).1[0].clone(),
                    }),
                ),
                ("audit_closed", plain()),
            ],
        );
        // Its run keeps an anchor: without one, a cut cannot be ruled out.
        assert_eq!(
            report(&fine, &h, &Expect::default()).unwrap().gaps,
            vec![Gap::NoAnchor]
        );
    }

    #[test]
    fn anchors_read_back() {
        let a = Anchor {
            seq: 42,
            hash: "ab".repeat(32),
        };
        assert_eq!(Anchor::parse(&a.to_line()), Some(a));
        assert_eq!(Anchor::parse("{\"seq\":1,\"hash\":\"short\"}"), None);
        assert_eq!(Anchor::parse("garbage"), None);
    }
}
