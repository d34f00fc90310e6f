//! Process table: spawns helpers and reaps every child of the sidecar.
//!
//! The sidecar is a child subreaper (set in `main`), so orphans of crashed supervisors are
//! re-parented to it. One reaper task calls `waitpid(-1)` on each SIGCHLD and hands exit
//! statuses to the registered waiters; anything unregistered is an orphan and is reaped
//! (and killed on sweep) so no zombie is left behind. For this to be sound nothing else in
//! the process may wait for children: we do not use `tokio::process`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::process::Command;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpid};
use parking_lot::Mutex;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// Exit status of a server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// Spawns children and delivers their exit statuses.
#[derive(Debug, Clone)]
pub struct ProcessTable {
    waiters: Arc<Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>>,
}

impl ProcessTable {
    /// Installs the SIGCHLD listener and starts the reaper task. Must be called inside the
    /// runtime, before the first spawn.
    pub fn start() -> io::Result<ProcessTable> {
        let table = ProcessTable {
            waiters: Arc::new(Mutex::new(HashMap::new())),
        };
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = table.clone();
        tokio::spawn(async move {
            loop {
                reaper.reap();
                // A timer as well as the signal: a SIGCHLD that raced with registration
                // can never leave a zombie for long.
                tokio::select! {
                    _ = sigchld.recv() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        });
        Ok(table)
    }

    /// Spawns `cmd` and registers it. The lock is held across the spawn so the reaper can
    /// never reap a process `std` is itself waiting for (failed exec) or one whose waiter is
    /// not registered yet.
    ///
    /// Spawning happens on a runtime worker thread, which lives as long as the process: the
    /// helper's parent-death signal is tied to the spawning thread, so it must never be a
    /// short-lived (blocking-pool) thread.
    pub fn spawn(
        &self,
        cmd: &mut Command,
    ) -> io::Result<(std::process::Child, oneshot::Receiver<ExitStatus>)> {
        let mut waiters = self.waiters.lock();
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        waiters.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    fn reap(&self) {
        let mut waiters = self.waiters.lock();
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "waitpid failed");
                    return;
                }
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    let exit = match status {
                        WaitStatus::Exited(_, code) => ExitStatus::Code(code),
                        WaitStatus::Signaled(_, sig, _) => ExitStatus::Signal(sig as i32),
                        _ => continue, // stopped / continued: not an exit
                    };
                    match waiters.remove(&pid.as_raw()) {
                        Some(tx) => {
                            let _ = tx.send(exit);
                        }
                        None => tracing::debug!(pid = pid.as_raw(), %exit, "reaped an orphan"),
                    }
                }
            }
        }
    }

    /// Kills every child of the sidecar that is not a registered helper: orphans left by a
    /// supervisor that was itself killed.
    pub fn sweep_orphans(&self) {
        let registered: Vec<i32> = self.waiters.lock().keys().copied().collect();
        for pid in crate::sandbox::exec::children_of(getpid()) {
            if !registered.contains(&pid.as_raw()) {
                tracing::info!(pid = pid.as_raw(), "killing an orphaned process");
                let _ = kill(pid, Signal::SIGKILL);
                let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            }
        }
    }

    /// Number of live registered children.
    pub fn live(&self) -> usize {
        self.waiters.lock().len()
    }
}
