//! Building the helper command for one session's server: its sandbox plan, its work dir
//! and its environment; and the startup measurement of what the sandbox enforces.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::credentials::SessionEnv;
use crate::sandbox::HELPER_ARG;
use crate::sandbox::command::{Shim, ShimContext, interpreter, resolve_shim};
use crate::sandbox::exec::{HelperArgs, HelperInput, helper_args};
use crate::sandbox::landlock::{ExposedFile, check_not_exposed};
use crate::sandbox::profile::{DEFAULT_SESSION_UIDS, SessionUids};
use crate::sandbox::profile::{OpensProtected, PlanContext, SandboxConfig};
use crate::sandbox::status::{LayerReport, NotEnforced, SandboxStatus, SidecarProtection};
use crate::sandbox::uids::{Exhausted, Need, UidLease, UidPool, closed_to_other_users};

/// The server's executable as it will be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub path: PathBuf,
    /// The version manager's shim found on `PATH`, when `path` is what it stands for.
    pub shim: Option<Shim>,
}

/// What to run for each session, fixed at startup.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// The server command as the user gave it (`node`, `./server.py`, …).
    pub command: OsString,
    pub args: Vec<OsString>,
    /// The `PATH` passed through to every server (it inherits nothing else), which also
    /// resolves the command.
    pub path: Option<OsString>,
    /// The sidecar's files holding injected secrets (`--env-file`), for the exposure check.
    pub secret_files: Vec<(String, PathBuf)>,
    /// Whether servers are given secret values (files or exchanged tokens).
    pub injects_secrets: bool,
    /// The sandbox applied by the helper.
    pub sandbox: Arc<SandboxConfig>,
    /// Parent of the per-session work dirs (each is the server's `HOME` and `TMPDIR`).
    pub work_root: PathBuf,
    /// What the sandbox enforces, once measured at startup ([`check_sandbox`]).
    pub sandbox_status: OnceLock<SandboxStatus>,
    /// The uids sessions' servers run as, one each, when [`check_sandbox`] found that the
    /// sidecar can switch (root) and the profile and `--sandbox-uids` want it.
    pub session_uids: OnceLock<Arc<UidPool>>,
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
    #[error("cannot create the session work dir under {root}: {source}")]
    WorkDir {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the sandbox check of `{command}` failed: {reason}")]
    SandboxCheck { command: String, reason: String },
    #[error(transparent)]
    SessionUid(#[from] Exhausted),
}

/// A session's private directory (`HOME` and `TMPDIR` of its server), removed with
/// everything in it when dropped; the session drops it once the server's tree has exited.
/// It also holds the session's uid lease, if any: the uid goes back to the pool with it.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    owner: Option<(u32, u32)>,
    // Declared last: dropped after the directory is removed.
    lease: Option<UidLease>,
}

impl WorkDir {
    /// Creates `root/<random>` (mode 0700, owned by `owner` when given).
    pub fn create(root: &Path, owner: Option<(u32, u32)>) -> std::io::Result<WorkDir> {
        use std::os::unix::fs::DirBuilderExt;
        let mut bytes = [0u8; 12];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let path = root.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let dir = WorkDir {
            path,
            owner,
            lease: None,
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir.path, Some(uid), Some(gid))?;
        }
        Ok(dir)
    }

    /// Creates a work dir owned by the session's own uid (and the gid of the same number).
    fn create_leased(root: &Path, lease: UidLease) -> std::io::Result<WorkDir> {
        let id = lease.uid();
        let mut dir = WorkDir::create(root, Some((id, id)))?;
        dir.lease = Some(lease);
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a secret the server reads as a file: `name` in the work dir, mode 0600, the
    /// server's own. `name` is a plain file name (checked by the configuration).
    pub fn write_secret(&self, name: &str, value: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        if name.contains('/') || name.starts_with('.') || name.is_empty() {
            return Err(std::io::Error::other("not a plain file name"));
        }
        let path = self.path.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(value)?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// The uid/gid the server runs as, when not the sidecar's.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// Whether the owner is this session's alone.
    pub fn owner_is_leased(&self) -> bool {
        self.lease.is_some()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a session work dir");
        }
    }
}

/// Creates the parent of the work dirs: traversable but not listable by others, so a
/// server running as another uid reaches its own dir and nobody else's. An existing
/// directory is accepted only if it is ours and not writable by others (a planted directory
/// or symlink in a shared temp dir is refused).
pub fn create_work_root(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o711).create(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(root)?;
            if !meta.is_dir()
                || meta.uid() != nix::unistd::geteuid().as_raw()
                || meta.mode() & 0o022 != 0
            {
                return Err(std::io::Error::other(
                    "it exists and is not a directory owned by this user and closed to others",
                ));
            }
        }
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
}

/// Removes the default work roots (`<dir>/mcp-warden-<pid>-<12 hex>`) that sidecars killed
/// without cleaning up left behind: only directories owned by this user whose pid no
/// longer runs. Returns how many were removed.
pub fn sweep_stale_work_roots(dir: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("mcp-warden-"))
            .and_then(|rest| rest.split_once('-'))
            .filter(|(_, tag)| tag.len() == 12 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours
            && !Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::remove_dir_all(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

impl ChildSpec {
    /// The command as text, for logs and error messages.
    pub fn display_command(&self) -> String {
        self.command.to_string_lossy().into_owned()
    }

    /// The `PATH` the server will see.
    fn child_path(&self) -> Option<OsString> {
        self.path.clone()
    }

    /// Resolves the command like `execvp` would, with the server's own `PATH`, so a missing
    /// or non-executable program is reported precisely before anything is spawned; then a
    /// version manager's shim to the interpreter it stands for (see
    /// [`crate::sandbox::command`]).
    pub fn resolve_program(&self) -> Result<Program, SpawnError> {
        let path = self.found_on_path()?;
        let cwd = self
            .cwd
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        let shim = resolve_shim(
            &path,
            ShimContext {
                env: &|name: &str| std::env::var_os(name),
                cwd: &cwd,
            },
        );
        Ok(match shim {
            Some(shim) => Program {
                path: shim.program.clone(),
                shim: Some(shim),
            },
            None => Program { path, shim: None },
        })
    }

    /// The program's path, without resolving shims (what is on disk, or the command as
    /// given when it is not found).
    fn program_or_command(&self) -> PathBuf {
        self.resolve_program()
            .map(|p| p.path)
            .unwrap_or_else(|_| PathBuf::from(&self.command))
    }

    fn found_on_path(&self) -> Result<PathBuf, SpawnError> {
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

    /// A new work dir for one session, with a uid of its own when sessions get one.
    pub fn work_dir(&self) -> Result<WorkDir, SpawnError> {
        let err = |source| SpawnError::WorkDir {
            root: self.work_root.clone(),
            source,
        };
        match self.session_uids.get() {
            Some(pool) => WorkDir::create_leased(&self.work_root, pool.lease()?).map_err(err),
            None => WorkDir::create(&self.work_root, self.sandbox.user).map_err(err),
        }
    }

    /// The helper invocation for one session: the server's argv on the command line, and
    /// the frame to write on its stdin before anything else (the sandbox plan and the
    /// server's environment: session values plus `HOME`/`TMPDIR`). The helper itself starts
    /// with an empty environment.
    pub(super) fn command(
        &self,
        program: Program,
        env: &SessionEnv,
        work: &WorkDir,
    ) -> (Command, Zeroizing<Vec<u8>>) {
        self.command_with(program, env, work, false)
    }

    fn command_with(
        &self,
        program: Program,
        env: &SessionEnv,
        work: &WorkDir,
        report: bool,
    ) -> (Command, Zeroizing<Vec<u8>>) {
        let sidecar_pid = std::process::id() as i32;
        let mut plan = self.sandbox.plan(&PlanContext {
            workdir: work.path(),
            program: &program.path,
            args: &self.args,
            cwd: self.cwd.as_deref(),
            sidecar_pid,
        });
        plan.report = report;
        if let Some(owner) = work.owner() {
            plan.user = Some(owner);
            plan.session_uid = work.owner_is_leased();
        }
        // A resolved shim runs the way its manager's `exec` runs it: argv[0] is the
        // interpreter's path, and its directory comes first on PATH.
        let argv0 = match &program.shim {
            Some(_) => program.path.clone().into_os_string(),
            None => self.command.clone(),
        };
        let mut argv = vec![argv0];
        argv.extend(self.args.iter().cloned());
        let bin_dir = program
            .shim
            .as_ref()
            .and_then(|s| s.bin_dir())
            .map(Path::to_owned);
        let helper = HelperArgs {
            parent_pid: sidecar_pid,
            grace: self.kill_grace,
            program: program.path.into_os_string(),
            argv,
        };
        let mut server_env: Vec<(OsString, OsString)> = env
            .vars()
            .map(|(k, v)| (OsString::from(k), v.to_owned()))
            .collect();
        // The startup check has no session, but its diagnosis needs the server's PATH.
        if report && !server_env.iter().any(|(k, _)| k == "PATH") {
            server_env.extend(self.child_path().map(|p| ("PATH".into(), p)));
        }
        if let Some(dir) = bin_dir {
            match server_env.iter_mut().find(|(k, _)| k == "PATH") {
                Some((_, path)) => {
                    let mut joined = dir.into_os_string();
                    joined.push(":");
                    joined.push(&*path);
                    *path = joined;
                }
                None => server_env.push(("PATH".into(), dir.into_os_string())),
            }
        }
        server_env.push(("HOME".into(), work.path().into()));
        server_env.push(("TMPDIR".into(), work.path().into()));
        let input = HelperInput {
            plan,
            env: server_env,
        }
        .encode();
        let mut cmd = Command::new(&self.helper_exe);
        cmd.arg(HELPER_ARG)
            .args(helper_args(&helper))
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        (cmd, input)
    }

    /// Runs the helper once with every layer of the profile, without starting the server,
    /// and returns what the kernel enforced. Called at startup, before any thread exists
    /// that could hold a lock across the fork of `std::process::Command`.
    pub fn check_sandbox(&self) -> Result<LayerReport, SpawnError> {
        let fail = |reason: String| SpawnError::SandboxCheck {
            command: self.display_command(),
            reason,
        };
        // The server is not executed: a command that is missing now is reported per session
        // (it may be installed later), not at startup.
        let program = self.resolve_program().unwrap_or_else(|_| Program {
            path: PathBuf::from(&self.command),
            shim: None,
        });
        let work = self.work_dir()?;
        let (mut cmd, input) = self.command_with(program, &SessionEnv::default(), &work, true);
        let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that fails before reading closes the pipe: its stderr says why.
            let _ = std::io::Write::write_all(&mut stdin, &input);
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(fail(
                stderr.trim().trim_start_matches("mcp-warden: ").to_owned(),
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("unreadable report: {e}")))
    }

    /// What a session's plan would be built from (a session work dir that does not exist).
    fn check_context<'a>(&'a self, program: &'a Path, workdir: &'a Path) -> PlanContext<'a> {
        PlanContext {
            workdir,
            program,
            args: &self.args,
            cwd: self.cwd.as_deref(),
            sidecar_pid: 0,
        }
    }

    /// Refuses when a sidecar secret or config file (`files`, plus every `--env-file`) lies
    /// under a path the server may read or write (the work root included: it holds every
    /// session's work dir).
    pub fn check_exposure(&self, mut files: Vec<(String, PathBuf)>) -> Result<(), ExposedFile> {
        files.extend(self.secret_files.iter().cloned());
        let program = self.program_or_command();
        let workdir = self.work_root.join("session");
        let (read, write) = self
            .sandbox
            .readable_paths(&self.check_context(&program, &workdir));
        let mut all: Vec<PathBuf> = read.into_iter().chain(write).collect();
        all.push(self.work_root.clone());
        check_not_exposed(&files, &all)
    }

    /// Refuses when the profile, `--sandbox-read/-write`, `--cwd` or the command would let
    /// the server read `/`, `/tmp`, a home directory or the work root as a whole.
    pub fn check_protected(&self) -> Result<(), OpensProtected> {
        let program = self.program_or_command();
        let workdir = self.work_root.join("session");
        self.sandbox
            .check_protected(&self.check_context(&program, &workdir), &self.work_root)
    }
}

/// Why the sidecar refuses to start with its sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxStartError {
    #[error("cannot create the work root {path}")]
    WorkRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Exposed(#[from] ExposedFile),
    #[error(transparent)]
    OpensProtected(#[from] OpensProtected),
    #[error(transparent)]
    Check(#[from] SpawnError),
    #[error(transparent)]
    NotEnforced(#[from] NotEnforced),
    #[error("--sandbox-uids {range}: {reason}")]
    SessionUids { range: String, reason: String },
    #[error("`{command}` cannot run in the sandbox: {reason}")]
    ExecRefused { command: String, reason: String },
}

impl ChildSpec {
    /// What a server of this command must be able to use as a uid of its own: the program
    /// (and its `#!` interpreter), script arguments, `--cwd`, the work root, and the paths
    /// the operator added with `--sandbox-read`/`--sandbox-write`.
    fn paths_for_session_uids(&self) -> Vec<(PathBuf, Need)> {
        let mut paths = Vec::new();
        if let Ok(Program { path: program, .. }) = self.resolve_program() {
            if let Some(interp) = interpreter(&program, self.child_path().as_deref()) {
                paths.push((program.clone(), Need::Read));
                paths.push((interp, Need::Exec));
            }
            paths.push((program, Need::Exec));
        }
        let base = self
            .cwd
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        for arg in &self.args {
            let p = base.join(arg);
            if p.is_file() {
                paths.push((p, Need::Read));
            }
        }
        if let Some(cwd) = &self.cwd {
            paths.push((cwd.clone(), Need::Exec));
        }
        // Each server's HOME is a directory of the work root, which must be reachable.
        paths.push((self.work_root.clone(), Need::Exec));
        paths.extend(
            self.sandbox
                .extra_read
                .iter()
                .map(|p| (p.clone(), Need::Read)),
        );
        paths.extend(
            self.sandbox
                .extra_read_write
                .iter()
                .map(|p| (p.clone(), Need::Write)),
        );
        paths
    }

    /// Decides, at startup, whether sessions get uids of their own (see [`SessionUids`]).
    fn decide_session_uids(&self) -> Result<Option<Arc<UidPool>>, SandboxStartError> {
        let me = nix::unistd::geteuid().as_raw();
        match self.sandbox.session_uids {
            SessionUids::Off => Ok(None),
            SessionUids::Auto => {
                let (first, last) = DEFAULT_SESSION_UIDS;
                if let Err(why) = can_switch_to(first, last) {
                    tracing::info!(
                        uid = me,
                        "servers run as the sidecar's uid, not a uid per session: {why}"
                    );
                    return Ok(None);
                }
                if let Some(closed) = closed_to_other_users(&self.paths_for_session_uids()) {
                    tracing::warn!(
                        "servers run as the sidecar's uid {me} (capabilities dropped), not as a uid per session: {closed}; make it readable by other users, or pass --sandbox-uids off to accept this, or --sandbox-uids FIRST-LAST to refuse to start instead"
                    );
                    return Ok(None);
                }
                Ok(Some(UidPool::new(first, last)))
            }
            SessionUids::Range { first, last } => {
                let refuse = |reason: String| SandboxStartError::SessionUids {
                    range: format!("{first}-{last}"),
                    reason,
                };
                can_switch_to(first, last).map_err(refuse)?;
                if let Some(closed) = closed_to_other_users(&self.paths_for_session_uids()) {
                    return Err(refuse(format!(
                        "{closed}: make it readable by other users, or pass --sandbox-uids off"
                    )));
                }
                Ok(Some(UidPool::new(first, last)))
            }
        }
    }
}

/// The startup sequence of the sandbox: create the work root, refuse if a sidecar secret
/// is readable under the profile, measure what the kernel enforces (a helper run with every
/// layer), refuse if a required layer is missing, and log each layer. Must run before the
/// async runtime starts.
///
/// `secret_files` names the sidecar's own secret and config files (with the flag that set
/// them); every `--env-file` is checked as well.
pub fn check_sandbox(
    spec: &ChildSpec,
    sidecar: SidecarProtection,
    secret_files: Vec<(String, PathBuf)>,
) -> Result<SandboxStatus, SandboxStartError> {
    create_work_root(&spec.work_root).map_err(|source| SandboxStartError::WorkRoot {
        path: spec.work_root.clone(),
        source,
    })?;
    spec.check_exposure(secret_files)?;
    spec.check_protected()?;
    if let Some(pool) = spec.decide_session_uids()? {
        let _ = spec.session_uids.set(pool);
    }
    if let Ok(Program {
        path,
        shim: Some(shim),
    }) = spec.resolve_program()
    {
        tracing::info!(
            command = %spec.display_command(),
            shim = %shim.shim.display(),
            program = %path.display(),
            "the command is a {} shim: running the interpreter it stands for",
            shim.manager
        );
    }
    let report = spec.check_sandbox()?;
    if let Some(reason) = &report.exec_refused {
        return Err(SandboxStartError::ExecRefused {
            command: spec.display_command(),
            reason: reason.clone(),
        });
    }
    if let Some(pool) = spec.session_uids.get() {
        let (first, last) = pool.range();
        if !(first..=last).contains(&report.uid) || report.uid != report.gid {
            return Err(SandboxStartError::SessionUids {
                range: format!("{first}-{last}"),
                reason: format!(
                    "the server ran as {}:{}, not as a uid of the range",
                    report.uid, report.gid
                ),
            });
        }
    }
    let status = SandboxStatus::evaluate(&spec.sandbox, report, sidecar, spec.injects_secrets)?;
    let l = &status.layers;
    tracing::info!(
        sandbox.profile = %status.profile,
        sandbox.seccomp.filters = l.seccomp_filters,
        sandbox.seccomp.x32_guard = l.x32_guard,
        sandbox.seccomp.protect_sidecar = l.protect_sidecar,
        sandbox.landlock = ?l.landlock,
        sandbox.landlock.abi = l.landlock_abi.unwrap_or(0),
        sandbox.no_new_privs = l.no_new_privs,
        sandbox.uid = l.uid,
        sandbox.gid = l.gid,
        sandbox.capabilities_dropped = l.capabilities_dropped,
        sandbox.session_uids = %spec
            .session_uids
            .get()
            .map(|p| format!("{}-{}", p.range().0, p.range().1))
            .unwrap_or_else(|| "off".into()),
        sandbox.signal_isolation = %if l.signal_isolation.is_empty() {
            "none".to_owned()
        } else {
            l.signal_isolation
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        },
        sidecar.non_dumpable = status.sidecar.non_dumpable,
        sidecar.subreaper = status.sidecar.subreaper,
        "sandbox layers in force"
    );
    for d in &status.degraded {
        tracing::warn!(sandbox.profile = %status.profile, layer = %d, "sandbox layer not fully enforced by this kernel");
    }
    if l.uid == 0 && !l.capabilities_dropped {
        tracing::warn!(
            "the MCP server runs as root with capabilities: use --sandbox-user or a profile that drops capabilities"
        );
    }
    let _ = spec.sandbox_status.set(status.clone());
    Ok(status)
}

/// Whether this process may run servers as the uids (and gids) `first..=last`: it must be
/// root with CAP_SETUID and CAP_SETGID, and in a user namespace the range must be mapped.
fn can_switch_to(first: u32, last: u32) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    if me != 0 {
        return Err(format!(
            "a uid per session needs the sidecar to run as root (it runs as {me})"
        ));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SETGID: u64 = 1 << 6;
    const CAP_SETUID: u64 = 1 << 7;
    if cap_eff & (CAP_SETUID | CAP_SETGID) != CAP_SETUID | CAP_SETGID {
        return Err("the sidecar runs as root without CAP_SETUID and CAP_SETGID".into());
    }
    for map in ["uid_map", "gid_map"] {
        let text = std::fs::read_to_string(format!("/proc/self/{map}")).unwrap_or_default();
        let mapped = text.lines().any(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            v.len() == 3 && v[0] <= u64::from(first) && u64::from(last) < v[0] + v[2]
        });
        if !mapped {
            return Err(format!(
                "{first}-{last} is not mapped in this user namespace (/proc/self/{map})"
            ));
        }
    }
    Ok(())
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
            path: Some(OsString::from(path)),
            secret_files: Vec::new(),
            injects_secrets: false,
            sandbox: Arc::new(SandboxConfig::load("default", Default::default()).unwrap()),
            work_root: std::env::temp_dir(),
            sandbox_status: OnceLock::new(),
            session_uids: OnceLock::new(),
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
            spec("sh", "/nonexistent:/bin")
                .resolve_program()
                .unwrap()
                .path,
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
    fn only_our_dead_work_roots_are_swept() {
        let dir = std::env::temp_dir().join(format!("mcpw-sweep-{}", std::process::id()));
        let dead = dir.join("mcp-warden-999999999-0123456789ab");
        let live = dir.join(format!("mcp-warden-{}-0123456789ab", std::process::id()));
        let other = dir.join("mcp-warden-999999999-notours");
        for d in [&dead, &live, &other] {
            std::fs::create_dir_all(d.join("inner")).unwrap();
        }
        assert_eq!(sweep_stale_work_roots(&dir), 1);
        assert!(!dead.exists() && live.exists() && other.exists());
        std::fs::remove_dir_all(&dir).unwrap();
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
