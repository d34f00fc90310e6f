//! The wrapped STDIO server: spawning it (through the sandbox helper), framing its stdio,
//! and reaping its process tree.
//!
//! A [`Child`] is owned by one session, which holds it as a [`ChildHandle`]. Its stdout is
//! read by one task that hands each complete line to the session's [`ChildSink`]; writes go
//! through a bounded queue to one writer task, which coalesces them. A server gets the environment `credentials` finished
//! for its session and nothing else. Nothing here knows about HTTP, tokens or sessions.

mod bridge;
mod framing;
mod late;
mod process;
mod spawn;
mod stderr;

pub use bridge::{Child, ChildHandle, ChildSink, Closed, StdinClosed};
pub use framing::{Frame, LineFramer, push_line};
pub use late::LateSink;
pub use process::{ExitStatus, ProcessTable};
pub use spawn::{
    ChildSpec, SandboxStartError, SpawnError, StderrLimits, WorkDir, check_sandbox,
    create_work_root, sweep_stale_work_roots,
};
