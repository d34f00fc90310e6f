//! Sandbox profiles: the shipped `sandbox/*.toml` files (or an operator's own), validated and
//! compiled once at startup into a [`SandboxConfig`], then expanded per session into the
//! [`Plan`] the helper applies. Pure: reads files only when asked to load a profile path.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::seccomp::{self, Program, SeccompError};

/// Profiles shipped inside the binary (`--sandbox NAME`).
pub const BUILTIN_PROFILES: &[(&str, &str)] = &[
    ("default", include_str!("../../sandbox/default.toml")),
    ("nonet", include_str!("../../sandbox/nonet.toml")),
    ("strict", include_str!("../../sandbox/strict.toml")),
    ("none", include_str!("../../sandbox/none.toml")),
];

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "unknown sandbox profile {0:?}: use default, nonet, strict, none, or a path to a .toml file"
    )]
    Unknown(String),
    #[error("cannot read sandbox profile {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid sandbox profile {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("sandbox profile {name}: {source}")]
    Seccomp {
        name: String,
        #[source]
        source: SeccompError,
    },
    #[error(
        "sandbox profile {name}: {path:?} in landlock.{list} must be absolute or a placeholder"
    )]
    RelativePath {
        name: String,
        list: &'static str,
        path: String,
    },
}

/// A profile file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[allow(dead_code)] // shown in the README and in `--help`-style listings
    description: String,
    seccomp: SeccompSection,
    landlock: LandlockSection,
    #[serde(default)]
    rlimits: RlimitSection,
    process: ProcessSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeccompSection {
    filters: Vec<String>,
    x32_guard: bool,
    protect_sidecar: bool,
    required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LandlockSection {
    mode: LandlockMode,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    read_write: Vec<String>,
    #[serde(default)]
    scopes: Vec<LandlockScope>,
    #[serde(default)]
    tcp: TcpPolicy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RlimitSection {
    nofile: Option<u64>,
    core: Option<u64>,
    fsize_mb: Option<u64>,
    cpu_s: Option<u64>,
    as_mb: Option<u64>,
    nproc: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessSection {
    drop_capabilities: bool,
    no_new_privs: bool,
    /// Run each session's server as a uid of its own when the sidecar can switch (root).
    #[serde(default = "yes")]
    session_uids: bool,
    /// Whether a layer must keep one session's server from signalling another session's
    /// processes (see [`Isolation`]).
    #[serde(default = "Isolation::best_effort")]
    isolate_sessions: Isolation,
    #[serde(default)]
    namespaces: Vec<Namespace>,
    #[serde(default = "LandlockMode::off")]
    namespaces_mode: LandlockMode,
}

fn yes() -> bool {
    true
}

/// How much keeping sessions apart matters to a profile. Signals are the measure: a server
/// that can signal another session's server or supervisor can end that session. Layers that
/// do it, in the order the helper tries them: a uid per session (a root sidecar), Landlock's
/// signal scope (Linux 6.12), a PID namespace (where user namespaces are allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Not asked for (`none`).
    Off,
    /// Warn, naming the hole and the remedy, where no layer does it.
    BestEffort,
    /// Refuse to start where no layer does it.
    Required,
}

impl Isolation {
    fn best_effort() -> Isolation {
        Isolation::BestEffort
    }
}

/// Which uids sessions' servers run as when the sidecar is root (`--sandbox-uids`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum SessionUids {
    /// One uid per live session from [`DEFAULT_SESSION_UIDS`] when the sidecar runs as root
    /// and the server's files are open to other users; otherwise the sidecar's uid, with a
    /// warning saying why.
    #[default]
    Auto,
    /// The sidecar's uid (or `--sandbox-user`) for every session.
    Off,
    /// One uid per live session from this range, or no start.
    Range { first: u32, last: u32 },
}

/// The default per-session uid range: the gap systemd leaves between the uids of
/// systemd-homed users (60001–60513) and dynamic service users (61184–65519), above the
/// regular users of most systems (≤ 60000) and below 65536, so it also exists in containers
/// whose user namespace maps only 65536 ids.
pub const DEFAULT_SESSION_UIDS: (u32, u32) = (60514, 61183);

impl TryFrom<String> for SessionUids {
    type Error = String;

    fn try_from(s: String) -> Result<SessionUids, String> {
        s.parse()
    }
}

impl std::str::FromStr for SessionUids {
    type Err = String;

    /// `auto`, `off`, or `FIRST-LAST`.
    fn from_str(s: &str) -> Result<SessionUids, String> {
        match s {
            "auto" => return Ok(SessionUids::Auto),
            "off" => return Ok(SessionUids::Off),
            _ => {}
        }
        let bad = || format!("{s:?}: expected auto, off or FIRST-LAST (e.g. 60514-61183)");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u32 = a.trim().parse().map_err(|_| bad())?;
        let last: u32 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || last < first || last >= u32::MAX - 1 {
            return Err(format!(
                "{s:?}: the range must start above 0 and not end before it starts"
            ));
        }
        Ok(SessionUids::Range { first, last })
    }
}

/// A namespace the server gets its own copy of. A user namespace comes first (it is what
/// lets an unprivileged process create the others); the server keeps its uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Namespace {
    User,
    /// Only a loopback interface, down: no network at all, and abstract unix sockets of
    /// the host are out of reach.
    Net,
    Ipc,
    Uts,
}

/// How Landlock is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockMode {
    Off,
    /// Apply what the kernel supports and report it.
    BestEffort,
    /// Refuse to run the server unless the ruleset is fully enforced.
    Required,
}

impl LandlockMode {
    fn off() -> LandlockMode {
        LandlockMode::Off
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockScope {
    Signal,
    AbstractUnixSocket,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcpPolicy {
    #[default]
    Allow,
    Deny,
}

/// A Landlock path as written in a profile: literal, or expanded per session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathTemplate {
    Literal(PathBuf),
    /// The session's work dir.
    Workdir,
    /// The install prefix of the server's executable and of its script arguments.
    CommandDirs,
    /// `--cwd`, when given.
    Cwd,
}

impl PathTemplate {
    fn parse(name: &str, list: &'static str, s: &str) -> Result<PathTemplate, ProfileError> {
        Ok(match s {
            "{workdir}" => PathTemplate::Workdir,
            "{command_dirs}" => PathTemplate::CommandDirs,
            "{cwd}" => PathTemplate::Cwd,
            p if p.starts_with('/') => PathTemplate::Literal(p.into()),
            p => {
                return Err(ProfileError::RelativePath {
                    name: name.to_owned(),
                    list,
                    path: p.to_owned(),
                });
            }
        })
    }
}

/// A resource limit the helper sets (soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rlimit {
    Nofile,
    Core,
    Fsize,
    Cpu,
    As,
    Nproc,
}

/// The seccomp part of a compiled profile.
#[derive(Debug, Clone)]
pub struct SeccompConfig {
    /// Programs of every listed filter file, in order.
    pub programs: Vec<Program>,
    pub x32_guard: bool,
    pub protect_sidecar: bool,
    pub required: bool,
}

/// The Landlock part of a compiled profile.
#[derive(Debug, Clone)]
pub struct LandlockConfig {
    pub mode: LandlockMode,
    pub read: Vec<PathTemplate>,
    pub read_write: Vec<PathTemplate>,
    pub scopes: Vec<LandlockScope>,
    pub tcp: TcpPolicy,
}

/// A validated profile plus the operator's additions, fixed at startup.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The profile's name (built-in) or path.
    pub name: String,
    pub seccomp: SeccompConfig,
    pub landlock: LandlockConfig,
    pub rlimits: Vec<(Rlimit, u64)>,
    pub drop_capabilities: bool,
    pub no_new_privs: bool,
    /// Namespaces to unshare (the mode says whether their absence is fatal).
    pub namespaces: Vec<Namespace>,
    pub namespaces_mode: LandlockMode,
    /// Run the server as this uid/gid (the sidecar must be root).
    pub user: Option<(u32, u32)>,
    /// Per-session uids: what the operator asked for (`Off` when the profile does not use
    /// them or `--sandbox-user` fixes one uid).
    pub session_uids: SessionUids,
    /// `--sandbox-read` and `--sandbox-write`, as given (also in `landlock`).
    pub extra_read: Vec<PathBuf>,
    pub extra_read_write: Vec<PathBuf>,
    pub isolate_sessions: Isolation,
}

/// What the operator adds to a profile on the command line.
#[derive(Debug, Clone)]
pub struct SandboxOverrides {
    pub extra_read: Vec<PathBuf>,
    pub extra_read_write: Vec<PathBuf>,
    pub user: Option<(u32, u32)>,
    pub session_uids: SessionUids,
}

impl Default for SandboxOverrides {
    fn default() -> Self {
        SandboxOverrides {
            extra_read: Vec::new(),
            extra_read_write: Vec::new(),
            user: None,
            session_uids: SessionUids::Auto,
        }
    }
}

/// Why per-session uids cannot be combined as asked.
fn session_uids(
    name: &str,
    profile_wants: bool,
    o: &SandboxOverrides,
) -> Result<SessionUids, ProfileError> {
    let invalid = |message: &str| ProfileError::Invalid {
        name: name.to_owned(),
        message: message.to_owned(),
    };
    match (o.session_uids, o.user, profile_wants) {
        (SessionUids::Range { .. }, Some(_), _) => Err(invalid(
            "--sandbox-uids and --sandbox-user both choose the server's uid: give one",
        )),
        (SessionUids::Range { .. }, None, false) => Err(invalid(
            "the profile runs servers with the sidecar's uid (process.session_uids = false): --sandbox-uids does not apply",
        )),
        (SessionUids::Range { first, last }, None, true) => Ok(SessionUids::Range { first, last }),
        (SessionUids::Auto, None, true) => Ok(SessionUids::Auto),
        _ => Ok(SessionUids::Off),
    }
}

impl SandboxConfig {
    /// Loads `--sandbox NAME|PATH`: a built-in name, or a path to a profile file (its
    /// seccomp filter paths are relative to it).
    pub fn load(spec: &str, overrides: SandboxOverrides) -> Result<SandboxConfig, ProfileError> {
        if let Some((name, text)) = BUILTIN_PROFILES.iter().find(|(n, _)| *n == spec) {
            return SandboxConfig::from_text(name, text, None, overrides);
        }
        if !spec.contains('/') && !spec.ends_with(".toml") {
            return Err(ProfileError::Unknown(spec.to_owned()));
        }
        let path = Path::new(spec);
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_owned(),
            source,
        })?;
        SandboxConfig::from_text(spec, &text, path.parent(), overrides)
    }

    /// Validates and compiles one profile's text. `dir` resolves relative filter paths
    /// (`None` for built-ins, which may only name built-in filters).
    pub fn from_text(
        name: &str,
        text: &str,
        dir: Option<&Path>,
        overrides: SandboxOverrides,
    ) -> Result<SandboxConfig, ProfileError> {
        let invalid = |message: String| ProfileError::Invalid {
            name: name.to_owned(),
            message,
        };
        let file: ProfileFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let seccomp_err = |source| ProfileError::Seccomp {
            name: name.to_owned(),
            source,
        };
        let arch = seccomp::native_arch();
        let mut programs = Vec::new();
        for filter in &file.seccomp.filters {
            let text = if filter.ends_with(".json") {
                let dir =
                    dir.ok_or_else(|| invalid(format!("filter {filter:?} must be built-in")))?;
                let path = dir.join(filter);
                std::fs::read_to_string(&path)
                    .map_err(|source| ProfileError::Read { path, source })?
            } else {
                seccomp::builtin(filter).map_err(seccomp_err)?.to_owned()
            };
            let arch = arch.as_ref().map_err(|e| invalid(e.to_string()))?;
            programs.extend(seccomp::compile(&text, *arch).map_err(seccomp_err)?);
        }
        let s = &file.seccomp;
        if (s.x32_guard || s.protect_sidecar) && arch.is_err() {
            return Err(invalid(
                "seccomp is not supported on this architecture".into(),
            ));
        }
        let templates = |list: &'static str, v: &[String]| {
            v.iter()
                .map(|p| PathTemplate::parse(name, list, p))
                .collect::<Result<Vec<_>, _>>()
        };
        let session_uids = session_uids(name, file.process.session_uids, &overrides)?;
        let l = &file.landlock;
        let mut read = templates("read", &l.read)?;
        let mut read_write = templates("read_write", &l.read_write)?;
        let extra_read: Vec<PathBuf> = overrides.extra_read.into_iter().map(absolute).collect();
        let extra_read_write: Vec<PathBuf> = overrides
            .extra_read_write
            .into_iter()
            .map(absolute)
            .collect();
        if l.mode != LandlockMode::Off {
            read.extend(extra_read.iter().cloned().map(PathTemplate::Literal));
            read_write.extend(extra_read_write.iter().cloned().map(PathTemplate::Literal));
        }
        let r = &file.rlimits;
        let mb = |v: Option<u64>| v.map(|m| m.saturating_mul(1 << 20));
        let rlimits = [
            (Rlimit::Nofile, r.nofile),
            (Rlimit::Core, r.core),
            (Rlimit::Fsize, mb(r.fsize_mb)),
            (Rlimit::Cpu, r.cpu_s),
            (Rlimit::As, mb(r.as_mb)),
            (Rlimit::Nproc, r.nproc),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        if r.nofile == Some(0) {
            return Err(invalid("rlimits.nofile must leave room for stdio".into()));
        }
        Ok(SandboxConfig {
            name: name.to_owned(),
            seccomp: SeccompConfig {
                programs,
                x32_guard: s.x32_guard,
                protect_sidecar: s.protect_sidecar,
                required: s.required,
            },
            landlock: LandlockConfig {
                mode: l.mode,
                read,
                read_write,
                scopes: l.scopes.clone(),
                tcp: l.tcp,
            },
            rlimits,
            drop_capabilities: file.process.drop_capabilities,
            no_new_privs: file.process.no_new_privs,
            namespaces: if file.process.namespaces_mode == LandlockMode::Off {
                Vec::new()
            } else {
                file.process.namespaces.clone()
            },
            namespaces_mode: file.process.namespaces_mode,
            session_uids,
            extra_read,
            extra_read_write,
            isolate_sessions: file.process.isolate_sessions,
            user: overrides.user,
        })
    }

    /// Whether any confinement layer is configured at all.
    pub fn is_none(&self) -> bool {
        self.seccomp.programs.is_empty()
            && !self.seccomp.x32_guard
            && !self.seccomp.protect_sidecar
            && self.landlock.mode == LandlockMode::Off
    }

    /// Paths the server may read (and those it may write), expanded for one session.
    pub fn readable_paths(&self, ctx: &PlanContext<'_>) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let expand = |list: &[PathTemplate]| {
            let mut out: Vec<PathBuf> = Vec::new();
            for t in list {
                match t {
                    PathTemplate::Literal(p) => out.extend(glob(p)),
                    PathTemplate::Workdir => out.push(ctx.workdir.to_owned()),
                    PathTemplate::Cwd => out.extend(ctx.cwd.map(Path::to_owned)),
                    PathTemplate::CommandDirs => out.extend(command_dirs(
                        ctx.program,
                        ctx.args,
                        ctx.cwd,
                        &protected_dirs(ctx.workdir.parent()),
                    )),
                }
            }
            out.sort();
            out.dedup();
            out
        };
        (
            expand(&self.landlock.read),
            expand(&self.landlock.read_write),
        )
    }

    /// The helper's instructions for one session.
    pub fn plan(&self, ctx: &PlanContext<'_>) -> Plan {
        let landlock = (self.landlock.mode != LandlockMode::Off).then(|| {
            let (read, read_write) = self.readable_paths(ctx);
            LandlockPlan {
                required: self.landlock.mode == LandlockMode::Required,
                read,
                read_write,
                scopes: self.landlock.scopes.clone(),
                deny_tcp: self.landlock.tcp == TcpPolicy::Deny,
            }
        });
        Plan {
            profile: self.name.clone(),
            sidecar_pid: ctx.sidecar_pid,
            seccomp: self.seccomp.programs.clone(),
            x32_guard: self.seccomp.x32_guard,
            protect_sidecar: self.seccomp.protect_sidecar,
            seccomp_required: self.seccomp.required,
            landlock,
            rlimits: self.rlimits.clone(),
            user: self.user,
            drop_capabilities: self.drop_capabilities,
            no_new_privs: self.no_new_privs,
            namespaces: self.namespaces.clone(),
            namespaces_required: self.namespaces_mode == LandlockMode::Required,
            session_uid: false,
            isolate_sessions: self.isolate_sessions,
            report: false,
        }
    }
}

/// `p` itself, or, when its last component holds a `*`, the existing entries of its parent
/// that match (one `*`, any run of characters).
fn glob(p: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
        return vec![p.to_owned()];
    };
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![p.to_owned()];
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            (n.len() >= prefix.len() + suffix.len() && n.starts_with(prefix) && n.ends_with(suffix))
                .then(|| parent.join(n))
        })
        .collect();
    out.sort();
    out
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// What a plan depends on for one session.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    pub workdir: &'a Path,
    /// The resolved server executable.
    pub program: &'a Path,
    pub args: &'a [std::ffi::OsString],
    pub cwd: Option<&'a Path>,
    pub sidecar_pid: i32,
}

/// Directories no sandbox may open as a whole, each with what it holds: the root of the file
/// system, shared temporary and runtime directories (other users' and sessions' files,
/// sockets, mounted secrets), home directories (keys, tokens, shell history), and the work
/// root (every session's work dir). Landlock rules cannot carve a hole below an allowed
/// directory, so a readable path above one of these exposes all of it.
pub fn protected_dirs(work_root: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    let mut out: Vec<(PathBuf, &'static str)> = vec![
        ("/".into(), "the whole file system"),
        ("/tmp".into(), "shared temporary files"),
        ("/var/tmp".into(), "shared temporary files"),
        ("/dev/shm".into(), "shared memory files"),
        ("/run".into(), "runtime files (sockets, mounted secrets)"),
        (
            "/var/run".into(),
            "runtime files (sockets, mounted secrets)",
        ),
        ("/home".into(), "home directories"),
    ];
    out.extend(home_dirs().into_iter().map(|h| (h, A_HOME)));
    if let Some(t) = std::env::var_os("TMPDIR").filter(|t| !t.is_empty() && t != "/") {
        out.push((PathBuf::from(t), "shared temporary files"));
    }
    if let Some(root) = work_root {
        out.push((root.to_owned(), "the sessions' work dirs"));
    }
    out
}

/// What [`protected_dirs`] says of a home directory.
const A_HOME: &str = "a home directory";

/// `/root`, every directory in `/home`, and the sidecar's `$HOME`.
fn home_dirs() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/root")];
    if let Ok(dir) = std::fs::read_dir("/home") {
        out.extend(
            dir.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty() && h != "/") {
        out.push(PathBuf::from(h));
    }
    out
}

/// Whether granting `readable` would grant `protected` (it is `protected` or above it),
/// comparing resolved paths.
fn covers(readable: &Path, protected: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    protected.starts_with(readable) || canon(protected).starts_with(canon(readable))
}

/// Files marking the root of a package or project: a script inside one may read all of it
/// (its modules, its data), and nothing above it.
const PACKAGE_MARKERS: &[&str] = &[
    "package.json",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "deno.json",
    "deno.jsonc",
];

/// What a command adds to the read list.
///
/// - The executable (as found on `PATH`, and the file it links to: a venv's python and the
///   interpreter it points at): its install prefix, the parent of its `bin` dir or else its
///   own dir. Not when that prefix is or holds a [`protected_dirs`] entry, nor when it is a
///   directory right inside a home directory (`~/.local`, `~/.cargo`: other tools' data and
///   credentials live there): then only the file itself. A symlink inside a home directory
///   adds nothing of its own (the file it points to does), unless it is a venv's.
/// - A script argument (an existing file, relative ones against `cwd` or the sidecar's
///   directory): the outermost `node_modules` above it (hoisted dependencies), else the
///   nearest package root above it (see [`PACKAGE_MARKERS`]) short of a protected directory,
///   else its own directory; and when that is protected (a script right in `/tmp` or a home
///   directory), only the script itself.
pub fn command_dirs(
    program: &Path,
    args: &[std::ffi::OsString],
    cwd: Option<&Path>,
    protected: &[(PathBuf, &'static str)],
) -> Vec<PathBuf> {
    let homes: Vec<&PathBuf> = protected
        .iter()
        .filter(|(_, what)| *what == A_HOME)
        .map(|(p, _)| p)
        .collect();
    let open = |d: &Path| !protected.iter().any(|(p, _)| covers(d, p));
    let in_home = |d: &Path| homes.iter().any(|h| d.starts_with(h));
    let mut out = Vec::new();
    let mut add_executable = |exe: &Path, as_found: bool| {
        let Some(dir) = exe.parent() else {
            return;
        };
        let prefix = match dir.file_name() {
            Some(n) if n == "bin" || n == "sbin" => dir.parent().unwrap_or(dir),
            _ => dir,
        };
        let venv = prefix.join("pyvenv.cfg").is_file();
        let link = as_found && exe.is_symlink();
        if link && in_home(prefix) && !venv {
            return;
        }
        let right_inside_home = homes.iter().any(|h| prefix.parent() == Some(h.as_path()));
        if open(prefix) && (venv || !right_inside_home) {
            out.push(prefix.to_owned());
        } else {
            out.push(exe.to_owned());
        }
    };
    add_executable(program, true);
    if let Ok(real) = std::fs::canonicalize(program)
        && real != program
    {
        add_executable(&real, false);
    }
    let base = cwd
        .map(Path::to_owned)
        .or_else(|| std::env::current_dir().ok());
    for arg in args {
        let path = match &base {
            Some(b) => b.join(arg),
            None => PathBuf::from(arg),
        };
        if !path.is_absolute() || !path.is_file() {
            continue;
        }
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        let outermost_modules = path
            .ancestors()
            .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
            .last()
            .filter(|m| open(m));
        if let Some(m) = outermost_modules {
            out.push(m.to_owned());
            continue;
        }
        let package = path
            .ancestors()
            .skip(1)
            .take_while(|d| open(d))
            .find(|d| PACKAGE_MARKERS.iter().any(|m| d.join(m).is_file()));
        match (package, path.parent()) {
            (Some(root), _) => out.push(root.to_owned()),
            (None, Some(dir)) if open(dir) => out.push(dir.to_owned()),
            _ => out.push(path),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A path the profile or the operator grants that would expose a [`protected_dirs`] entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin} {} would let the server read {what} ({}): {remedy}", path.display(), protected.display())]
pub struct OpensProtected {
    /// Where the path comes from (`--sandbox-read`, `--cwd`, …).
    pub origin: &'static str,
    pub path: PathBuf,
    pub protected: PathBuf,
    pub what: &'static str,
    pub remedy: &'static str,
}

impl SandboxConfig {
    /// Refuses a profile plus operator additions that would let the server read or write a
    /// [`protected_dirs`] entry (with `work_root` among them) as a whole.
    pub fn check_protected(
        &self,
        ctx: &PlanContext<'_>,
        work_root: &Path,
    ) -> Result<(), OpensProtected> {
        const NARROWER: &str = "give a directory below it that holds only what the server needs";
        let mut granted: Vec<(&'static str, &'static str, PathBuf)> = Vec::new();
        for t in self.landlock.read.iter().chain(&self.landlock.read_write) {
            match t {
                PathTemplate::Literal(p) => {
                    let (origin, remedy) = if self.extra_read.contains(p) {
                        ("--sandbox-read", NARROWER)
                    } else if self.extra_read_write.contains(p) {
                        ("--sandbox-write", NARROWER)
                    } else {
                        (
                            "the profile's landlock path",
                            "narrow the profile's read and read_write lists",
                        )
                    };
                    granted.extend(glob(p).into_iter().map(|p| (origin, remedy, p)));
                }
                PathTemplate::Cwd => granted.extend(ctx.cwd.map(|c| {
                    (
                        "--cwd",
                        "run the server from its project directory instead",
                        c.to_owned(),
                    )
                })),
                PathTemplate::CommandDirs => granted.extend(
                    command_dirs(
                        ctx.program,
                        ctx.args,
                        ctx.cwd,
                        &protected_dirs(Some(work_root)),
                    )
                    .into_iter()
                    .map(|p| ("the command", "install the server elsewhere", p)),
                ),
                PathTemplate::Workdir => {}
            }
        }
        if self.landlock.mode == LandlockMode::Off {
            return Ok(());
        }
        let protected = protected_dirs(Some(work_root));
        for (origin, remedy, path) in granted {
            if let Some((p, what)) = protected.iter().find(|(p, _)| covers(&path, p)) {
                return Err(OpensProtected {
                    origin,
                    path,
                    protected: p.clone(),
                    what,
                    remedy,
                });
            }
        }
        Ok(())
    }
}

/// Everything the helper applies for one session. Crosses the process boundary as JSON in
/// the helper's environment (never on argv, never anything secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub profile: String,
    pub sidecar_pid: i32,
    pub seccomp: Vec<Program>,
    pub x32_guard: bool,
    pub protect_sidecar: bool,
    pub seccomp_required: bool,
    pub landlock: Option<LandlockPlan>,
    pub rlimits: Vec<(Rlimit, u64)>,
    pub user: Option<(u32, u32)>,
    pub drop_capabilities: bool,
    pub no_new_privs: bool,
    pub namespaces: Vec<Namespace>,
    pub namespaces_required: bool,
    /// `user` is this session's alone (no other process runs as it).
    pub session_uid: bool,
    /// Whether the helper should find a layer that keeps sessions apart.
    pub isolate_sessions: Isolation,
    /// Apply every layer, then print the resulting status instead of running the server
    /// (the sidecar's startup check).
    pub report: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockPlan {
    pub required: bool,
    pub read: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    pub scopes: Vec<LandlockScope>,
    pub deny_tcp: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> SandboxConfig {
        SandboxConfig::load(name, SandboxOverrides::default()).unwrap()
    }

    #[test]
    fn every_shipped_profile_loads() {
        for (name, _) in BUILTIN_PROFILES {
            let c = load(name);
            assert_eq!(c.name, *name);
        }
        // The same files, loaded by path the way an operator's copy would be.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox");
        for (name, _) in BUILTIN_PROFILES {
            let p = dir.join(format!("{name}.toml"));
            let c = SandboxConfig::load(p.to_str().unwrap(), SandboxOverrides::default()).unwrap();
            assert_eq!(c.seccomp.programs, load(name).seccomp.programs);
        }
    }

    #[test]
    fn profiles_differ_where_they_should() {
        let (d, n, s, none) = (load("default"), load("nonet"), load("strict"), load("none"));
        assert_eq!(d.landlock.mode, LandlockMode::BestEffort);
        assert_eq!(d.landlock.tcp, TcpPolicy::Allow);
        assert_eq!(n.landlock.tcp, TcpPolicy::Deny);
        assert_ne!(d.seccomp.programs, n.seccomp.programs);
        assert_eq!(s.landlock.mode, LandlockMode::Required);
        let proc_ = PathTemplate::Literal("/proc".into());
        assert!(d.landlock.read.contains(&proc_));
        assert!(!s.landlock.read.contains(&proc_));
        assert!(none.is_none());
        assert!(!d.is_none());
        assert!(d.rlimits.contains(&(Rlimit::Core, 0)));
        assert!(
            !d.rlimits
                .iter()
                .any(|(r, _)| *r == Rlimit::As || *r == Rlimit::Nproc)
        );
    }

    #[test]
    fn unknown_names_and_bad_files_are_refused() {
        assert!(matches!(
            SandboxConfig::load("paranoid", SandboxOverrides::default()),
            Err(ProfileError::Unknown(_))
        ));
        assert!(matches!(
            SandboxConfig::load("/no/such.toml", SandboxOverrides::default()),
            Err(ProfileError::Read { .. })
        ));
        let text = BUILTIN_PROFILES[0]
            .1
            .replace("mode = \"best-effort\"", "mode = \"maybe\"");
        assert!(matches!(
            SandboxConfig::from_text("x", &text, None, SandboxOverrides::default()),
            Err(ProfileError::Invalid { .. })
        ));
        let text = BUILTIN_PROFILES[0].1.replace("\"/usr\",", "\"usr\",");
        assert!(matches!(
            SandboxConfig::from_text("x", &text, None, SandboxOverrides::default()),
            Err(ProfileError::RelativePath { .. })
        ));
        let text = BUILTIN_PROFILES[0]
            .1
            .replace("[\"default\"]", "[\"bogus\"]");
        assert!(matches!(
            SandboxConfig::from_text("x", &text, None, SandboxOverrides::default()),
            Err(ProfileError::Seccomp { .. })
        ));
    }

    #[test]
    fn a_star_matches_by_prefix_and_suffix() {
        let dir = std::env::temp_dir().join(format!("mcpw-glob-{}", std::process::id()));
        for n in ["python3", "python3.11", "perl", "python3.conf.bak"] {
            std::fs::create_dir_all(dir.join(n)).unwrap();
        }
        let names = |pattern: &str| -> Vec<String> {
            glob(&dir.join(pattern))
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names("python3*"),
            ["python3", "python3.11", "python3.conf.bak"]
        );
        assert_eq!(names("python3*.bak"), ["python3.conf.bak"]);
        assert_eq!(names("perl"), ["perl"]);
        assert!(glob(Path::new("/no/such/dir/x*")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_profile_does_not_open_all_of_etc() {
        let c = load("default");
        let ctx = PlanContext {
            workdir: Path::new("/w"),
            program: Path::new("/usr/bin/env"),
            args: &[],
            cwd: None,
            sidecar_pid: 1,
        };
        let (read, _) = c.readable_paths(&ctx);
        assert!(!read.contains(&PathBuf::from("/etc")));
        assert!(
            !read
                .iter()
                .any(|p| p.starts_with("/etc/shadow") || p.starts_with("/etc/ssh"))
        );
        assert!(read.contains(&PathBuf::from("/etc/ld.so.cache")));
    }

    #[test]
    fn a_profile_file_can_add_its_own_allow_list() {
        let dir = std::env::temp_dir().join(format!("mcpw-prof-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let allow = r#"{"allow": {"mismatch_action": {"errno": 1}, "match_action": "allow",
            "filter": [{"syscall": "read"}, {"syscall": "write"}, {"syscall": "exit_group"}]}}"#;
        std::fs::write(dir.join("allow-server.json"), allow).unwrap();
        let text = BUILTIN_PROFILES
            .iter()
            .find(|(n, _)| *n == "strict")
            .unwrap()
            .1
            .replace(
                "filters = [\"nonet\"]",
                "filters = [\"nonet\", \"allow-server.json\"]",
            );
        let path = dir.join("mine.toml");
        std::fs::write(&path, text).unwrap();
        let mine =
            SandboxConfig::load(path.to_str().unwrap(), SandboxOverrides::default()).unwrap();
        assert_eq!(
            mine.seccomp.programs.len(),
            load("strict").seccomp.programs.len() + 1
        );
        // A built-in profile cannot reach files by relative path.
        let builtin = BUILTIN_PROFILES[0]
            .1
            .replace("[\"default\"]", "[\"default\", \"allow-server.json\"]");
        assert!(
            SandboxConfig::from_text("x", &builtin, None, SandboxOverrides::default()).is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plan_expands_placeholders_and_overrides() {
        let c = SandboxConfig::load(
            "default",
            SandboxOverrides {
                extra_read: vec!["/data".into()],
                extra_read_write: vec!["/scratch".into()],
                user: Some((1000, 1000)),
                ..Default::default()
            },
        )
        .unwrap();
        let ctx = PlanContext {
            workdir: Path::new("/run/w/abc"),
            program: Path::new("/bin/sh"),
            args: &[],
            cwd: Some(Path::new("/srv/app")),
            sidecar_pid: 7,
        };
        let plan = c.plan(&ctx);
        let l = plan.landlock.as_ref().unwrap();
        assert!(l.read_write.contains(&PathBuf::from("/run/w/abc")));
        assert!(l.read_write.contains(&PathBuf::from("/scratch")));
        assert!(l.read.contains(&PathBuf::from("/data")));
        assert!(l.read.contains(&PathBuf::from("/srv/app")));
        assert!(!l.read.contains(&PathBuf::from("/")));
        assert!(!l.read.contains(&PathBuf::from("/tmp")));
        assert_eq!(plan.user, Some((1000, 1000)));
        assert_eq!(plan.sidecar_pid, 7);
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    }

    #[test]
    fn session_uids_parse_and_combine_with_the_profile() {
        assert_eq!("auto".parse(), Ok(SessionUids::Auto));
        assert_eq!("off".parse(), Ok(SessionUids::Off));
        assert_eq!(
            "70000-70999".parse(),
            Ok(SessionUids::Range {
                first: 70000,
                last: 70999
            })
        );
        for bad in ["0-10", "10-5", "x", "5", "1-x"] {
            assert!(bad.parse::<SessionUids>().is_err(), "{bad}");
        }
        let with = |uids: SessionUids, user: Option<(u32, u32)>| SandboxOverrides {
            session_uids: uids,
            user,
            ..Default::default()
        };
        let range = SessionUids::Range {
            first: 70000,
            last: 70999,
        };
        let load = |name: &str, o| SandboxConfig::load(name, o);
        assert_eq!(
            load("default", with(range, None)).unwrap().session_uids,
            range
        );
        assert_eq!(
            load("default", with(SessionUids::Auto, None))
                .unwrap()
                .session_uids,
            SessionUids::Auto
        );
        // A fixed user, or a profile without them, means none; asking for both is an error.
        assert_eq!(
            load("default", with(SessionUids::Auto, Some((1000, 1000))))
                .unwrap()
                .session_uids,
            SessionUids::Off
        );
        assert_eq!(
            load("none", with(SessionUids::Auto, None))
                .unwrap()
                .session_uids,
            SessionUids::Off
        );
        assert!(load("default", with(range, Some((1000, 1000)))).is_err());
        assert!(load("none", with(range, None)).is_err());
        // The shipped profiles say how much keeping sessions apart matters.
        assert_eq!(
            load("strict", with(SessionUids::Auto, None))
                .unwrap()
                .isolate_sessions,
            Isolation::Required
        );
        assert_eq!(
            load("none", with(SessionUids::Auto, None))
                .unwrap()
                .isolate_sessions,
            Isolation::Off
        );
    }

    #[test]
    fn command_dirs_cover_interpreter_prefix_and_script_packages() {
        let tmp = std::env::temp_dir().join(format!("mcpw-cd-{}", std::process::id()));
        let script = tmp.join("app/node_modules/pkg/node_modules/dep/dist/index.js");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(&script, "").unwrap();
        let plain = tmp.join("tools/server.py");
        std::fs::create_dir_all(plain.parent().unwrap()).unwrap();
        std::fs::write(&plain, "").unwrap();
        let protected = protected_dirs(None);
        let dirs = command_dirs(
            Path::new("/usr/bin/env"),
            &[
                "-y".into(),
                script.clone().into_os_string(),
                "server.py".into(),
            ],
            Some(&tmp.join("tools")),
            &protected,
        );
        let canon = std::fs::canonicalize(&tmp).unwrap();
        assert!(dirs.contains(&PathBuf::from("/usr")), "{dirs:?}");
        assert!(dirs.contains(&canon.join("app/node_modules")), "{dirs:?}");
        assert!(dirs.contains(&canon.join("tools")), "{dirs:?}");
        // `/bin/sh`'s prefix would be `/`: only the file (and, where /bin links to
        // /usr/bin, the prefix of what it resolves to).
        let sh = command_dirs(Path::new("/bin/sh"), &[], None, &protected);
        assert!(sh.contains(&PathBuf::from("/bin/sh")), "{sh:?}");
        assert!(!sh.contains(&PathBuf::from("/")), "{sh:?}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn command_dirs_never_open_a_home_tmp_or_the_root() {
        let tmp = std::env::temp_dir().join(format!("mcpw-cdh-{}", std::process::id()));
        let home = tmp.join("home/alice");
        let file = |p: &Path| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
            std::fs::canonicalize(p).unwrap()
        };
        let loose = file(&home.join("server.js"));
        let entry = file(&home.join("proj/src/server.js"));
        file(&home.join("proj/package.json"));
        let nested = file(&home.join("proj/src/tool/run.py"));
        let in_tmp = file(&tmp.join("x.py"));
        let local_bin = file(&home.join(".local/bin/uv"));
        let uv_python = file(&home.join(".local/share/uv/python/cpython-3.12/bin/python3.12"));
        let link = home.join(".local/bin/python3.12");
        std::os::unix::fs::symlink(&uv_python, &link).unwrap();
        let venv_python = file(&home.join(".venv/bin/python"));
        file(&home.join(".venv/pyvenv.cfg"));
        let nvm_node = file(&home.join(".nvm/versions/node/v20.11.0/bin/node"));
        let home = std::fs::canonicalize(&home).unwrap();
        let protected: Vec<(PathBuf, &'static str)> = vec![
            (PathBuf::from("/"), "the whole file system"),
            (
                std::fs::canonicalize(&tmp).unwrap(),
                "shared temporary files",
            ),
            (home.clone(), A_HOME),
        ];
        let dirs = |program: &Path, args: &[&Path]| {
            let args: Vec<std::ffi::OsString> = args.iter().map(|a| a.into()).collect();
            let mut d = command_dirs(program, &args, None, &protected);
            d.sort();
            d
        };
        let node = Path::new("/usr/bin/node");
        // A script right in the home directory or in /tmp: only the script.
        assert_eq!(
            dirs(node, &[&loose]),
            [loose.clone(), PathBuf::from("/usr")]
        );
        assert_eq!(
            dirs(node, &[&in_tmp]),
            [in_tmp.clone(), PathBuf::from("/usr")]
        );
        // A script in a package: the package root, however deep the script.
        assert!(dirs(node, &[&entry]).contains(&home.join("proj")));
        assert!(dirs(node, &[&nested]).contains(&home.join("proj")));
        // ~/.local/bin/uv would open ~/.local (other tools' data): only the binary.
        assert_eq!(dirs(&local_bin, &[]), std::slice::from_ref(&local_bin));
        // uv's python through its ~/.local/bin link: the interpreter's own prefix only.
        assert_eq!(
            dirs(&link, &[]),
            [home.join(".local/share/uv/python/cpython-3.12")]
        );
        // A venv right in the home directory is still the venv.
        assert_eq!(dirs(&venv_python, &[]), [home.join(".venv")]);
        // nvm's node: its version's prefix, not ~/.nvm or the home.
        assert_eq!(
            dirs(&nvm_node, &[]),
            [home.join(".nvm/versions/node/v20.11.0")]
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn granting_a_protected_directory_is_refused_with_its_origin() {
        let work_root = Path::new("/srv/warden/work");
        let ctx = |cwd: Option<&'static Path>| PlanContext {
            workdir: Path::new("/srv/warden/work/session"),
            program: Path::new("/usr/bin/node"),
            args: &[],
            cwd,
            sidecar_pid: 1,
        };
        let with = |read: &[&str], write: &[&str]| {
            SandboxConfig::load(
                "default",
                SandboxOverrides {
                    extra_read: read.iter().map(PathBuf::from).collect(),
                    extra_read_write: write.iter().map(PathBuf::from).collect(),
                    ..Default::default()
                },
            )
            .unwrap()
        };
        assert!(
            with(&[], &[])
                .check_protected(&ctx(None), work_root)
                .is_ok()
        );
        let e = with(&["/tmp"], &[])
            .check_protected(&ctx(None), work_root)
            .unwrap_err();
        assert_eq!(
            (e.origin, e.protected.as_path()),
            ("--sandbox-read", Path::new("/tmp"))
        );
        let e = with(&[], &["/srv/warden"])
            .check_protected(&ctx(None), work_root)
            .unwrap_err();
        assert_eq!(e.origin, "--sandbox-write");
        assert_eq!(e.what, "the sessions' work dirs");
        let e = with(&[], &[])
            .check_protected(&ctx(Some(Path::new("/root"))), work_root)
            .unwrap_err();
        assert_eq!((e.origin, e.what), ("--cwd", A_HOME));
        assert!(e.to_string().contains("project directory"), "{e}");
        // `none` grants nothing, so nothing is refused.
        let none = SandboxConfig::load("none", Default::default()).unwrap();
        assert!(
            none.check_protected(&ctx(Some(Path::new("/root"))), work_root)
                .is_ok()
        );
    }
}
