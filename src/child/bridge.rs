//! One running server: its stdin writer, stdout reader and exit watcher.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::framing::{Frame, LineFramer, push_line};
use super::process::{ExitStatus, ProcessTable};
use super::spawn::{ChildSpec, SpawnError};
use super::stderr;
use crate::credentials::SessionEnv;
use crate::mcp::Id;

/// Receives what the server writes. Called from the server's reader task, in order; must
/// not block.
pub trait ChildSink: Send + Sync + 'static {
    /// One complete stdout line (without the newline), not yet validated as JSON.
    fn on_message(&self, line: Bytes);
    /// A stdout line longer than the limit was discarded; `id` is its JSON-RPC id when the
    /// beginning of the line made it certain.
    fn on_oversized(&self, id: Option<Id>, len: usize);
    /// The server can no longer talk to us: its stdout closed or it exited. Called once for
    /// each; the first one ends the session.
    fn on_closed(&self, why: Closed);
}

/// What a session does with its server: write to its stdin, stop it, wait for its exit.
/// [`Child`] is the real one; the session holds it through this trait, so that routing can be
/// driven in-process with a stand-in that records what it was sent.
pub trait ChildHandle: Send + Sync + std::fmt::Debug + 'static {
    /// The process id (for logs and tests).
    fn pid(&self) -> i32;
    /// Queues one message (a complete JSON text without the trailing newline) for stdin,
    /// waiting while the queue is full.
    fn send(&self, message: Bytes) -> BoxFuture<'_, Result<(), StdinClosed>>;
    /// Queues without waiting; for messages the bridge itself generates (cancellations).
    fn try_send(&self, message: Bytes) -> Result<(), StdinClosed>;
    /// Stops the server; idempotent, returns at once.
    fn terminate(&self);
    /// Resolves once the process (its whole tree) has exited.
    fn wait(&self) -> BoxFuture<'_, ExitStatus>;
}

/// How a server's conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// stdout reached EOF (the process may still be running).
    StdoutClosed,
    /// The process (and, through its supervisor, its whole tree) exited.
    Exited(ExitStatus),
}

/// Why a message could not be queued for the server.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server's stdin is closed")]
pub struct StdinClosed;

/// Messages queued for stdin; a full queue makes senders wait (backpressure to clients).
const STDIN_QUEUE: usize = 256;
/// Writes are coalesced up to this many bytes per syscall.
const WRITE_CHUNK: usize = 64 * 1024;

/// A running server, owned by its session. Dropping it does not stop the process: call
/// [`Child::terminate`] (sessions always do when they end).
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    stdin: mpsc::Sender<Bytes>,
    close_stdin: CancellationToken,
    terminating: CancellationToken,
    exit: watch::Receiver<Option<ExitStatus>>,
    spec: Arc<ChildSpec>,
    table: ProcessTable,
}

impl Child {
    /// Starts the server through the helper and wires its stdio to `sink`.
    pub fn spawn(
        spec: &Arc<ChildSpec>,
        table: &ProcessTable,
        sink: Arc<dyn ChildSink>,
        env: &SessionEnv,
    ) -> Result<Child, SpawnError> {
        let program = spec.resolve_program()?;
        let io_err = |source| SpawnError::Io {
            command: spec.display_command(),
            source,
        };
        let work = spec.work_dir()?;
        for (name, value) in env.files() {
            work.write_secret(name, value.expose())
                .map_err(|source| SpawnError::WorkDir {
                    root: work.path().to_owned(),
                    source,
                })?;
        }
        let (mut cmd, helper_input) = spec.command(program, env, &work);
        let (mut std_child, exit_rx) = table.spawn(&mut cmd).map_err(io_err)?;
        let pid = Pid::from_raw(std_child.id() as i32);
        // From here on the process exists: if wiring fails, it must still be stopped.
        let pipes = (|| -> std::io::Result<_> {
            let mut stdin = std_child
                .stdin
                .take()
                .ok_or_else(|| std::io::Error::other("no stdin"))?;
            // The helper's plan and the server's environment come first on its stdin; the
            // helper reads them at once, so this does not wait for long.
            std::io::Write::write_all(&mut stdin, &helper_input)?;
            drop(helper_input);
            let stdout = std_child
                .stdout
                .take()
                .ok_or_else(|| std::io::Error::other("no stdout"))?;
            let stderr = std_child
                .stderr
                .take()
                .ok_or_else(|| std::io::Error::other("no stderr"))?;
            Ok((
                pipe::Sender::from_owned_fd(stdin.into())?,
                pipe::Receiver::from_owned_fd(stdout.into())?,
                pipe::Receiver::from_owned_fd(stderr.into())?,
            ))
        })();
        let (stdin_pipe, stdout_pipe, stderr_pipe) = match pipes {
            Ok(p) => p,
            Err(e) => {
                let _ = kill(pid, Signal::SIGKILL);
                return Err(io_err(e));
            }
        };

        let span = tracing::Span::current();
        let (stdin_tx, stdin_rx) = mpsc::channel(STDIN_QUEUE);
        let close_stdin = CancellationToken::new();
        tokio::spawn(
            write_loop(stdin_pipe, stdin_rx, close_stdin.clone()).instrument(span.clone()),
        );
        let (exit_tx, exit) = watch::channel(None);
        let reader = read_loop(stdout_pipe, sink.clone(), spec.max_line_bytes, exit.clone());
        tokio::spawn(reader.instrument(span.clone()));
        tokio::spawn(
            stderr::log_lines(stderr_pipe, spec.stderr, env.secrets()).instrument(span.clone()),
        );
        tokio::spawn(
            async move {
                // The sender lives in the process table until the reaper delivers.
                let status = exit_rx
                    .await
                    .unwrap_or(ExitStatus::Signal(Signal::SIGKILL as i32));
                // The whole tree is gone: nothing can still write into the work dir.
                drop(work);
                let _ = exit_tx.send(Some(status));
                sink.on_closed(Closed::Exited(status));
            }
            .instrument(span),
        );
        Ok(Child {
            pid,
            stdin: stdin_tx,
            close_stdin,
            terminating: CancellationToken::new(),
            exit,
            spec: spec.clone(),
            table: table.clone(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Queues one message (a complete JSON text without the trailing newline) for stdin.
    pub async fn send(&self, message: Bytes) -> Result<(), StdinClosed> {
        self.stdin.send(message).await.map_err(|_| StdinClosed)
    }

    /// Queues without waiting; for messages the bridge itself generates (cancellations).
    pub fn try_send(&self, message: Bytes) -> Result<(), StdinClosed> {
        self.stdin.try_send(message).map_err(|_| StdinClosed)
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits until the process (its whole tree) has exited.
    pub async fn wait(&self) -> ExitStatus {
        let mut exit = self.exit.clone();
        loop {
            if let Some(status) = *exit.borrow_and_update() {
                return status;
            }
            if exit.changed().await.is_err() {
                return ExitStatus::Signal(Signal::SIGKILL as i32);
            }
        }
    }

    /// Stops the server the way the MCP stdio transport asks: close stdin, wait, SIGTERM
    /// (the supervisor then terminates the whole tree, SIGKILL after the grace), and as a
    /// last resort SIGKILL the supervisor's group and sweep orphans. Idempotent; returns at
    /// once, the sequence runs in the background.
    pub fn terminate(&self) {
        if self.terminating.is_cancelled() {
            return;
        }
        self.terminating.cancel();
        self.close_stdin.cancel();
        let pid = self.pid;
        let spec = self.spec.clone();
        let table = self.table.clone();
        let mut exit = self.exit.clone();
        tokio::spawn(async move {
            let exited = |exit: &mut watch::Receiver<Option<ExitStatus>>, wait: Duration| {
                let mut exit = exit.clone();
                async move {
                    tokio::time::timeout(wait, exit.wait_for(Option::is_some))
                        .await
                        .is_ok()
                }
            };
            if exited(&mut exit, spec.stdin_close_grace).await {
                return;
            }
            let _ = kill(pid, Signal::SIGTERM);
            // The supervisor escalates to SIGKILL itself after the grace.
            if exited(&mut exit, spec.kill_grace + Duration::from_secs(2)).await {
                return;
            }
            tracing::warn!(
                pid = pid.as_raw(),
                "supervisor did not exit; killing its group"
            );
            let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
            let _ = exited(&mut exit, Duration::from_secs(1)).await;
            table.sweep_orphans();
        });
    }

    /// Like [`Child::terminate`], then waits for the exit.
    pub async fn shutdown(&self) -> ExitStatus {
        self.terminate();
        self.wait().await
    }
}

impl ChildHandle for Child {
    fn pid(&self) -> i32 {
        Child::pid(self)
    }

    fn send(&self, message: Bytes) -> BoxFuture<'_, Result<(), StdinClosed>> {
        Box::pin(Child::send(self, message))
    }

    fn try_send(&self, message: Bytes) -> Result<(), StdinClosed> {
        Child::try_send(self, message)
    }

    fn terminate(&self) {
        Child::terminate(self)
    }

    fn wait(&self) -> BoxFuture<'_, ExitStatus> {
        Box::pin(Child::wait(self))
    }
}

async fn write_loop(
    mut pipe: pipe::Sender,
    mut rx: mpsc::Receiver<Bytes>,
    close: CancellationToken,
) {
    let mut buf = Vec::with_capacity(WRITE_CHUNK);
    loop {
        let first = tokio::select! {
            biased;
            _ = close.cancelled() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        buf.clear();
        push_line(&mut buf, &first);
        while buf.len() < WRITE_CHUNK {
            match rx.try_recv() {
                Ok(m) => push_line(&mut buf, &m),
                Err(_) => break,
            }
        }
        let written = tokio::select! {
            biased;
            _ = close.cancelled() => break,
            r = pipe.write_all(&buf) => r,
        };
        if let Err(e) = written {
            tracing::debug!(error = %e, "server stdin closed");
            break;
        }
        if buf.capacity() > 4 * WRITE_CHUNK {
            buf = Vec::with_capacity(WRITE_CHUNK);
        }
    }
    // Dropping the pipe closes the server's stdin.
}

/// After stdout closes, how long to wait for the exit status, so that a server that died is
/// reported as "exited (status)" rather than just "closed its output".
const EXIT_AFTER_EOF_WAIT: Duration = Duration::from_millis(250);

async fn read_loop(
    mut pipe: pipe::Receiver,
    sink: Arc<dyn ChildSink>,
    max_line: usize,
    mut exit: watch::Receiver<Option<ExitStatus>>,
) {
    let mut framer = LineFramer::new(max_line);
    loop {
        match pipe.read_buf(framer.buf_mut()).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the server's stdout failed");
                break;
            }
        }
        while let Some(frame) = framer.next_frame() {
            match frame {
                Frame::Line(line) => sink.on_message(line),
                Frame::Oversized { id, len } => sink.on_oversized(id, len),
                Frame::Discarded { len } => {
                    tracing::warn!(bytes = len, "dropped an oversized line from the server");
                }
            }
        }
    }
    let lost = framer.unterminated();
    if lost > 0 {
        // Not a message: JSON-RPC over stdio ends every message with a newline.
        tracing::warn!(
            bytes = lost,
            "dropped the server's last output line: it ended without a newline"
        );
    }
    // The exit watcher reports `Exited` itself; it wins if it comes within the wait.
    let exited = tokio::time::timeout(EXIT_AFTER_EOF_WAIT, exit.wait_for(Option::is_some)).await;
    if exited.is_err() {
        sink.on_closed(Closed::StdoutClosed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_reads_well() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exit code 3");
        assert_eq!(ExitStatus::Signal(9).to_string(), "killed by SIGKILL");
    }
}
