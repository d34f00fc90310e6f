//! Runs the wrapped server inside a per-session supervisor that owns its whole process tree.
//!
//! The sidecar never forks itself (it is multi-threaded). It starts its own binary again in
//! the hidden `__sandbox-exec` mode ([`exec::main`]); that single-threaded helper becomes
//! the session's supervisor and forks the server. See `exec.rs` for the sequence.

pub mod exec;
pub mod seccomp;

/// The hidden sub-command that selects the helper mode. `main` checks for it before any
/// thread exists.
pub const HELPER_ARG: &str = "__sandbox-exec";

/// Process-wide protections of the sidecar, applied once at startup before any thread:
/// it becomes a child subreaper, so orphans of a server tree whose supervisor died are
/// re-parented to it (and reaped and killed) instead of escaping to init.
pub fn harden_sidecar() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}
