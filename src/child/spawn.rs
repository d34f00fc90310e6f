//! Building the helper command for one session's server.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::sandbox::{HELPER_ARG, exec::HelperArgs, exec::helper_args};

/// What to run for each session, fixed at startup.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// The server command as the user gave it (`node`, `./server.py`, …).
    pub command: OsString,
    pub args: Vec<OsString>,
    /// The environment of the server, complete (it inherits nothing).
    pub env: Vec<(OsString, OsString)>,
    /// Working directory of the server; the sidecar's when `None`.
    pub cwd: Option<PathBuf>,
    /// Wait after closing stdin before SIGTERM, and after SIGTERM before SIGKILL.
    pub stdin_close_grace: Duration,
    pub kill_grace: Duration,
    /// Longest stdout line accepted from the server.
    pub max_line_bytes: usize,
    pub stderr: StderrLimits,
    /// The binary to run in helper mode (normally `/proc/self/exe`).
    pub helper_exe: PathBuf,
}

/// Caps on how much of the server's stderr reaches the logs.
#[derive(Debug, Clone, Copy)]
pub struct StderrLimits {
    /// Longer lines are truncated.
    pub max_line_bytes: usize,
    /// Sustained lines per second; bursts up to `burst`.
    pub lines_per_sec: u32,
    pub burst: u32,
}

impl Default for StderrLimits {
    fn default() -> Self {
        StderrLimits {
            max_line_bytes: 4096,
            lines_per_sec: 50,
            burst: 200,
        }
    }
}

/// Why a server could not be started. Messages name the command, never its environment.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("command `{0}` not found in PATH")]
    NotFound(String),
    #[error("`{0}` is not an executable file")]
    NotExecutable(String),
    #[error("cannot start `{command}`: {source}")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

impl ChildSpec {
    /// The command as text, for logs and error messages.
    pub fn display_command(&self) -> String {
        self.command.to_string_lossy().into_owned()
    }

    /// The `PATH` the server will see.
    fn child_path(&self) -> Option<&OsString> {
        self.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v)
    }

    /// Resolves the command like `execvp` would, with the server's own `PATH`, so a missing
    /// or non-executable program is reported precisely before anything is spawned.
    pub fn resolve_program(&self) -> Result<PathBuf, SpawnError> {
        let cmd = Path::new(&self.command);
        let base = self.cwd.as_deref();
        if self.command.as_bytes().contains(&b'/') {
            let path = match base {
                Some(dir) if cmd.is_relative() => dir.join(cmd),
                _ => cmd.to_path_buf(),
            };
            return if is_executable(&path) {
                Ok(path)
            } else if path.exists() {
                Err(SpawnError::NotExecutable(self.display_command()))
            } else {
                Err(SpawnError::NotFound(self.display_command()))
            };
        }
        let search = self
            .child_path()
            .cloned()
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        for dir in std::env::split_paths(&search) {
            let dir = match base {
                Some(b) if dir.is_relative() => b.join(dir),
                _ => dir,
            };
            let candidate = dir.join(cmd);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
        Err(SpawnError::NotFound(self.display_command()))
    }

    /// The helper invocation for one session.
    pub(super) fn command(&self, program: PathBuf) -> Command {
        let mut argv = vec![self.command.clone()];
        argv.extend(self.args.iter().cloned());
        let helper = HelperArgs {
            parent_pid: std::process::id() as i32,
            grace: self.kill_grace,
            program: program.into_os_string(),
            argv,
        };
        let mut cmd = Command::new(&self.helper_exe);
        cmd.arg(HELPER_ARG)
            .args(helper_args(&helper))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str, path: &str) -> ChildSpec {
        ChildSpec {
            command: command.into(),
            args: vec![],
            env: vec![("PATH".into(), path.into())],
            cwd: None,
            stdin_close_grace: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
            max_line_bytes: 1 << 20,
            stderr: StderrLimits::default(),
            helper_exe: "/proc/self/exe".into(),
        }
    }

    #[test]
    fn resolves_with_the_childs_path() {
        assert_eq!(
            spec("sh", "/nonexistent:/bin").resolve_program().unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert!(matches!(
            spec("sh", "/nonexistent").resolve_program(),
            Err(SpawnError::NotFound(_))
        ));
        assert!(matches!(
            spec("definitely-not-a-command-xyz", "/bin:/usr/bin").resolve_program(),
            Err(SpawnError::NotFound(_))
        ));
    }

    #[test]
    fn explicit_paths_are_checked() {
        assert!(spec("/bin/sh", "").resolve_program().is_ok());
        assert!(matches!(
            spec("/etc/passwd", "").resolve_program(),
            Err(SpawnError::NotExecutable(_))
        ));
        assert!(matches!(
            spec("/no/such/file", "").resolve_program(),
            Err(SpawnError::NotFound(_))
        ));
    }
}
