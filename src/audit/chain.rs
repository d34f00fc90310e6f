//! The hash chain of audit lines, and its verification.
//!
//! Every line is a JSON object that starts with `"seq"` and `"prev"` (the hash of the line
//! before; 64 zeros for the first) and ends with `,"hash":"<hex>"}`, where the hash is
//! SHA-256 (HMAC-SHA-256 with a key) of the line with that last field removed. So editing a
//! record breaks its own hash, and inserting, deleting or reordering records breaks the
//! `seq`/`prev` links. Without a key, someone able to rewrite the file can recompute every
//! hash after the edit; a key kept away from that someone prevents it. Truncating the tail
//! leaves a valid shorter chain: compare the head with an anchor kept elsewhere (the head is
//! printed by `audit verify`), and expect an `audit_closed` record from a clean stop.

use std::fmt::Write as _;
use std::io::BufRead;

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

/// `seq` and `prev` of a record's body.
fn links(body: &str) -> Option<(u64, String)> {
    #[derive(serde::Deserialize)]
    struct Links {
        seq: u64,
        prev: String,
    }
    let l: Links = serde_json::from_str(body).ok()?;
    Some((l.seq, l.prev))
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

/// Verifies a whole file. An empty file is a valid, empty chain.
pub fn verify(reader: impl BufRead, hasher: &Hasher) -> Result<Head, Broken> {
    let mut head = Head {
        records: 0,
        seq: 0,
        hash: GENESIS.to_owned(),
        closed: false,
    };
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
        let (seq, prev) = links(&body).ok_or(Broken::NotARecord { line: n })?;
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
        if prev != head.hash {
            return Err(Broken::Unlinked { line: n, seq });
        }
        head = Head {
            records: head.records + 1,
            seq,
            hash: claimed.to_owned(),
            closed: body.contains("\"event\":\"audit_closed\""),
        };
    }
    Ok(head)
}

/// Reads where an existing file's chain ends, to continue it. `Err` when the last line is
/// not a record (the file needs attention before it is appended to).
pub fn tail(last_line: Option<&str>) -> Result<(u64, String), String> {
    let Some(line) = last_line.filter(|l| !l.trim().is_empty()) else {
        return Ok((0, GENESIS.to_owned()));
    };
    let (body, hash) = unseal(line).ok_or("its last line is not an audit record")?;
    let (seq, _) = links(&body).ok_or("its last line is not an audit record")?;
    Ok((seq, hash.to_owned()))
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
        verify(lines.join("\n").as_bytes(), hasher)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let h = Hasher::new(None);
        let lines = chain(&h, 5);
        let head = check(&lines, &h).unwrap();
        assert_eq!((head.records, head.seq), (5, 5));
        assert_eq!(
            tail(lines.last().map(String::as_str)).unwrap(),
            (5, head.hash)
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
        assert_eq!(tail(None).unwrap().0, 0);
    }
}
