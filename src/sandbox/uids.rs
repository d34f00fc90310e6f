//! Per-session uids: a range of uids, each leased to one live session's server, and the
//! check that a server's files are open to such a uid.
//!
//! A uid no other process has is the strongest separation a root sidecar can give: once
//! the server has no capabilities, the kernel refuses its signals, ptrace and `/proc`
//! reads to anything of another uid — the sidecar, the supervisors (both root) and every
//! other session's server — on every kernel, with or without Landlock.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// Why no uid could be leased.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "every per-session uid of {first}-{last} is in use: widen --sandbox-uids or lower --max-sessions"
)]
pub struct Exhausted {
    pub first: u32,
    pub last: u32,
}

/// The uids of one range, leased round-robin (a uid just released is the last to be
/// reused), never to a session while any process still runs as it.
#[derive(Debug)]
pub struct UidPool {
    first: u32,
    last: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    leased: BTreeSet<u32>,
    next: u32,
}

impl UidPool {
    pub fn new(first: u32, last: u32) -> Arc<UidPool> {
        Arc::new(UidPool {
            first,
            last,
            state: Mutex::new(State {
                leased: BTreeSet::new(),
                next: first,
            }),
        })
    }

    pub fn range(&self) -> (u32, u32) {
        (self.first, self.last)
    }

    /// A uid for one session, held until the lease is dropped.
    pub fn lease(self: &Arc<UidPool>) -> Result<UidLease, Exhausted> {
        // A process left over from an earlier session (e.g. its supervisor was killed and
        // its orphans not yet swept) must not share its uid with a new server.
        let running = uids_with_processes(self.first, self.last);
        let mut state = self.state.lock();
        let size = u64::from(self.last - self.first) + 1;
        let mut uid = state.next;
        for _ in 0..size {
            if !state.leased.contains(&uid) && !running.contains(&uid) {
                state.leased.insert(uid);
                state.next = if uid == self.last {
                    self.first
                } else {
                    uid + 1
                };
                return Ok(UidLease {
                    uid,
                    pool: self.clone(),
                });
            }
            uid = if uid == self.last {
                self.first
            } else {
                uid + 1
            };
        }
        Err(Exhausted {
            first: self.first,
            last: self.last,
        })
    }
}

/// One session's uid (also its gid); returned to the pool when dropped, which the session
/// does once its server's whole tree has exited.
#[derive(Debug)]
pub struct UidLease {
    uid: u32,
    pool: Arc<UidPool>,
}

impl UidLease {
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        self.pool.state.lock().leased.remove(&self.uid);
    }
}

/// The uids in `first..=last` that some process runs as (real, effective, saved or
/// filesystem uid, from `/proc/<pid>/status`: a process can hide its owner in
/// `/proc/<pid>`'s metadata by making itself non-dumpable, not its credentials).
fn uids_with_processes(first: u32, last: u32) -> BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    let mut found = BTreeSet::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let uids = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .into_iter()
            .flat_map(str::split_ascii_whitespace)
            .filter_map(|v| v.parse::<u32>().ok());
        found.extend(uids.filter(|u| (first..=last).contains(u)));
    }
    found
}

/// What a server needs of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Execute a file (or search a directory: `--cwd`).
    Exec,
    /// Read a file or list a directory.
    Read,
    /// Write under a directory.
    Write,
}

/// A path a uid of its own could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub path: PathBuf,
    /// The component that refuses it (the path itself or a directory on the way).
    pub at: PathBuf,
    pub mode: u32,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at == self.path {
            write!(
                f,
                "{} is closed to other users (mode {:04o})",
                self.path.display(),
                self.mode & 0o7777
            )
        } else {
            write!(
                f,
                "{} is behind {}, which other users cannot enter (mode {:04o})",
                self.path.display(),
                self.at.display(),
                self.mode & 0o7777
            )
        }
    }
}

/// The first of `paths` a uid that owns none of them and is in none of their groups could
/// not use as needed: the "other" permission bits of the path and of every directory on the
/// way to it, as written and after resolving symlinks (both walks happen: exec and open
/// follow the path as written). Paths that do not exist are skipped.
pub fn closed_to_other_users(paths: &[(PathBuf, Need)]) -> Option<Closed> {
    for (path, need) in paths {
        let Ok(real) = std::fs::canonicalize(path) else {
            continue;
        };
        for walked in [path.as_path(), real.as_path()] {
            if let Some(closed) = check_walk(walked, &real, *need) {
                return Some(Closed {
                    path: path.clone(),
                    ..closed
                });
            }
        }
    }
    None
}

fn check_walk(path: &Path, real: &Path, need: Need) -> Option<Closed> {
    let closed = |at: &Path, mode: u32| Closed {
        path: path.to_owned(),
        at: at.to_owned(),
        mode,
    };
    // Every directory on the way must be searchable (o+x). Symlinks themselves have no
    // permissions that matter; their targets are walked as `real`.
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if meta.mode() & 0o001 == 0 {
            return Some(closed(dir, meta.permissions().mode()));
        }
    }
    let meta = std::fs::metadata(real).ok()?;
    let mode = meta.permissions().mode();
    let wanted = match (need, meta.is_dir()) {
        (Need::Exec, false) => 0o001,
        (Need::Exec, true) => 0o001,
        (Need::Read, false) => 0o004,
        (Need::Read, true) => 0o005,
        (Need::Write, _) => 0o003,
    };
    (mode & wanted != wanted).then(|| closed(path, mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_unique_round_robin_and_returned() {
        // A range nobody runs as.
        let pool = UidPool::new(3_900_000_000, 3_900_000_002);
        let a = pool.lease().unwrap();
        let b = pool.lease().unwrap();
        let c = pool.lease().unwrap();
        assert_eq!(
            [a.uid(), b.uid(), c.uid()],
            [3_900_000_000, 3_900_000_001, 3_900_000_002]
        );
        assert_eq!(
            pool.lease().unwrap_err(),
            Exhausted {
                first: 3_900_000_000,
                last: 3_900_000_002
            }
        );
        drop(b);
        // The one released comes back; the next after it is the one leased.
        assert_eq!(pool.lease().unwrap().uid(), 3_900_000_001);
    }

    #[test]
    fn a_uid_some_process_runs_as_is_skipped() {
        let me = nix::unistd::getuid().as_raw();
        let pool = UidPool::new(me, me.saturating_add(1));
        let lease = pool.lease().unwrap();
        assert_eq!(lease.uid(), me + 1, "this test process runs as {me}");
    }

    #[test]
    fn closed_paths_are_named_with_the_component_that_closes_them() {
        let tmp = std::env::temp_dir().join(format!("mcpw-uids-{}", std::process::id()));
        let private = tmp.join("private");
        let open = tmp.join("open");
        std::fs::create_dir_all(private.join("bin")).unwrap();
        std::fs::create_dir_all(&open).unwrap();
        for d in [&tmp, &open] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let exe = private.join("bin/python3");
        std::fs::write(&exe, "").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = open.join("server.py");
        std::fs::write(&script, "").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = open.join("python3");
        std::os::unix::fs::symlink(&exe, &link).unwrap();

        assert_eq!(closed_to_other_users(&[(script.clone(), Need::Read)]), None);
        // Through a symlink in an open directory to a file behind a closed one.
        let c = closed_to_other_users(&[(link.clone(), Need::Exec)]).unwrap();
        assert_eq!(
            (c.path.as_path(), c.at.as_path()),
            (link.as_path(), private.as_path())
        );
        assert!(c.to_string().contains("mode 0700"), "{c}");
        // A file without the bit for others.
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o640)).unwrap();
        let c = closed_to_other_users(&[(script.clone(), Need::Read)]).unwrap();
        assert_eq!(c.at, script);
        // Writing needs o+wx on the directory.
        assert!(closed_to_other_users(&[(open.clone(), Need::Write)]).is_some());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(closed_to_other_users(&[(open.clone(), Need::Write)]).is_none());
        // Missing paths are not this check's business.
        assert!(closed_to_other_users(&[(tmp.join("nope"), Need::Read)]).is_none());
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
