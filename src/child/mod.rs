//! The wrapped STDIO server: spawning it (through the sandbox helper), framing its stdio,
//! and reaping its process tree.
//!
//! A [`Child`] is owned by one session. Its stdout is read by one task that hands each
//! complete line to the session's [`ChildSink`]; writes go through a bounded queue to one
//! writer task, which coalesces them. Nothing here knows about HTTP or sessions.

mod bridge;
pub mod env;
mod framing;
mod process;
mod spawn;
mod stderr;

pub use bridge::{Child, ChildSink, Closed, ExitStatus};
pub use env::{EnvPlan, EnvSource, SecretSet, SessionEnv};
pub use framing::{Frame, LineFramer, push_line};
pub use process::ProcessTable;
pub use spawn::{
    ChildSpec, SandboxStartError, SpawnError, StderrLimits, WorkDir, check_sandbox,
    create_work_root, sweep_stale_work_roots,
};
