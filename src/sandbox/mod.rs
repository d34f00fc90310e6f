//! Runs the wrapped server inside a per-session supervisor that owns its whole process tree.
//!
//! The sidecar never forks itself (it is multi-threaded). It starts its own binary again in
//! the hidden `__sandbox-exec` mode ([`exec::main`]); that single-threaded helper becomes
//! the session's supervisor and forks the server. See `exec.rs` for the sequence.

pub mod command;
pub mod exec;
pub mod landlock;
pub mod profile;
pub mod seccomp;
pub mod status;
pub mod uids;

/// The hidden sub-command that selects the helper mode. `main` checks for it before any
/// thread exists.
pub const HELPER_ARG: &str = "__sandbox-exec";

/// Process-wide protections of the sidecar, applied once at startup before any thread:
/// - its own argv no longer shows `argv_values` (blanked in place: `/proc/<pid>/cmdline` is
///   readable by any process, sandboxed or not);
/// - it is not dumpable, so a same-user server cannot read its memory or environment
///   (`/proc/<pid>/environ`, `mem`) nor ptrace it;
/// - it becomes a child subreaper, so orphans of a server tree whose supervisor died are
///   re-parented to it (and reaped and killed) instead of escaping to init.
pub fn harden_sidecar(argv_values: &[String]) -> std::io::Result<status::SidecarProtection> {
    let values: Vec<&[u8]> = argv_values
        .iter()
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty())
        .collect();
    if !values.is_empty() {
        scrub_own_argv(&values)?;
    }
    nix::sys::prctl::set_dumpable(false).map_err(std::io::Error::from)?;
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
    Ok(status::SidecarProtection {
        non_dumpable: !nix::sys::prctl::get_dumpable().map_err(std::io::Error::from)?,
        subreaper: nix::sys::prctl::get_child_subreaper().map_err(std::io::Error::from)?,
    })
}

/// Overwrites every occurrence of `values` in this process's original argv memory (what
/// `/proc/self/cmdline` shows) with `*`. The bounds come from `/proc/self/stat`; the write
/// goes through `/proc/self/mem`, which a process may always do to itself.
fn scrub_own_argv(values: &[&[u8]]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let (start, end) = argv_bounds(&stat)
        .ok_or_else(|| std::io::Error::other("cannot read argv bounds from /proc/self/stat"))?;
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/self/mem")?;
    let mut args = vec![0u8; (end - start) as usize];
    mem.read_exact_at(&mut args, start)?;
    if blank(&mut args, values) {
        mem.write_all_at(&args, start)?;
    }
    Ok(())
}

/// `arg_start` and `arg_end` (fields 48 and 49 of `/proc/<pid>/stat`).
fn argv_bounds(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(48 - 3);
    let start = fields.next()?.parse().ok()?;
    let end: u64 = fields.next()?.parse().ok()?;
    (end > start).then_some((start, end))
}

/// Replaces each occurrence of each value with `*`; whether anything changed.
fn blank(buf: &mut [u8], values: &[&[u8]]) -> bool {
    let mut changed = false;
    for v in values {
        let mut i = 0;
        while i + v.len() <= buf.len() {
            if &buf[i..i + v.len()] == *v {
                buf[i..i + v.len()].fill(b'*');
                changed = true;
                i += v.len();
            } else {
                i += 1;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_bounds_are_fields_48_and_49() {
        let mut stat = String::from("42 (a b) c) S");
        for n in 4..=52 {
            stat.push_str(&format!(" {n}"));
        }
        assert_eq!(argv_bounds(&stat), Some((48, 49)));
        assert_eq!(argv_bounds("1 (x) S 1 2"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(argv_bounds(&own).is_some());
    }

    #[test]
    fn blanking_replaces_every_occurrence() {
        let mut buf = b"--env\0A=tok123\0--env=B=tok123x\0".to_vec();
        assert!(blank(&mut buf, &[b"tok123"]));
        assert_eq!(buf, b"--env\0A=******\0--env=B=******x\0".to_vec());
        assert!(!blank(&mut buf, &[b"absent"]));
    }
}
