//! Adversarial sandbox tests: a hostile server (`examples/sandbox_probe.rs`) attempts each
//! attack under a profile and under a baseline without the layer. A result counts only when
//! the baseline shows the attack getting through, so a kernel refusal is never mistaken for
//! the sandbox working. Landlock-dependent checks skip with a printed reason on kernels
//! without it, unless `MCP_WARDEN_REQUIRE_LANDLOCK=1`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::http::{Mcp, text};
use crate::support::proc::alive;
use crate::support::{Warden, WardenBuilder, repo, until, warden_bin};

/// The hostile fixture server.
pub(super) fn probe_bin() -> String {
    let path = warden_bin()
        .parent()
        .expect("target dir")
        .join("examples/sandbox_probe");
    assert!(
        path.exists(),
        "{} missing: run `cargo build --examples`",
        path.display()
    );
    path.display().to_string()
}

/// What the sidecar logged about its sandbox at startup.
#[derive(Debug)]
struct Layers {
    landlock: String,
    abi: i32,
}

fn layers(w: &Warden) -> Layers {
    let logs = w.wait_log("sandbox layers in force", Duration::from_secs(5));
    let line = logs
        .lines()
        .find(|l| l.contains("sandbox layers in force"))
        .unwrap_or_default();
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_owned()
    };
    Layers {
        landlock: field("sandbox.landlock"),
        abi: field("sandbox.landlock.abi").parse().unwrap_or(0),
    }
}

/// Whether Landlock (at least `abi`) is enforced here; otherwise skip with a reason, or
/// fail when the machine is declared to have it.
pub(super) fn landlock_or_skip(w: &Warden, abi: i32, what: &str) -> bool {
    let l = layers(w);
    if l.landlock == "FullyEnforced" && l.abi >= abi {
        return true;
    }
    let msg = format!(
        "{what}: needs Landlock ABI >= {abi}, this kernel reports {} (ABI {})",
        l.landlock, l.abi
    );
    assert!(
        std::env::var_os("MCP_WARDEN_REQUIRE_LANDLOCK").is_none(),
        "MCP_WARDEN_REQUIRE_LANDLOCK is set but {msg}"
    );
    eprintln!("SKIPPED {msg}");
    false
}

pub(super) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Starts the sidecar as uid/gid 65534 (needs root).
pub(super) fn unprivileged(b: WardenBuilder) -> WardenBuilder {
    b.via([
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
}

/// Runs `attacks` in a new session of `w`; attack → outcome.
pub(super) async fn probe(w: &Warden, attacks: &[String]) -> HashMap<String, String> {
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m
        .call_tool(
            json!(1),
            "probe",
            json!({"attacks": attacks, "sidecar": w.pid()}),
        )
        .await;
    let out: HashMap<String, String> = serde_json::from_str(&text(&r)).unwrap_or_else(|_| {
        panic!("probe answered {r}; logs:\n{}", w.logs());
    });
    m.delete().await;
    out
}

/// An outcome that shows the call reached the kernel's own logic: allowed, or refused for a
/// reason other than permission (bad arguments on purpose, missing target, no such family).
fn got_through(outcome: &str) -> bool {
    outcome.starts_with("ALLOWED")
        || [
            "EINVAL",
            "EFAULT",
            "ENOENT",
            "ENOTTY",
            "EAFNOSUPPORT",
            "ECONNREFUSED",
            "EBADF",
            "ESRCH",
            "E2BIG",
        ]
        .iter()
        .any(|e| outcome == format!("DENIED {e}"))
}

/// One attack, what the profile must answer, and whether Landlock is what refuses it.
struct Case {
    attack: String,
    expect: &'static str,
    landlock_abi: i32,
}

fn case(attack: impl Into<String>, expect: &'static str) -> Case {
    Case {
        attack: attack.into(),
        expect,
        landlock_abi: 0,
    }
}

fn landlock(attack: impl Into<String>, expect: &'static str, abi: i32) -> Case {
    Case {
        attack: attack.into(),
        expect,
        landlock_abi: abi,
    }
}

/// Runs every case under `profile` and under `baseline`, asserts the profile's answers, and
/// that each proven refusal is one the baseline did not give. Returns the attacks the
/// kernel refused in both runs (reported, not counted as proof).
async fn compare(
    builder: impl Fn() -> WardenBuilder,
    profile: &str,
    baseline: &str,
    cases: &[Case],
) -> Vec<String> {
    let attacks: Vec<String> = cases.iter().map(|c| c.attack.clone()).collect();
    let base_w = builder().args(["--sandbox", baseline]).start();
    let base = probe(&base_w, &attacks).await;
    let w = builder().args(["--sandbox", profile]).start();
    let got = probe(&w, &attacks).await;
    let mut refused_anyway = Vec::new();
    let mut failures = Vec::new();
    for c in cases {
        let (b, g) = (&base[&c.attack], &got[&c.attack]);
        if c.landlock_abi > 0 && !landlock_or_skip(&w, c.landlock_abi, &c.attack) {
            continue;
        }
        if !g.starts_with(c.expect) {
            failures.push(format!(
                "{}: expected {}, got {g} (baseline {b})",
                c.attack, c.expect
            ));
            continue;
        }
        if c.expect.starts_with("ALLOWED") {
            continue;
        }
        if !got_through(b) {
            refused_anyway.push(format!("{} (baseline {b})", c.attack));
        }
    }
    assert!(
        failures.is_empty(),
        "under {profile}:\n{}\nall results: {got:#?}",
        failures.join("\n")
    );
    if !refused_anyway.is_empty() {
        eprintln!(
            "note: the kernel refused these without {profile} too, so they prove nothing here: {}",
            refused_anyway.join(", ")
        );
    }
    refused_anyway
}

fn default_cases(secret_file: &str) -> Vec<Case> {
    let mut cases = vec![
        case("write_work", "ALLOWED"),
        landlock("write_tmp", "DENIED EACCES", 1),
        landlock(format!("read_file:{secret_file}"), "DENIED EACCES", 1),
        landlock("read_file:/etc/shadow", "DENIED EACCES", 1),
        landlock("sidecar_mem", "DENIED EACCES", 1),
        landlock("sidecar_environ", "DENIED EACCES", 1),
        landlock("supervisor_environ", "DENIED EACCES", 1),
        case("ptrace_sidecar", "DENIED EPERM"),
        case("ptrace_traceme", "DENIED EPERM"),
        case("process_vm_readv", "DENIED EPERM"),
        case("pidfd_open", "DENIED EPERM"),
        case("pidfd_getfd", "DENIED EPERM"),
        case("kill_sidecar", "DENIED EPERM"),
        case("kill_sidecar_group", "DENIED EPERM"),
        case("kill_supervisor", "DENIED EPERM"),
        case("kill_all", "DENIED EPERM"),
        case("tgkill_sidecar", "DENIED EPERM"),
        case("unshare_user", "DENIED EPERM"),
        case("clone_newuser", "DENIED EPERM"),
        case("clone3", "DENIED ENOSYS"),
        case("mount", "DENIED EPERM"),
        case("bpf", "DENIED EPERM"),
        case("perf_event_open", "DENIED EPERM"),
        case("keyctl", "DENIED EPERM"),
        case("io_uring_setup", "DENIED EPERM"),
        case("userfaultfd", "DENIED EPERM"),
        case("tiocsti", "DENIED EPERM"),
        case("personality", "DENIED EPERM"),
        case("socket_vsock", "DENIED EPERM"),
        case("socket_alg", "DENIED EPERM"),
        case("socket_packet", "DENIED EPERM"),
        case("socket_netlink_audit", "DENIED EPERM"),
        case("socket_inet", "ALLOWED"),
        case("socket_netlink", "ALLOWED"),
    ];
    if cfg!(target_arch = "x86_64") {
        cases.push(case("int80", "KILLED SIGSYS"));
        // On kernels without the x32 ABI the kernel answers ENOSYS by itself; where x32 is
        // enabled this is the real test of the guard.
        cases.push(case("x32", "DENIED ENOSYS"));
    }
    cases
}

/// A sidecar secret file outside every readable path (same owner as the sidecar).
fn secret_file(tag: &str) -> (crate::support::TempDir, PathBuf) {
    let dir = crate::support::TempDir::new(tag);
    let path = dir.dir().join("api-key");
    std::fs::write(&path, "s3cret-file-value").unwrap();
    (dir, path)
}

#[tokio::test]
async fn default_profile_refuses_attacks_the_baseline_allows_as_root() {
    if !is_root() {
        eprintln!("SKIPPED: the root run needs root");
        return;
    }
    let (_dir, secret) = secret_file("root");
    let secret = secret.display().to_string();
    let cases = default_cases(&secret);
    let refused_anyway = compare(
        || Warden::builder(vec![probe_bin()]).env("WARDEN_SECRET", "sidecar-env-secret"),
        "default",
        "none",
        &cases,
    )
    .await;
    // As root every one of these reaches the kernel without the sandbox, except what this
    // kernel lacks entirely.
    for r in &refused_anyway {
        assert!(
            r.starts_with("x32") || r.starts_with("socket_vsock") || r.starts_with("socket_alg"),
            "refused without the sandbox too: {r}"
        );
    }
}

#[tokio::test]
async fn default_profile_refuses_attacks_as_an_unprivileged_user() {
    if !is_root() {
        eprintln!("SKIPPED: switching to uid 65534 needs root");
        return;
    }
    let (dir, secret) = secret_file("unpriv");
    // Readable by the unprivileged sidecar (it owns it), not by anyone else.
    std::os::unix::fs::chown(dir.dir(), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&secret, Some(65534), Some(65534)).unwrap();
    let secret = secret.display().to_string();
    let refused_anyway = compare(
        || unprivileged(Warden::builder(vec![probe_bin()])),
        "default",
        "none",
        &default_cases(&secret),
    )
    .await;
    // Same-user attacks on the sidecar are what matters unprivileged: each must be refused
    // by the sandbox, not by the kernel anyway.
    for must in [
        "kill_sidecar",
        "kill_supervisor",
        "pidfd_open",
        "write_tmp",
        "read_file:/tmp",
        "unshare_user",
        "io_uring_setup",
    ] {
        assert!(
            !refused_anyway.iter().any(|r| r.starts_with(must)),
            "{must} was refused without the sandbox too: {refused_anyway:?}"
        );
    }
}

#[tokio::test]
async fn nested_under_a_runtime_default_filter_the_layers_still_apply() {
    let filter = repo().join("tests/data/emulated-runtime-default.json");
    let builder = || {
        let b = Warden::builder(vec![probe_bin()]);
        if is_root() {
            unprivileged_inner(b)
        } else {
            b.via([
                probe_bin(),
                "--nest".into(),
                filter.display().to_string(),
                "--".into(),
            ])
        }
    };
    let w = builder().start();
    let got = probe(
        &w,
        &[
            "write_work".into(),
            "write_tmp".into(),
            "kill_sidecar".into(),
            "ptrace_sidecar".into(),
            "int80".into(),
            "status".into(),
        ],
    )
    .await;
    assert_eq!(got["write_work"], "ALLOWED");
    assert_eq!(got["kill_sidecar"], "DENIED EPERM");
    assert_eq!(got["ptrace_sidecar"], "DENIED EPERM");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(got["int80"], "KILLED SIGSYS");
    }
    // The runtime's filters and ours are all in force.
    let status = &got["status"];
    let seccomp_filters: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(seccomp_filters >= 6, "{status}");
    if landlock_or_skip(&w, 1, "nested Landlock") {
        assert_eq!(got["write_tmp"], "DENIED EACCES");
    }
}

/// The nested launcher runs first, then the uid switch (as a container runtime would).
fn unprivileged_inner(b: WardenBuilder) -> WardenBuilder {
    let filter = repo().join("tests/data/emulated-runtime-default.json");
    b.via([
        "setpriv".to_owned(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        "--inh-caps=-all".into(),
        probe_bin(),
        "--nest".into(),
        filter.display().to_string(),
        "--".into(),
    ])
}

#[tokio::test]
async fn a_required_layer_that_cannot_be_enforced_stops_the_start() {
    let filter = repo().join("tests/data/no-landlock.json");
    // The sidecar under a runtime filter without Landlock, started through `via`.
    let nested = |via: &[&str], profile: &str, extra: &[String]| {
        let mut cmd = std::process::Command::new(via.first().copied().unwrap_or("env"));
        cmd.args(via.iter().skip(1))
            .arg(probe_bin())
            .args(["--nest", &filter.display().to_string(), "--"])
            .arg(warden_bin())
            .args([
                "wrap",
                "--no-auth",
                "--listen",
                "127.0.0.1:0",
                "--sandbox",
                profile,
            ])
            .args(extra)
            .arg("--")
            .arg(probe_bin());
        cmd
    };
    // strict requires Landlock: refused, with the reason.
    let (code, stderr) = serve_or_exit(nested(&[], "strict", &[]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("Landlock is required") || stderr.contains("Landlock: "),
        "{stderr}"
    );
    // default asks for it best-effort: starts, and says Landlock is not enforced.
    let (code, stderr) = serve_or_exit(nested(&[], "default", &[]));
    assert_eq!(code, None, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("sandbox layer not fully enforced") && l.contains("NotEnforced")),
        "{stderr}"
    );
    // With per-session secrets, best-effort is not enough where servers share a uid:
    // without Landlock another session's server could read them from /proc.
    let (dir, secret) = secret_file("nolandlock");
    let env_file = ["--env-file".to_owned(), format!("K={}", secret.display())];
    if !is_root() {
        let (code, stderr) = serve_or_exit(nested(&[], "default", &env_file));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("injected secrets"), "{stderr}");
        return;
    }
    let unprivileged = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    std::os::unix::fs::chown(dir.dir(), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&secret, Some(65534), Some(65534)).unwrap();
    let (code, stderr) = serve_or_exit(nested(&unprivileged, "default", &env_file));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("injected secrets"), "{stderr}");
    // A root sidecar gives each session a uid of its own, which keeps the servers out of
    // each other's /proc without Landlock.
    let (code, stderr) = serve_or_exit(nested(&[], "default", &env_file));
    assert_eq!(code, None, "{stderr}");
    assert!(
        stderr.contains("sandbox.signal_isolation=session_uid"),
        "{stderr}"
    );
}

/// Runs a sidecar command until it serves (then stops it: `None`) or exits (its code);
/// and what it logged.
pub(super) fn serve_or_exit(mut cmd: std::process::Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("mcp-warden is serving") {
            let _ = child.kill();
            let _ = child.wait();
            return (None, seen);
        }
    }
    (child.wait().unwrap().code(), seen)
}

#[tokio::test]
async fn nonet_refuses_ip_sockets_the_default_allows() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let cases = vec![
        case(format!("tcp_connect:{port}"), "DENIED EPERM"),
        case(format!("udp_send:{udp_port}"), "DENIED EPERM"),
        case("socket_inet", "DENIED EPERM"),
        case("socket_inet6", "DENIED EPERM"),
        case("socket_netlink", "DENIED EPERM"),
        case("io_uring_setup", "DENIED EPERM"),
        case("socket_unix", "ALLOWED"),
        case("write_work", "ALLOWED"),
    ];
    // The baseline (default) really connects: the listener sees it.
    compare(
        || Warden::builder(vec![probe_bin()]),
        "nonet",
        "default",
        &cases,
    )
    .await;
    let mut accepted = 0;
    while listener.accept().is_ok() {
        accepted += 1;
    }
    assert_eq!(accepted, 1, "only the baseline's connection arrives");
    // nonet's TCP refusal also holds in Landlock alone (ABI 4), for io_uring-made sockets.
    let w = Warden::builder(vec![probe_bin()])
        .args(["--sandbox", "nonet"])
        .start();
    landlock_or_skip(&w, 4, "Landlock TCP rule");
}

#[tokio::test]
async fn abstract_unix_sockets_outside_the_sandbox_are_unreachable() {
    let name = format!("mcpw-test-{}", std::process::id());
    let sock = std::os::unix::net::UnixListener::bind_addr(
        &<std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap(),
    )
    .unwrap();
    sock.set_nonblocking(true).unwrap();
    let cases = vec![landlock(
        format!("abstract_connect:{name}"),
        "DENIED EPERM",
        6,
    )];
    compare(
        || Warden::builder(vec![probe_bin()]),
        "default",
        "none",
        &cases,
    )
    .await;
}

#[tokio::test]
async fn strict_hides_proc_and_requires_landlock() {
    let w = Warden::builder(vec![probe_bin()])
        .args(["--sandbox", "strict"])
        .start();
    if !landlock_or_skip(&w, 1, "strict") {
        return;
    }
    drop(w);
    let cases = vec![
        landlock("read_file:/proc/self/status", "DENIED EACCES", 1),
        landlock("sidecar_cmdline", "DENIED EACCES", 1),
        case("socket_inet", "DENIED EPERM"),
        case("write_work", "ALLOWED"),
    ];
    compare(
        || Warden::builder(vec![probe_bin()]),
        "strict",
        "default",
        &cases,
    )
    .await;
}

/// A copy of the default profile with extra rlimits, as an operator would write it.
fn profile_with(dir: &crate::support::TempDir, rlimits: &str) -> String {
    let text = std::fs::read_to_string(repo().join("sandbox/default.toml")).unwrap();
    let text = text.replace("[rlimits]\n", &format!("[rlimits]\n{rlimits}\n"));
    let text = text.replace("nofile = 4096\n", "");
    let path = dir.dir().join("limits.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn count(outcome: &str) -> (usize, String) {
    let rest = outcome
        .strip_prefix("ALLOWED: ")
        .unwrap_or_else(|| panic!("{outcome}"));
    let (n, e) = rest.split_once(' ').unwrap();
    (n.parse().unwrap(), e.to_owned())
}

#[tokio::test]
async fn resource_limits_contain_hogs() {
    let dir = crate::support::TempDir::new("limits");
    std::fs::set_permissions(
        dir.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let profile = profile_with(&dir, "nofile = 256\nas_mb = 1024\nnproc = 32");
    let attacks = [
        "fd_hog:3000".to_owned(),
        "mem_hog:4096".into(),
        "fork_bomb:100".into(),
    ];
    let builder = || {
        let b = Warden::builder(vec![probe_bin()]);
        // NPROC counts every process of the real uid: only meaningful for a dedicated uid.
        if is_root() { unprivileged(b) } else { b }
    };
    let base = probe(&builder().start(), &attacks).await;
    let w = builder().args(["--sandbox", &profile]).start();
    let got = probe(&w, &attacks).await;

    let (fds, e) = count(&got["fd_hog:3000"]);
    assert!(fds <= 256 && e == "EMFILE", "{}", got["fd_hog:3000"]);
    assert_eq!(
        count(&base["fd_hog:3000"]).0,
        3000,
        "baseline opens them all"
    );

    let (mb, e) = count(&got["mem_hog:4096"]);
    assert!(mb < 1024 && e == "ENOMEM", "{}", got["mem_hog:4096"]);
    assert_eq!(count(&base["mem_hog:4096"]), (4096, "none".into()));

    if is_root() {
        let (forks, e) = count(&got["fork_bomb:100"]);
        assert!(forks < 32 && e == "EAGAIN", "{}", got["fork_bomb:100"]);
        assert_eq!(count(&base["fork_bomb:100"]), (100, "none".into()));
    } else {
        eprintln!("SKIPPED fork bomb: needs a dedicated uid (run as root)");
    }
    // The sidecar is unharmed.
    assert_eq!(reqwest::get(w.url("/healthz")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_double_forked_daemon_dies_with_its_session() {
    let w = Warden::start(vec![probe_bin()]);
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m
        .call_tool(
            json!(1),
            "probe",
            json!({"attacks": ["daemon"], "sidecar": w.pid()}),
        )
        .await;
    let out: Value = serde_json::from_str(&text(&r)).unwrap();
    let pid: i32 = out["daemon"]
        .as_str()
        .unwrap()
        .strip_prefix("ALLOWED: ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(alive(pid), "the daemon runs while the session lives");
    m.delete().await;
    assert!(
        until(Duration::from_secs(10), || (!alive(pid)).then_some(()))
            .await
            .is_some(),
        "daemon {pid} outlived its session"
    );
}

#[tokio::test]
async fn readiness_reports_each_layer() {
    let w = Warden::builder(vec![probe_bin()])
        .args(["--sandbox", "nonet", "--admin-listen", "127.0.0.1:0"])
        .start();
    let ready: Value = reqwest::get(w.admin_url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let s = &ready["sandbox"];
    assert_eq!(s["profile"], "nonet", "{ready}");
    assert_eq!(s["enforced"], true);
    // enosys + main + x32 guard (x86_64) + pid protection.
    let want = if cfg!(target_arch = "x86_64") { 4 } else { 3 };
    assert_eq!(s["layers"]["seccomp_filters"], want, "{ready}");
    assert_eq!(s["layers"]["no_new_privs"], true);
    assert_eq!(s["sidecar"]["non_dumpable"], true);
    assert_eq!(s["sidecar"]["subreaper"], true);
    if landlock_or_skip(&w, 1, "Landlock status") {
        assert_eq!(s["layers"]["landlock"], "fully_enforced", "{ready}");
        assert!(s["layers"]["landlock_abi"].as_i64().unwrap() >= 1);
    }
}

#[tokio::test]
async fn optional_namespaces_cut_the_network_where_the_kernel_allows_them() {
    let dir = crate::support::TempDir::new("ns");
    std::fs::set_permissions(
        dir.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let text = std::fs::read_to_string(repo().join("sandbox/default.toml"))
        .unwrap()
        .replace(
            "no_new_privs = true\n",
            "no_new_privs = true\nnamespaces = [\"user\", \"net\", \"ipc\", \"uts\"]\nnamespaces_mode = \"best-effort\"\n",
        );
    let profile = dir.dir().join("ns.toml");
    std::fs::write(&profile, text).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let attack = format!("tcp_connect:{port}");
    let w = Warden::builder(vec![probe_bin()])
        .args(["--sandbox", &profile.display().to_string()])
        .args(["--admin-listen", "127.0.0.1:0"])
        .start();
    let ready: Value = reqwest::get(w.admin_url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got = probe(&w, &[attack.clone(), "status".into(), "write_work".into()]).await;
    if ready["sandbox"]["layers"]["namespaces"] != json!(["user", "net", "ipc", "uts"]) {
        eprintln!(
            "SKIPPED namespaces: this kernel refuses unprivileged user namespaces ({})",
            ready["sandbox"]["degraded"]
        );
        return;
    }
    // Only a down loopback in the server's network namespace: the host's listener is out of
    // reach, while the default profile (same test file's baseline) connects.
    assert_eq!(got[&attack], "DENIED ENETUNREACH", "{got:?}");
    assert_eq!(got["write_work"], "ALLOWED");
    // The user namespace maps the server's ids to themselves (not the overflow uid); a
    // root sidecar's server has a uid of its own.
    let uids: Vec<u32> = got["status"]
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(uids.iter().all(|&u| u == uids[0] && u != 65534), "{uids:?}");
    if is_root() {
        assert_ne!(uids[0], 0, "{uids:?}");
    } else {
        assert_eq!(uids[0], nix::unistd::geteuid().as_raw(), "{uids:?}");
    }
    let base = probe(
        &Warden::start(vec![probe_bin()]),
        std::slice::from_ref(&attack),
    )
    .await;
    assert_eq!(base[&attack], "ALLOWED");
}

#[tokio::test]
async fn a_session_started_from_a_thread_that_exits_lives_on() {
    use mcp_warden::sandbox::exec::{HelperArgs, HelperInput, helper_args};
    use mcp_warden::sandbox::profile::{PlanContext, SandboxConfig};
    let work = crate::support::TempDir::new("thread");
    let probe = PathBuf::from(probe_bin());
    let plan = SandboxConfig::load("default", Default::default())
        .unwrap()
        .plan(&PlanContext {
            workdir: work.dir(),
            program: &probe,
            args: &[],
            cwd: None,
            sidecar_pid: std::process::id() as i32,
        });
    let args = helper_args(&HelperArgs {
        parent_pid: std::process::id() as i32,
        grace: Duration::from_secs(1),
        program: probe.clone().into(),
        argv: vec![probe.into()],
    });
    let mut cmd = std::process::Command::new(warden_bin());
    cmd.arg(mcp_warden::sandbox::HELPER_ARG)
        .args(args)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let input = HelperInput {
        plan,
        env: vec![("HOME".into(), work.dir().into())],
    }
    .encode();
    // The spawning thread stays until the server runs (so the helper is past any setup a
    // parent-death signal would need), then exits: one tied to it would kill the session.
    let (mut helper, server) = std::thread::spawn(move || {
        let mut helper = cmd.spawn().unwrap();
        std::io::Write::write_all(helper.stdin.as_mut().unwrap(), &input).unwrap();
        let supervisor = helper.id() as i32;
        let server = crate::support::eventually(Duration::from_secs(5), || {
            crate::support::proc::descendants(supervisor)
                .first()
                .copied()
        })
        .expect("server started");
        (helper, server)
    })
    .join()
    .unwrap();
    let supervisor = helper.id() as i32;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        alive(supervisor) && alive(server),
        "the session died with its spawning thread"
    );
    drop(helper.stdin.take());
    let status = helper.wait().unwrap();
    assert!(status.success(), "the server exits on EOF: {status}");
}

#[tokio::test]
async fn every_server_dies_with_a_killed_sidecar() {
    let mut w = Warden::start(vec![probe_bin()]);
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m
        .call_tool(
            json!(1),
            "probe",
            json!({"attacks": ["server_pid", "daemon"], "sidecar": w.pid()}),
        )
        .await;
    let out: HashMap<String, String> = serde_json::from_str(&text(&r)).unwrap();
    let pid = |k: &str| -> i32 { out[k].trim_start_matches("ALLOWED: ").parse().unwrap() };
    let (server, daemon) = (pid("server_pid"), pid("daemon"));
    assert!(alive(server) && alive(daemon));
    w.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5));
    assert!(
        until(Duration::from_secs(10), || (!alive(server)
            && !alive(daemon))
        .then_some(()))
        .await
        .is_some(),
        "the session's tree outlived the sidecar"
    );
}

/// Limits and scheduling of other processes: each attack sets the sidecar's value to what
/// it already is, so success means the permission check passed and nothing changed.
fn foreign_process_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for attack in [
        "prlimit_pid",
        "setpriority_pid",
        "sched_setaffinity_pid",
        "sched_setscheduler_pid",
        "sched_setparam_pid",
        "ioprio_set_pid",
    ] {
        cases.push(case(format!("{attack}:sidecar"), "DENIED EPERM"));
        // The server's own limits and scheduling stay its own business.
        cases.push(case(format!("{attack}:self"), "ALLOWED"));
    }
    cases.push(case("get_robust_list_pid:sidecar", "DENIED EPERM"));
    cases.push(case("process_mrelease", "DENIED EPERM"));
    cases
}

#[tokio::test]
async fn a_server_cannot_change_the_sidecars_limits_or_scheduling() {
    let cases = foreign_process_cases();
    compare(
        || Warden::builder(vec![probe_bin()]),
        "default",
        "none",
        &cases,
    )
    .await;
    if !is_root() {
        eprintln!("SKIPPED the unprivileged run: switching to uid 65534 needs root");
        return;
    }
    // As the same unprivileged user the kernel lets all of these through: only the sandbox
    // refuses them.
    let refused_anyway = compare(
        || unprivileged(Warden::builder(vec![probe_bin()])),
        "default",
        "none",
        &cases,
    )
    .await;
    for must in [
        "prlimit_pid:sidecar",
        "setpriority_pid:sidecar",
        "sched_setaffinity_pid:sidecar",
        "sched_setscheduler_pid:sidecar",
        "ioprio_set_pid:sidecar",
    ] {
        assert!(
            !refused_anyway.iter().any(|r| r.starts_with(must)),
            "{must} was refused without the sandbox too: {refused_anyway:?}"
        );
    }
}
#[tokio::test]
async fn descriptors_the_sidecar_inherited_do_not_reach_the_server() {
    let dir = crate::support::TempDir::new("inherited-fd");
    let file = dir.path("launcher-file");
    std::fs::write(&file, "").unwrap();
    // A launcher that leaves descriptor 7 open (not close-on-exec), as shells and process
    // managers do.
    let w = Warden::builder(vec![probe_bin()])
        .via([
            "sh".to_owned(),
            "-c".into(),
            format!("exec 7>>'{}'; exec \"$@\"", file.display()),
            "sh".into(),
        ])
        .start();
    let target = std::fs::read_link(format!("/proc/{}/fd/7", w.pid())).unwrap();
    assert_eq!(
        target, file,
        "the sidecar got descriptor 7 from its launcher"
    );
    let got = probe(&w, &["fds".into(), "write_fd:7".into()]).await;
    assert_eq!(
        got["fds"], "ALLOWED",
        "the server holds no extra descriptor"
    );
    assert_eq!(got["write_fd:7"], "DENIED EBADF");
    assert_eq!(std::fs::read(&file).unwrap(), b"", "nothing was written");
    // Nor does the session's supervisor, which runs unsandboxed.
    for pid in crate::support::proc::descendants(w.pid()) {
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .map(|t| t.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !fds.iter().any(|t| t == &file.display().to_string()),
            "process {pid} holds the launcher's file: {fds:?}"
        );
    }
}
/// The default profile with Landlock's signal scope removed: what a kernel before 6.12
/// enforces.
pub(super) fn profile_without_signal_scope(dir: &crate::support::TempDir) -> String {
    let text = std::fs::read_to_string(repo().join("sandbox/default.toml")).unwrap();
    let from = "scopes = [\"signal\", \"abstract-unix-socket\"]";
    assert!(text.contains(from), "the default profile's scopes changed");
    let text = text.replace(from, "scopes = [\"abstract-unix-socket\"]");
    let path = dir.dir().join("no-signal-scope.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(
        dir.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    path.display().to_string()
}

/// Signals that reach the sidecar's threads rather than its main pid, and pidfds.
fn sidecar_signal_cases() -> Vec<Case> {
    vec![
        case("kill_pid:sidecar_thread", "DENIED"),
        case("tkill_pid:sidecar_thread", "DENIED"),
        case("sigqueue_pid:sidecar_thread", "DENIED"),
        case("sigqueue_pid:sidecar", "DENIED EPERM"),
        case("pidfd_signal_pid:sidecar", "DENIED ENOSYS"),
    ]
}

#[tokio::test]
async fn a_server_cannot_signal_the_sidecars_threads_or_through_a_pidfd() {
    let cases = sidecar_signal_cases();
    compare(
        || Warden::builder(vec![probe_bin()]),
        "default",
        "none",
        &cases,
    )
    .await;
    // Where no kernel layer isolates signals (an unprivileged sidecar on a kernel without
    // Landlock's signal scope), the pid filter alone must still protect the sidecar.
    let dir = crate::support::TempDir::new("noscope");
    let profile = profile_without_signal_scope(&dir);
    let builder = || {
        let b = Warden::builder(vec![probe_bin()]);
        if is_root() { unprivileged(b) } else { b }
    };
    compare(builder, &profile, "none", &cases).await;
}

/// Two sessions of one sidecar: the pids of B's server and supervisor, as B's server
/// reports them.
async fn session_pids(w: &Warden, b: &Mcp) -> (i32, i32) {
    let r = b
        .call_tool(
            json!(1),
            "probe",
            json!({"attacks": ["server_pid"], "sidecar": w.pid()}),
        )
        .await;
    let out: HashMap<String, String> = serde_json::from_str(&text(&r)).unwrap();
    let server: i32 = out["server_pid"]
        .trim_start_matches("ALLOWED: ")
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{server}/stat")).unwrap();
    let supervisor = mcp_warden::sandbox::exec::parse_ppid(&stat).unwrap();
    (server, supervisor)
}

/// Session A attacks session B's server and supervisor with signal 0 (a permission check)
/// in every way a pid can be named; with `kill`, then with SIGKILL for real. Returns
/// attack → outcome, plus `b_alive`.
async fn attack_other_session(w: &Warden, kill: bool) -> HashMap<String, String> {
    let mut a = Mcp::new(w.mcp_url());
    let mut b = Mcp::new(w.mcp_url());
    a.initialize().await;
    b.initialize().await;
    let (server, supervisor) = session_pids(w, &b).await;
    let attacks: Vec<String> = [server, supervisor]
        .iter()
        .flat_map(|pid| {
            [
                format!("kill_pid:{pid}"),
                format!("tkill_pid:{pid}"),
                format!("sigqueue_pid:{pid}"),
                format!("pidfd_signal_pid:{pid}"),
                format!("prlimit_pid:{pid}"),
            ]
        })
        .collect();
    let r = a
        .call_tool(
            json!(2),
            "probe",
            json!({"attacks": attacks, "sidecar": w.pid()}),
        )
        .await;
    let mut out: HashMap<String, String> = serde_json::from_str(&text(&r)).unwrap();
    if !kill {
        return out;
    }
    // The same calls with SIGKILL, for real: B and the sidecar must live on.
    let kills: Vec<String> = [
        format!("kill_pid:{server}:9"),
        format!("tkill_pid:{server}:9"),
        format!("pidfd_signal_pid:{server}:9"),
        format!("kill_pid:{supervisor}:9"),
        "tkill_pid:sidecar_thread:9".into(),
    ]
    .into();
    let sent = a
        .call_tool(
            json!(3),
            "probe",
            json!({"attacks": kills, "sidecar": w.pid()}),
        )
        .await;
    out.insert("kills".into(), text(&sent));
    out.insert(
        "b_alive".into(),
        (alive(server) && alive(supervisor)).to_string(),
    );
    out
}

fn allowed(out: &HashMap<String, String>) -> Vec<String> {
    let mut v: Vec<String> = out
        .iter()
        .filter(|(k, v)| k.contains("_pid:") && v.starts_with("ALLOWED"))
        .map(|(k, _)| k.clone())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn one_sessions_server_cannot_signal_another_session() {
    // Baseline: without a sandbox, same-user servers reach each other.
    let base = attack_other_session(
        &Warden::builder(vec![probe_bin()])
            .args(["--sandbox", "none"])
            .start(),
        false,
    )
    .await;
    assert_eq!(allowed(&base).len(), 10, "baseline: {base:#?}");
    // The default profile; and without Landlock's signal scope (as on a kernel before
    // 6.12), where a root sidecar's per-session uids keep sessions apart, and an
    // unprivileged one's PID namespaces.
    let dir = crate::support::TempDir::new("noscope-sessions");
    let noscope = profile_without_signal_scope(&dir);
    let runs: Vec<(&str, bool, &str)> = vec![
        (
            "default",
            false,
            if is_root() {
                "session_uid"
            } else {
                "landlock_scope"
            },
        ),
        (
            &noscope,
            false,
            if is_root() {
                "session_uid"
            } else {
                "pid_namespace"
            },
        ),
        (&noscope, true, "pid_namespace"),
    ];
    for (profile, drop_root, layer) in runs {
        if drop_root && !is_root() {
            continue;
        }
        let mut b = Warden::builder(vec![probe_bin()]).args([
            "--sandbox",
            profile,
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        if drop_root {
            b = unprivileged(b);
        }
        let w = b.start();
        let ready: Value = reqwest::get(w.admin_url("/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let layers = &ready["sandbox"]["layers"]["signal_isolation"];
        if layer == "pid_namespace" && layers == &json!([]) {
            eprintln!("SKIPPED the PID namespace run: this kernel refuses user namespaces");
            continue;
        }
        assert!(
            layers.as_array().unwrap().contains(&json!(layer)),
            "{profile}: {ready}"
        );
        let got = attack_other_session(&w, true).await;
        assert!(allowed(&got).is_empty(), "{profile}: {got:#?}");
        assert_eq!(got["b_alive"], "true", "{profile}: {got:#?}");
        assert_eq!(
            reqwest::get(w.url("/healthz")).await.unwrap().status(),
            200,
            "{profile}: the sidecar died: {got:#?}"
        );
        if layer == "pid_namespace" {
            // The server is its namespace's first process: its session still ends cleanly.
            let mut m = Mcp::new(w.mcp_url());
            m.initialize().await;
            let (server, supervisor) = session_pids(&w, &m).await;
            m.delete().await;
            assert!(
                until(Duration::from_secs(10), || (!alive(server)
                    && !alive(supervisor))
                .then_some(()))
                .await
                .is_some(),
                "the session's processes outlived it"
            );
        }
    }
}

#[tokio::test]
async fn where_no_layer_keeps_sessions_apart_the_sidecar_says_so_and_still_protects_itself() {
    if !is_root() {
        eprintln!("SKIPPED: the unprivileged, nested run needs root to switch users");
        return;
    }
    // Unprivileged (no uid per session), no Landlock signal scope (a kernel before 6.12),
    // and under a pod's RuntimeDefault filter (no user namespace, so no PID namespace).
    let dir = crate::support::TempDir::new("degraded");
    let profile = profile_without_signal_scope(&dir);
    let w = unprivileged_inner(Warden::builder(vec![probe_bin()]))
        .args(["--sandbox", &profile, "--admin-listen", "127.0.0.1:0"])
        .start();
    let logs = w.wait_log("sandbox layer not fully enforced", Duration::from_secs(5));
    assert!(
        logs.lines()
            .any(|l| l.contains("sandbox layer not fully enforced")
                && l.contains("sessions:")
                && l.contains("a server can signal other sessions")),
        "{logs}"
    );
    assert!(logs.contains("sandbox.signal_isolation=none"), "{logs}");
    let ready: Value = reqwest::get(w.admin_url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["sandbox"]["layers"]["signal_isolation"], json!([]));
    assert_eq!(ready["sandbox"]["layers"]["sidecar_threads_guarded"], true);
    // The pid filter alone still protects the sidecar, its threads included.
    let got = probe(
        &w,
        &sidecar_signal_cases()
            .iter()
            .map(|c| c.attack.clone())
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(got["tkill_pid:sidecar_thread"], "DENIED ENOSYS", "{got:?}");
    assert_eq!(got["kill_pid:sidecar_thread"], "DENIED EPERM", "{got:?}");
    assert_eq!(
        got["sigqueue_pid:sidecar_thread"], "DENIED EPERM",
        "{got:?}"
    );
    assert_eq!(got["pidfd_signal_pid:sidecar"], "DENIED ENOSYS", "{got:?}");
    // Nor can it have the kernel send the sidecar SIGIO (whose default action ends it) by
    // making it the owner of a descriptor.
    let got = probe(
        &w,
        &[
            "sigio_pid:sidecar".into(),
            "sigio_ex_pid:sidecar".into(),
            format!("sigio_pid:-{}", w.pid()),
        ],
    )
    .await;
    assert_eq!(got["sigio_pid:sidecar"], "DENIED EPERM", "{got:?}");
    assert_eq!(got["sigio_ex_pid:sidecar"], "DENIED EPERM", "{got:?}");
    assert_eq!(
        got[&format!("sigio_pid:-{}", w.pid())],
        "DENIED EPERM",
        "{got:?}"
    );
    assert_eq!(
        reqwest::get(w.url("/healthz")).await.unwrap().status(),
        200,
        "the sidecar died"
    );
    // What the warning says: another session's server is within reach.
    let other = attack_other_session(&w, false).await;
    assert!(!allowed(&other).is_empty(), "{other:#?}");
    // A profile that requires sessions to be kept apart refuses to start here.
    let strict = std::fs::read_to_string(&profile).unwrap().replace(
        "isolate_sessions = \"best-effort\"",
        "isolate_sessions = \"required\"",
    );
    let strict_path = dir.dir().join("required.toml");
    std::fs::write(&strict_path, strict).unwrap();
    let filter = repo().join("tests/data/emulated-runtime-default.json");
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(probe_bin())
    .args(["--nest", &filter.display().to_string(), "--"])
    .arg(warden_bin())
    .args(["wrap", "--no-auth", "--listen", "127.0.0.1:0", "--sandbox"])
    .arg(&strict_path)
    .arg("--")
    .arg(probe_bin());
    let (code, stderr) = serve_or_exit(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("keeping sessions apart is required"),
        "{stderr}"
    );
}
