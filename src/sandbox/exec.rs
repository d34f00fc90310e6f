//! The `__sandbox-exec` helper: a per-session supervisor and the only `unsafe` in the crate.
//!
//! ```text
//! sidecar ──spawn──▶ helper (this file, single-threaded, empty environment)
//!                      reads the plan and the server's environment from stdin
//!                      non-dumpable · setsid · child-subreaper · watches its parent
//!                      build BPF programs and the Landlock ruleset
//!                      fork ─▶ server branch: rlimits → uid/gid drop → namespaces →
//!                              capability drop → parent-death signal → Landlock →
//!                              no_new_privs → seccomp → exec(server) with exactly the
//!                              environment it was given
//!                      └─ supervisor: reaps, and on SIGTERM or when the server exits
//!                         terminates every descendant (SIGTERM, SIGKILL after a grace)
//! ```
//!
//! Why a supervisor instead of exec'ing directly: as a child subreaper it inherits every
//! process the server leaves behind, including double-forked daemons that escaped the
//! process group, so "kill the session's whole tree" is exact per session. It exits with the
//! server's status (re-raising the server's fatal signal), so the sidecar sees the real
//! cause. Its stdin/stdout are redirected to `/dev/null` after the fork, so the server's
//! pipes reach EOF exactly when the server's tree closes them.
#![allow(unsafe_code)]

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use ::landlock::{LandlockStatus, RulesetCreated};
use nix::errno::Errno;
use nix::libc;
use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{
    ForkResult, Gid, Pid, Uid, dup2_stdin, dup2_stdout, execve, fork, getegid, geteuid, getgid,
    getpgid, getpid, getppid, getuid, setgroups, setresgid, setresuid, setsid,
};
use seccompiler::BpfProgram;

use super::landlock::{self, Enforcement};
use super::profile::{Isolation, LandlockScope, Namespace, Plan, Rlimit};
use super::seccomp::{self, Program, Protected};
use super::status::{LayerReport, SignalIsolation};

/// Exit code when the helper itself cannot do its job (bad arguments, fork failure).
const EXIT_HELPER_FAILED: i32 = 125;
/// Exit code when the server could not be executed (mirrors the shell's convention).
const EXIT_EXEC_FAILED: i32 = 127;
/// How often an idle supervisor checks that the sidecar is still its parent.
const PARENT_POLL: Duration = Duration::from_millis(250);
/// Exit code when a sandbox layer the profile requires could not be applied.
pub const EXIT_SANDBOX_FAILED: i32 = 126;

/// Arguments of the helper, as the sidecar writes them (see [`helper_args`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperArgs {
    /// The sidecar's pid: if it is already gone when we start, we exit.
    pub parent_pid: i32,
    /// Time between SIGTERM and SIGKILL for the server's tree.
    pub grace: Duration,
    /// Absolute path of the server executable, then its argv (argv[0] first).
    pub program: OsString,
    pub argv: Vec<OsString>,
}

/// The helper's command line (after the helper sub-command itself).
pub fn helper_args(args: &HelperArgs) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec![
        "--parent-pid".into(),
        args.parent_pid.to_string().into(),
        "--grace-ms".into(),
        args.grace.as_millis().to_string().into(),
        "--program".into(),
        args.program.clone(),
        "--".into(),
    ];
    out.extend(args.argv.iter().cloned());
    out
}

/// Parses what [`helper_args`] wrote.
pub fn parse_helper_args(mut it: impl Iterator<Item = OsString>) -> Result<HelperArgs, String> {
    let mut parent_pid = None;
    let mut grace = Duration::from_secs(5);
    let mut program = None;
    loop {
        let arg = it.next().ok_or("missing `--` before the server command")?;
        let value = |it: &mut dyn Iterator<Item = OsString>| {
            it.next()
                .and_then(|v| v.into_string().ok())
                .ok_or_else(|| format!("{arg:?} needs a value"))
        };
        match arg.to_str() {
            Some("--") => break,
            Some("--parent-pid") => {
                parent_pid = Some(value(&mut it)?.parse::<i32>().map_err(|e| e.to_string())?)
            }
            Some("--grace-ms") => {
                grace = Duration::from_millis(value(&mut it)?.parse().map_err(|e| format!("{e}"))?)
            }
            Some("--program") => program = it.next(),
            _ => return Err(format!("unknown helper argument {arg:?}")),
        }
    }
    let argv: Vec<OsString> = it.collect();
    if argv.is_empty() {
        return Err("no server command".into());
    }
    Ok(HelperArgs {
        parent_pid: parent_pid.ok_or("missing --parent-pid")?,
        grace,
        program: program.ok_or("missing --program")?,
        argv,
    })
}

/// What the sidecar sends the helper on its stdin before anything else: the sandbox plan
/// and the server's environment. Neither travels in the helper's own environment (which is
/// empty): the dynamic loader reads a process's environment before any of its code runs,
/// so an `LD_PRELOAD` meant for the server would run code in the unsandboxed helper, with
/// the sidecar's user and capabilities. Nor on argv, which every process can read.
///
/// Frame: `MCPW`, then the plan as JSON and each `NAME=VALUE`, every part preceded by its
/// length (u32, little-endian); the number of variables comes before them. The helper
/// reads exactly the frame; everything after it on stdin is the server's.
#[derive(Clone, PartialEq, Eq)]
pub struct HelperInput {
    pub plan: Plan,
    /// The server's complete environment.
    pub env: Vec<(OsString, OsString)>,
}

impl std::fmt::Debug for HelperInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: names only.
        f.debug_struct("HelperInput")
            .field("plan", &self.plan)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

const FRAME_MAGIC: &[u8; 4] = b"MCPW";
/// Bounds the helper accepts (a damaged or hostile frame must not make it allocate
/// without limit).
const MAX_PLAN_BYTES: u32 = 16 << 20;
const MAX_VARS: u32 = 4096;
const MAX_VAR_BYTES: u32 = 1 << 20;

impl HelperInput {
    /// The frame's bytes (zeroed when dropped: they hold the server's secrets).
    pub fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let plan = serde_json::to_vec(&self.plan).unwrap_or_default();
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(plan.len() + 4096));
        out.extend_from_slice(FRAME_MAGIC);
        out.extend_from_slice(&(plan.len() as u32).to_le_bytes());
        out.extend_from_slice(&plan);
        out.extend_from_slice(&(self.env.len() as u32).to_le_bytes());
        for (k, v) in &self.env {
            let len = k.len() + 1 + v.len();
            out.extend_from_slice(&(len as u32).to_le_bytes());
            out.extend_from_slice(k.as_encoded_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_encoded_bytes());
        }
        out
    }

    /// Reads one frame from `read` (exact reads: nothing after the frame is consumed).
    pub fn decode(
        mut read: impl FnMut(&mut [u8]) -> Result<(), String>,
    ) -> Result<HelperInput, String> {
        let plan = HelperInput::decode_plan(&mut read)?;
        let env = HelperInput::decode_env(&mut read)?;
        Ok(HelperInput { plan, env })
    }

    /// The frame's first part: the plan (nothing secret).
    fn decode_plan(read: &mut impl FnMut(&mut [u8]) -> Result<(), String>) -> Result<Plan, String> {
        let mut magic = [0u8; 4];
        read(&mut magic)?;
        if &magic != FRAME_MAGIC {
            return Err("not a helper frame".into());
        }
        let mut len = [0u8; 4];
        read(&mut len)?;
        let len = u32::from_le_bytes(len);
        if len > MAX_PLAN_BYTES {
            return Err(format!("plan too large ({len} bytes)"));
        }
        let mut plan = vec![0u8; len as usize];
        read(&mut plan)?;
        serde_json::from_slice(&plan).map_err(|e| format!("bad plan: {e}"))
    }

    /// The frame's second part: the server's environment.
    fn decode_env(
        read: &mut impl FnMut(&mut [u8]) -> Result<(), String>,
    ) -> Result<Vec<(OsString, OsString)>, String> {
        let mut count = [0u8; 4];
        read(&mut count)?;
        let count = u32::from_le_bytes(count);
        if count > MAX_VARS {
            return Err(format!("too many variables ({count})"));
        }
        let mut env = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let mut len = [0u8; 4];
            read(&mut len)?;
            let len = u32::from_le_bytes(len);
            if len > MAX_VAR_BYTES {
                return Err(format!("variable too large ({len} bytes)"));
            }
            let mut kv = vec![0u8; len as usize];
            read(&mut kv)?;
            let eq = kv
                .iter()
                .position(|&b| b == b'=')
                .filter(|&i| i > 0)
                .ok_or("a variable without a name")?;
            let value = kv.split_off(eq + 1);
            kv.pop();
            if kv.contains(&0) || value.contains(&0) {
                return Err("a variable holds a NUL byte".into());
            }
            env.push((OsString::from_vec(kv), OsString::from_vec(value)));
        }
        Ok(env)
    }
}

/// Fills `buf` from stdin with unbuffered reads (std's stdin buffer would swallow the
/// server's first messages).
fn read_stdin_exact(buf: &mut [u8]) -> Result<(), String> {
    let stdin = std::io::stdin();
    let mut done = 0;
    while done < buf.len() {
        match nix::unistd::read(&stdin, &mut buf[done..]) {
            Ok(0) => return Err("stdin closed before the helper frame ended".into()),
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("reading the helper frame: {e}")),
        }
    }
    Ok(())
}

/// Entry point of the helper mode. Never returns.
pub fn main(args: impl Iterator<Item = OsString>) -> ! {
    let args = match parse_helper_args(args) {
        Ok(a) => a,
        Err(e) => fail(&format!("bad helper arguments: {e}")),
    };
    let mut read = read_stdin_exact;
    let plan = match HelperInput::decode_plan(&mut read) {
        Ok(plan) => plan,
        Err(e) => fail(&format!("no sandbox plan: {e}")),
    };
    // Keeping sessions apart: a uid of its own (chosen by the sidecar) or Landlock's signal
    // scope, where the kernel has it, do it for the server; otherwise a PID namespace, in
    // which no pid outside the session can be named, where the kernel allows one. The
    // supervisor enters it (a user namespace first when it is not root) so that the server
    // is the namespace's first process: everything in it dies with the server. This comes
    // before the server's environment is read and the supervisor turns non-dumpable: a
    // non-dumpable process cannot write its own uid map.
    let landlock_signal = plan
        .landlock
        .as_ref()
        .is_some_and(|l| l.scopes.contains(&LandlockScope::Signal))
        && landlock_abi() >= 6;
    let pid_namespace = plan.isolate_sessions != Isolation::Off
        && !plan.session_uid
        && !landlock_signal
        && enter_pid_namespace().is_ok();
    // The supervisor holds the session's environment (injected credentials): a same-user
    // server must not read it through /proc/<pid>/mem or ptrace.
    if let Err(e) = prctl::set_dumpable(false) {
        fail(&format!("cannot make the supervisor non-dumpable: {e}"));
    }
    let env = match HelperInput::decode_env(&mut read) {
        Ok(env) => env,
        Err(e) => fail(&format!("no server environment: {e}")),
    };
    // A new session: the server tree gets its own process group and no controlling terminal.
    if let Err(e) = setsid() {
        fail(&format!("setsid failed: {e}"));
    }
    if let Err(e) = prctl::set_child_subreaper(true) {
        fail(&format!("cannot become a child subreaper: {e}"));
    }
    // No parent-death signal here: it fires when the *thread* that spawned us exits, not the
    // sidecar, so a session started from a short-lived thread would die with it. The
    // supervisor watches its parent instead (see `supervise`). The sidecar may already be
    // gone.
    if getppid().as_raw() != args.parent_pid {
        std::process::exit(EXIT_HELPER_FAILED);
    }

    let mut handled = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        handled.add(s);
    }
    let mut old_mask = SigSet::empty();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled), Some(&mut old_mask)) {
        fail(&format!("sigprocmask failed: {e}"));
    }

    // Everything the server branch needs is prepared before fork: after it, only the
    // system calls that apply the layers, then exec.
    let program = cstring(args.program.clone());
    let argv: Vec<CString> = args.argv.iter().cloned().map(cstring).collect();
    // The server's PATH, to find a `#!/usr/bin/env` interpreter when saying why exec failed.
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    // Exactly the environment the sidecar sent for the server; the helper's own is empty.
    let envp: Vec<CString> = env
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            cstring(OsString::from_vec(kv))
        })
        .collect();
    let prepared = match prepare(&plan, args.parent_pid, pid_namespace) {
        Ok(p) => p,
        Err(e) => fail(&format!("sandbox: {e}")),
    };

    // SAFETY: this process is single-threaded (the helper runs before any thread is
    // created; see `main.rs`), so the child of `fork` may do anything the parent could.
    match unsafe { fork() } {
        Err(e) => fail(&format!("fork failed: {e}")),
        Ok(ForkResult::Child) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
            let mut report = match apply(&plan, prepared) {
                Ok(report) => report,
                Err(e) => {
                    eprintln!("mcp-warden: sandbox profile {}: {e}", plan.profile);
                    // SAFETY: `_exit` skips atexit handlers and stdio flushing of the
                    // parent's copy.
                    unsafe { libc::_exit(EXIT_SANDBOX_FAILED) }
                }
            };
            if plan.report {
                // Whether the command would run, now that every layer is in force.
                report.exec_refused =
                    exec_refusal(std::path::Path::new(&args.program), path_var.as_deref());
                let mut line = serde_json::to_vec(&report).unwrap_or_default();
                line.push(b'\n');
                // The report is the helper's answer to the sidecar, on its stdout pipe.
                let _ = std::io::Write::write_all(&mut std::io::stdout(), &line);
                // SAFETY: as above.
                unsafe { libc::_exit(0) }
            }
            close_above_stderr();
            let err = match execve(&program, &argv, &envp) {
                Err(e) => e,
                Ok(never) => match never {},
            };
            let why = exec_refusal(std::path::Path::new(&args.program), path_var.as_deref())
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            eprintln!(
                "mcp-warden: cannot execute {}: {}{why}",
                args.program.to_string_lossy(),
                err.desc()
            );
            // SAFETY: as above.
            unsafe { libc::_exit(EXIT_EXEC_FAILED) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(prepared);
            // The supervisor has no use for the server's environment (secrets among it).
            for var in envp {
                zeroize::Zeroize::zeroize(&mut var.into_bytes());
            }
            detach_stdio();
            supervise(child, args.grace, &handled, args.parent_pid)
        }
    }
}

/// What is built before fork: BPF programs (the pid filter names this supervisor) and the
/// Landlock ruleset (path fds opened here).
struct Prepared {
    filters: Vec<BpfProgram>,
    /// The pid filter, and its stricter form for a server no kernel layer keeps from the
    /// sidecar's threads (chosen in the server branch, once Landlock's answer is known).
    protect: Option<(BpfProgram, Vec<BpfProgram>)>,
    landlock: Option<Result<RulesetCreated, String>>,
    last_cap: u32,
    supervisor: i32,
    /// The server will be the first process of a new PID namespace.
    pid_namespace: bool,
}

fn prepare(plan: &Plan, sidecar: i32, pid_namespace: bool) -> Result<Prepared, String> {
    let mut filters: Vec<BpfProgram> = Vec::new();
    let arch = seccomp::native_arch();
    if plan.x32_guard && cfg!(target_arch = "x86_64") {
        filters.push(seccomp::x32_guard().to_bpf());
    }
    filters.extend(plan.seccomp.iter().map(Program::to_bpf));
    let mut protect = None;
    if plan.protect_sidecar {
        let protected = Protected {
            sidecar,
            sidecar_group: getpgid(Some(Pid::from_raw(sidecar)))
                .map(Pid::as_raw)
                .unwrap_or(0),
            supervisor: getpid().as_raw(),
            sidecar_threads: Vec::new(),
            descriptor_owners: false,
        };
        let arch = arch.map_err(|e| e.to_string())?;
        let bpf = |p: Result<Program, seccomp::SeccompError>| {
            p.map(|p| p.to_bpf()).map_err(|e| e.to_string())
        };
        let base = bpf(seccomp::protect_pids(&protected, arch))?;
        // Where nothing else keeps the server away: the sidecar's threads take signals too
        // (kill(2) accepts a thread id), so those running now are named and tkill, which
        // takes any thread id, answers ENOSYS; and descriptor ownership, which has the
        // kernel signal the owner, is refused for the protected processes.
        let guarded = Protected {
            sidecar_threads: threads_of(sidecar),
            descriptor_owners: true,
            ..protected
        };
        let guard = vec![
            bpf(seccomp::protect_pids(&guarded, arch))?,
            bpf(seccomp::tkill_enosys(arch))?,
        ];
        protect = Some((base, guard));
    }
    let landlock = plan
        .landlock
        .as_ref()
        .map(|l| landlock::build_ruleset(l).map_err(|e| e.to_string()));
    if let Some(Err(e)) = &landlock
        && plan.landlock.as_ref().is_some_and(|l| l.required)
    {
        return Err(e.clone());
    }
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    Ok(Prepared {
        filters,
        protect,
        landlock,
        last_cap,
        supervisor: getpid().as_raw(),
        pid_namespace,
    })
}

/// Why the server's command cannot run inside the sandbox, if it cannot: the command or the
/// interpreter of its `#!` line refused, by Landlock (allow it with `--sandbox-read`) or by
/// its file permissions for the server's uid; the message names the path and the flag.
/// Called in the server branch, under every layer.
fn exec_refusal(program: &std::path::Path, path_var: Option<&std::ffi::OsStr>) -> Option<String> {
    use std::path::Path;
    let refused = |path: &Path| {
        matches!(
            std::fs::File::open(path).map_err(|e| e.raw_os_error()),
            Err(Some(libc::EACCES | libc::EPERM))
        )
    };
    let explain = |path: &Path, role: String| {
        if nix::unistd::access(path, nix::unistd::AccessFlags::R_OK).is_err() {
            return format!(
                "{} ({role}) is not readable by the server's uid {} (file permissions): make it readable by other users, or pass --sandbox-uids off",
                path.display(),
                getuid()
            );
        }
        // The install prefix when the file is in a `bin` directory, else its directory.
        let dir = path.parent().unwrap_or(path);
        let allow = match dir.file_name() {
            Some(n) if n == "bin" || n == "sbin" => dir.parent().filter(|p| *p != Path::new("/")),
            _ => None,
        }
        .unwrap_or(dir);
        format!(
            "the sandbox refuses {} ({role}): allow it with --sandbox-read {}",
            path.display(),
            allow.display()
        )
    };
    if refused(program) {
        return Some(explain(program, "the command".into()));
    }
    let interp = super::command::interpreter(program, path_var)?;
    refused(&interp).then(|| explain(&interp, format!("the interpreter of {}", program.display())))
}

/// Thread ids of `pid` other than its main one (bounded: the filter must stay small).
fn threads_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&t| t != pid)
        .take(256)
        .collect()
}

/// Landlock ABI version of the running kernel; 0 when Landlock is missing or a container
/// runtime's seccomp profile refuses its system calls.
fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer and size 0, this flag only asks for the version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(v).unwrap_or(0).max(0)
}

/// Moves the supervisor into a new PID namespace for its next child: with only
/// CLONE_NEWPID as root, behind a new user namespace (mapping its own uid and gid) otherwise.
fn enter_pid_namespace() -> Result<(), String> {
    let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
    if uid == 0 {
        return unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare: {e}"));
    }
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID)
        .map_err(|e| format!("unshare: {e}"))?;
    // Once in the new user namespace there is no way back: without the maps its uid would
    // be the overflow uid, so a failure here is fatal.
    if let Err(e) = write_id_maps(uid, gid) {
        fail(&format!(
            "cannot map the supervisor's ids in its user namespace: {e}"
        ));
    }
    Ok(())
}

/// Applies the layers to this (forked, single-threaded) process in the order that keeps
/// each one possible: rlimits → uid/gid drop → namespaces → capability drop → parent-death
/// signal → Landlock → no_new_privs → seccomp. Returns what is in force.
fn apply(plan: &Plan, prepared: Prepared) -> Result<LayerReport, String> {
    for &(resource, value) in &plan.rlimits {
        set_rlimit(resource, value)?;
    }
    let mut capabilities_dropped = false;
    if let Some((uid, gid)) = plan.user {
        if !geteuid().is_root() {
            return Err("a uid/gid change needs the sidecar to run as root".into());
        }
        if plan.drop_capabilities {
            // Emptying the bounding set needs CAP_SETPCAP, which the uid change takes away.
            drop_bounding_set(prepared.last_cap)
                .map_err(|e| format!("dropping capabilities: {e}"))?;
        }
        setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
        setresgid(g, g, g).map_err(|e| format!("setresgid({gid}): {e}"))?;
        setresuid(u, u, u).map_err(|e| format!("setresuid({uid}): {e}"))?;
    }
    let namespaces = match unshare_namespaces(&plan.namespaces) {
        Ok(()) => plan.namespaces.clone(),
        Err(NamespaceError::Refused(e)) if plan.namespaces_required => {
            return Err(format!("namespaces: {e}"));
        }
        Err(NamespaceError::Refused(_)) => Vec::new(),
        Err(NamespaceError::Unmapped(e)) => return Err(format!("namespaces: {e}")),
    };
    // Whatever the sidecar holds (root's sets, ambient capabilities it was started with, or
    // everything a user namespace grants inside it) is not for the server.
    if plan.drop_capabilities {
        drop_capabilities(prepared.last_cap).map_err(|e| format!("dropping capabilities: {e}"))?;
        capabilities_dropped = true;
    }
    // Die with the supervisor. Set after any credential change (a user namespace is one),
    // which clears it.
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("parent-death signal: {e}"))?;
    // In its own PID namespace the server cannot see the supervisor: its parent shows as 0.
    let parent = if prepared.pid_namespace {
        0
    } else {
        prepared.supervisor
    };
    if getppid().as_raw() != parent {
        return Err("the supervisor is gone".into());
    }

    let mut landlock_state = Enforcement::Off;
    let mut landlock_abi = None;
    if let Some(result) = prepared.landlock {
        let required = plan.landlock.as_ref().is_some_and(|l| l.required);
        match result.and_then(|r| r.restrict_self().map_err(|e| e.to_string())) {
            Ok(status) => {
                landlock_state = status.ruleset.into();
                if let LandlockStatus::Available {
                    effective_abi,
                    kernel_abi,
                } = status.landlock
                {
                    landlock_abi = Some(kernel_abi.unwrap_or(effective_abi as i32));
                }
            }
            Err(e) if required => return Err(format!("Landlock: {e}")),
            Err(_) => landlock_state = Enforcement::NotEnforced,
        }
        if required && landlock_state != Enforcement::FullyEnforced {
            return Err(format!(
                "Landlock is required but {landlock_state:?} (ABI {})",
                landlock_abi.unwrap_or(0)
            ));
        }
    }
    if plan.no_new_privs {
        prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    }
    // What keeps this server from signalling other sessions (and the sidecar's threads).
    let mut signal_isolation = Vec::new();
    if plan.session_uid && plan.user.is_some() {
        signal_isolation.push(SignalIsolation::SessionUid);
    }
    let scoped = plan
        .landlock
        .as_ref()
        .is_some_and(|l| l.scopes.contains(&LandlockScope::Signal));
    if scoped
        && landlock_abi.unwrap_or(0) >= 6
        && matches!(
            landlock_state,
            Enforcement::FullyEnforced | Enforcement::PartiallyEnforced
        )
    {
        signal_isolation.push(SignalIsolation::LandlockScope);
    }
    if prepared.pid_namespace {
        signal_isolation.push(SignalIsolation::PidNamespace);
    }
    let sidecar_threads_guarded = prepared.protect.is_some() && signal_isolation.is_empty();
    let mut filters = prepared.filters;
    if let Some((base, guard)) = prepared.protect {
        if signal_isolation.is_empty() {
            filters.extend(guard);
        } else {
            filters.push(base);
        }
    }
    let mut installed = 0;
    for filter in &filters {
        match seccompiler::apply_filter(filter) {
            Ok(()) => installed += 1,
            Err(e) if plan.seccomp_required => return Err(format!("seccomp: {e}")),
            Err(_) => {}
        }
    }
    Ok(LayerReport {
        seccomp_filters: installed,
        x32_guard: plan.x32_guard && cfg!(target_arch = "x86_64"),
        protect_sidecar: plan.protect_sidecar,
        landlock: landlock_state,
        landlock_abi,
        no_new_privs: prctl::get_no_new_privs().unwrap_or(false),
        uid: getuid().as_raw(),
        gid: getgid().as_raw(),
        capabilities_dropped,
        cap_eff: cap_eff(),
        rlimits: plan.rlimits.clone(),
        namespaces,
        signal_isolation,
        sidecar_threads_guarded,
        exec_refused: None,
    })
}

/// Why optional namespaces are missing.
enum NamespaceError {
    /// The kernel refused them: the process is unchanged (best-effort profiles go on).
    Refused(String),
    /// The user namespace exists but its ids could not be mapped: the process would run as
    /// the overflow uid, so it must not go on.
    Unmapped(String),
}

/// Gives this process its own copies of `kinds`, a user namespace first (so no privilege is
/// needed), mapping its uid and gid to themselves.
fn unshare_namespaces(kinds: &[Namespace]) -> Result<(), NamespaceError> {
    if kinds.is_empty() {
        return Ok(());
    }
    let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
    let mut flags = CloneFlags::empty();
    for k in kinds {
        flags |= match k {
            Namespace::User => CloneFlags::CLONE_NEWUSER,
            Namespace::Net => CloneFlags::CLONE_NEWNET,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
        };
    }
    unshare(flags).map_err(|e| NamespaceError::Refused(format!("unshare: {e}")))?;
    if flags.contains(CloneFlags::CLONE_NEWUSER) {
        // The supervisor's non-dumpable flag is inherited (and a uid change sets it): its
        // /proc/self files then belong to root, and the maps cannot be written. The server
        // is exec'd next, which makes it dumpable anyway.
        prctl::set_dumpable(true)
            .map_err(|e| NamespaceError::Unmapped(format!("dumpable: {e}")))?;
        write_id_maps(uid, gid).map_err(NamespaceError::Unmapped)?;
    }
    Ok(())
}

/// Maps `uid` and `gid` to themselves in a user namespace this process just created.
fn write_id_maps(uid: u32, gid: u32) -> Result<(), String> {
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("{file}: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {uid} 1"))?;
    write("gid_map", format!("{gid} {gid} 1"))
}

fn set_rlimit(resource: Rlimit, value: u64) -> Result<(), String> {
    let r = match resource {
        Rlimit::Nofile => Resource::RLIMIT_NOFILE,
        Rlimit::Core => Resource::RLIMIT_CORE,
        Rlimit::Fsize => Resource::RLIMIT_FSIZE,
        Rlimit::Cpu => Resource::RLIMIT_CPU,
        Rlimit::As => Resource::RLIMIT_AS,
        Rlimit::Nproc => Resource::RLIMIT_NPROC,
    };
    // Never raise a limit: an unprivileged process cannot, and a lower one is stricter.
    let (_, hard) = getrlimit(r).map_err(|e| format!("getrlimit({resource:?}): {e}"))?;
    let value = value.min(hard);
    setrlimit(r, value, value).map_err(|e| format!("setrlimit({resource:?}, {value}): {e}"))
}

/// `CapEff` of this process, as the kernel reports it.
fn cap_eff() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_default()
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the bounding set, so exec cannot grant capabilities back to uid 0.
fn drop_bounding_set(last_cap: u32) -> Result<(), Errno> {
    for cap in 0..=last_cap {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        match (rc, Errno::last()) {
            (0, _) | (_, Errno::EINVAL) => {}
            // Without CAP_SETPCAP the bounding set stays; no_new_privs already keeps exec
            // from granting file capabilities.
            (_, Errno::EPERM) => break,
            (_, e) => return Err(e),
        }
    }
    Ok(())
}

/// Empties the bounding set (so exec cannot grant capabilities back to uid 0), the ambient
/// set, and the effective/permitted/inheritable sets.
fn drop_capabilities(last_cap: u32) -> Result<(), Errno> {
    drop_bounding_set(last_cap)?;
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(Errno::last());
    }
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and, for version 3, two data structs; both live on
    // this stack frame for the duration of the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Marks every descriptor above stderr close-on-exec. A launcher may leave descriptors open
/// (a shell's `exec 7>file`, a process manager's sockets, a test harness's pipes); without
/// this every helper, and through it every server, would inherit them. Called first thing
/// in `main`, before any thread exists.
pub fn close_inherited_on_exec() -> std::io::Result<()> {
    // SAFETY: close_range takes two descriptor numbers and flags, no pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: one fcntl per open descriptor.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number; a number that is not (or no longer) open
        // (the directory listing's own) fails with EBADF, which is fine.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Closes every descriptor above stderr, right before exec: whatever the helper holds (it
/// opened nothing the server needs) must not reach the server.
fn close_above_stderr() {
    // SAFETY: close_range takes two descriptor numbers and flags, no pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    if rc == 0 {
        return;
    }
    // Kernels before 5.9: close every number up to the descriptor limit (lowered by the
    // profile's rlimits before this point).
    let max = getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft.min(1 << 20) as i32)
        .unwrap_or(1024);
    for fd in 3..max {
        // SAFETY: closing a descriptor number this process does not use any more.
        unsafe { libc::close(fd) };
    }
}

fn cstring(s: OsString) -> CString {
    CString::new(s.into_vec()).unwrap_or_else(|_| fail("argument contains a NUL byte"))
}

fn fail(msg: &str) -> ! {
    eprintln!("mcp-warden: {msg}");
    std::process::exit(EXIT_HELPER_FAILED)
}

/// The supervisor keeps stderr (for its own diagnostics) but must not hold the server's
/// stdin/stdout open, or the sidecar would never see EOF when the server dies.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = dup2_stdin(&null);
        let _ = dup2_stdout(&null);
    }
}

/// Reaps the tree until it is empty, then exits with the server's status.
fn supervise(server: Pid, grace: Duration, handled: &SigSet, sidecar: i32) -> ! {
    let mut server_status: Option<WaitStatus> = None;
    let mut terminating: Option<Instant> = None;
    let mut killed = false;
    let mut server_left_tree = false;
    loop {
        // Reap everything that has exited.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) => {
                    if status.pid() == Some(server) {
                        server_status = Some(status);
                        if terminating.is_none() {
                            // The server is gone: nothing of its tree may outlive it. (If
                            // nothing is left, the next waitpid says ECHILD and we exit at
                            // once; otherwise the tree is signalled below.)
                            terminating = Some(Instant::now());
                            server_left_tree = true;
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    // ECHILD: no descendant left.
                    match server_status {
                        Some(status) => exit_like(status),
                        None => std::process::exit(EXIT_HELPER_FAILED),
                    }
                }
            }
        }
        if std::mem::take(&mut server_left_tree) {
            signal_tree(server, Signal::SIGTERM);
        }
        let timeout = match terminating {
            None => Some(PARENT_POLL),
            Some(since) if !killed => {
                let left = grace.saturating_sub(since.elapsed());
                if left.is_zero() {
                    killed = true;
                    signal_tree(server, Signal::SIGKILL);
                    Some(Duration::from_millis(50))
                } else {
                    Some(left)
                }
            }
            Some(_) => {
                // Orphans keep arriving as their parents die: keep killing until none is left.
                signal_tree(server, Signal::SIGKILL);
                Some(Duration::from_millis(50))
            }
        };
        match wait_signal(handled, timeout) {
            Some(Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP) if terminating.is_none() => {
                terminating = Some(Instant::now());
                signal_tree(server, Signal::SIGTERM);
            }
            _ => {}
        }
        // Re-parented: the sidecar died (even by SIGKILL). Nobody is left to talk to the
        // server or to wait for a graceful exit.
        if !killed && getppid().as_raw() != sidecar {
            terminating.get_or_insert_with(Instant::now);
            killed = true;
            signal_tree(server, Signal::SIGKILL);
        }
    }
}

/// Sends `sig` to the server's process group and to every direct child of this supervisor
/// (orphans of the tree are re-parented here because we are a subreaper).
fn signal_tree(server: Pid, sig: Signal) {
    let _ = kill(Pid::from_raw(-server.as_raw()), sig);
    let _ = kill(server, sig);
    for pid in children_of(getpid()) {
        let _ = kill(pid, sig);
        let _ = kill(Pid::from_raw(-pid.as_raw()), sig);
    }
}

/// Direct children of `parent`, read from `/proc/<pid>/stat`.
pub fn children_of(parent: Pid) -> Vec<Pid> {
    // Fast path: the kernel's per-thread list of children (CONFIG_PROC_CHILDREN).
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) {
        let mut found = Vec::new();
        let mut readable = false;
        for task in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                readable = true;
                found.extend(
                    list.split_ascii_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .map(Pid::from_raw),
                );
            }
        }
        if readable {
            return found;
        }
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let name = entry.ok()?.file_name();
        let pid: i32 = name.to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        (parse_ppid(&stat)? == parent.as_raw()).then_some(Pid::from_raw(pid))
    })
    .collect()
}

/// The parent pid field of `/proc/<pid>/stat` (the command name may contain spaces and
/// parentheses, so parse from the last `)`).
pub fn parse_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

fn wait_signal(set: &SigSet, timeout: Option<Duration>) -> Option<Signal> {
    let ts;
    let ts_ptr = match timeout {
        Some(d) => {
            ts = libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            &ts as *const libc::timespec
        }
        None => std::ptr::null(),
    };
    // SAFETY: `set` points to a valid sigset_t for the duration of the call, `info` may be
    // null, and `ts_ptr` is null or points to `ts`, which outlives the call.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), ts_ptr) };
    if n < 0 {
        None
    } else {
        Signal::try_from(n).ok()
    }
}

/// Exits the way the server did, so the sidecar's wait status is the server's.
fn exit_like(status: WaitStatus) -> ! {
    match status {
        WaitStatus::Exited(_, code) => std::process::exit(code),
        WaitStatus::Signaled(_, sig, _) => {
            let mut set = SigSet::empty();
            set.add(sig);
            // SAFETY: restoring the default disposition of a signal is always sound.
            let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
            let _ = prctl::set_dumpable(false); // no core file from re-raising
            let _ = kill(getpid(), sig);
            let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
            std::process::exit(128 + sig as i32)
        }
        _ => std::process::exit(EXIT_HELPER_FAILED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_args_round_trip() {
        let args = HelperArgs {
            parent_pid: 42,
            grace: Duration::from_millis(1500),
            program: "/usr/bin/node".into(),
            argv: vec!["node".into(), "--".into(), "server.js".into()],
        };
        let parsed = parse_helper_args(helper_args(&args).into_iter()).unwrap();
        assert_eq!(parsed, args);
    }

    #[test]
    fn helper_args_refuse_garbage() {
        assert!(parse_helper_args(Vec::<OsString>::new().into_iter()).is_err());
        assert!(
            parse_helper_args(["--bogus".into(), "--".into(), "x".into()].into_iter()).is_err()
        );
        assert!(parse_helper_args(["--".into()].into_iter()).is_err());
    }

    fn plan() -> Plan {
        crate::sandbox::profile::SandboxConfig::load("none", Default::default())
            .unwrap()
            .plan(&crate::sandbox::profile::PlanContext {
                workdir: std::path::Path::new("/w"),
                program: std::path::Path::new("/bin/sh"),
                args: &[],
                cwd: None,
                sidecar_pid: 7,
            })
    }

    fn reader(bytes: &[u8]) -> impl FnMut(&mut [u8]) -> Result<(), String> + '_ {
        let mut at = 0;
        move |buf: &mut [u8]| {
            let end = at + buf.len();
            let src = bytes.get(at..end).ok_or("end of input")?;
            buf.copy_from_slice(src);
            at = end;
            Ok(())
        }
    }

    #[test]
    fn helper_input_round_trips_and_stops_at_its_end() {
        let input = HelperInput {
            plan: plan(),
            env: vec![
                ("PATH".into(), "/usr/bin".into()),
                ("EMPTY".into(), "".into()),
                ("WITH_EQ".into(), "a=b=c".into()),
            ],
        };
        let mut bytes = input.encode().to_vec();
        let frame_len = bytes.len();
        // What follows the frame (the server's first message) is left unread.
        bytes.extend_from_slice(b"{\"jsonrpc\":\"2.0\"}\n");
        let mut read = 0;
        let mut inner = reader(&bytes);
        let decoded = HelperInput::decode(|buf| {
            read += buf.len();
            inner(buf)
        })
        .unwrap();
        assert_eq!(decoded, input);
        assert_eq!(read, frame_len);
        assert!(
            !format!("{input:?}").contains("/usr/bin"),
            "values stay out of Debug"
        );
    }

    #[test]
    fn helper_input_refuses_damaged_frames() {
        let good = HelperInput {
            plan: plan(),
            env: vec![("A".into(), "1".into())],
        }
        .encode()
        .to_vec();
        assert!(HelperInput::decode(reader(b"XXXX")).is_err());
        assert!(HelperInput::decode(reader(&good[..good.len() - 1])).is_err());
        let mut huge = b"MCPW".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            HelperInput::decode(reader(&huge))
                .unwrap_err()
                .contains("too large")
        );
        // A variable without a name.
        let mut nameless = good.clone();
        let at = nameless.len() - 3;
        nameless[at..].copy_from_slice(b"=A1");
        assert!(HelperInput::decode(reader(&nameless)).is_err());
    }

    #[test]
    fn ppid_is_read_after_the_command_name() {
        assert_eq!(parse_ppid("123 (a) b) c) S 77 123 123 0"), Some(77));
        assert_eq!(parse_ppid("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parse_ppid("garbage"), None);
    }
}
