//! Test support: start the real binary, find the real servers and clients, speak MCP over
//! HTTP. Nothing here fakes a part under test.

#![allow(dead_code, unreachable_pub)]

pub mod chromium;
pub mod cimd_host;
pub mod github;
pub mod http;
pub mod issuer;
pub mod lb;
pub mod oauth;
pub mod otlp;
pub mod postgres;
pub mod proc;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test.
pub fn warden_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-warden"))
}

/// The fault-injection / echo fixture server (an example of this crate; cargo builds examples
/// before integration tests).
pub fn fixture() -> Vec<String> {
    let bin = warden_bin();
    let path = bin
        .parent()
        .expect("target dir")
        .join("examples")
        .join("stdio_fixture");
    assert!(
        path.exists(),
        "{} missing: run `cargo build --examples`",
        path.display()
    );
    vec![path.display().to_string()]
}

fn need(path: &Path) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/setup-test-deps (installs the npm and PyPI parts the tests use)",
        path.display()
    );
    path.to_path_buf()
}

/// `tests/js/node_modules`: the official TypeScript SDK, server-everything, supergateway,
/// oidc-provider, all from the npm registry.
pub fn node_modules() -> PathBuf {
    need(&repo().join("tests/js/node_modules"))
}

/// `@modelcontextprotocol/server-everything` over STDIO.
pub fn everything() -> Vec<String> {
    let index = need(&node_modules().join("@modelcontextprotocol/server-everything/dist/index.js"));
    vec!["node".into(), index.display().to_string(), "stdio".into()]
}

/// The Python of the test venv (official `mcp` SDK and `mcp-server-time` from PyPI).
pub fn python() -> PathBuf {
    need(&repo().join("tests/py/.venv/bin/python"))
}

/// `mcp-server-time` over STDIO.
pub fn time_server() -> Vec<String> {
    vec![
        python().display().to_string(),
        "-m".into(),
        "mcp_server_time".into(),
        "--local-timezone".into(),
        "UTC".into(),
    ]
}

/// A running `mcp-warden wrap`. Killed (SIGKILL) when dropped, unless stopped.
pub struct Warden {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The admin listener, when started with `--admin-listen`.
    pub admin: Option<SocketAddr>,
    logs: Arc<(Mutex<String>, Condvar)>,
}

/// Options for [`Warden::start`].
pub struct WardenBuilder {
    args: Vec<String>,
    server: Vec<String>,
    auth: bool,
    env: Vec<(String, String)>,
    via: Vec<String>,
    stdout: bool,
}

impl Warden {
    pub fn builder(server: Vec<String>) -> WardenBuilder {
        WardenBuilder {
            args: Vec::new(),
            server,
            auth: false,
            env: Vec::new(),
            via: Vec::new(),
            stdout: false,
        }
    }

    /// `mcp-warden wrap --no-auth` around `server` on a free loopback port.
    pub fn start(server: Vec<String>) -> Warden {
        Self::builder(server).start()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.admin.expect("started without --admin-listen"),
            path
        )
    }

    pub fn mcp_url(&self) -> String {
        self.url("/mcp")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// The sidecar's stdout, when started with [`WardenBuilder::capture_stdout`].
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("started with capture_stdout")
    }

    /// Everything the sidecar has logged so far.
    pub fn logs(&self) -> String {
        self.logs.0.lock().unwrap().clone()
    }

    /// Waits until the logs contain `needle` (or panics after `timeout`).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let (lock, cv) = &*self.logs;
        let deadline = Instant::now() + timeout;
        let mut logs = lock.lock().unwrap();
        while !logs.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "log line {needle:?} not seen in {timeout:?}; logs:\n{logs}"
            );
            logs = cv.wait_timeout(logs, left).unwrap().0;
        }
        logs.clone()
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "mcp-warden did not exit within {timeout:?} after {signal}; logs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl WardenBuilder {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// Sets a variable in the sidecar's environment.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Starts the sidecar through this launcher command (e.g. `setpriv --reuid …`).
    pub fn via<I: IntoIterator<Item = S>, S: Into<String>>(mut self, launcher: I) -> Self {
        self.via = launcher.into_iter().map(Into::into).collect();
        self
    }

    /// Keep the sidecar's stdout as a pipe for [`Warden::take_stdout`] (a reader that may
    /// be slow, or not read at all).
    pub fn capture_stdout(mut self) -> Self {
        self.stdout = true;
        self
    }

    /// Leave authentication flags to the caller (no `--no-auth`).
    pub fn with_auth(mut self) -> Self {
        self.auth = true;
        self
    }

    pub fn start(self) -> Warden {
        let mut cmd = match self.via.split_first() {
            Some((launcher, args)) => {
                let mut c = Command::new(launcher);
                c.args(args).arg(warden_bin());
                c
            }
            None => Command::new(warden_bin()),
        };
        let port_file = port_file_path();
        cmd.arg("wrap").args([
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "info,mcp_warden=debug",
        ]);
        cmd.arg("--port-file").arg(&port_file);
        if !self.auth {
            cmd.arg("--no-auth");
        }
        cmd.args(&self.args);
        if !self.server.is_empty() {
            cmd.arg("--").args(&self.server);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null())
            .stdout(if self.stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mcp-warden");
        let stderr = child.stderr.take().unwrap();
        let logs: Arc<(Mutex<String>, Condvar)> = Arc::default();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("MCP_WARDEN_TEST_LOGS").is_some() {
                    eprintln!("[warden] {line}");
                }
                let (lock, cv) = &*sink;
                let mut l = lock.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
                cv.notify_all();
            }
        });
        let mut warden = Warden {
            admin: None,
            child: Some(child),
            addr: "0.0.0.0:0".parse().unwrap(),
            logs,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Written by the sidecar once it serves, with the addresses its listeners got.
            if let Ok(bound) = std::fs::read_to_string(&port_file) {
                let _ = std::fs::remove_file(&port_file);
                let addr = |key: &str| {
                    bound
                        .lines()
                        .find_map(|l| l.strip_prefix(key))
                        .map(|a| a.parse().expect("an address in --port-file"))
                };
                warden.addr = addr("listen=").expect("listen= in --port-file");
                warden.admin = addr("admin=");
                return warden;
            }
            let text = warden.logs();
            if let Some(status) = warden.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mcp-warden exited at startup ({status}); logs:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "mcp-warden did not start; logs:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A fresh path for `--port-file`, in a directory any uid the tests run the sidecar as can
/// write to.
fn port_file_path() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("mcp-warden-port-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

impl Drop for Warden {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a Node script from `tests/js` with the SDKs installed there; returns stdout.
pub fn node(script: &str, args: &[&str], timeout: Duration) -> String {
    let dir = repo().join("tests/js");
    node_modules();
    run(
        Command::new("node")
            .current_dir(&dir)
            .arg(dir.join(script))
            .args(args),
        timeout,
    )
}

/// `node` with variables added to its environment.
pub fn node_with_env(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> String {
    let dir = repo().join("tests/js");
    node_modules();
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir).arg(dir.join(script)).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, timeout)
}

/// Runs a Python script from `tests/py` in the test venv; returns stdout.
pub fn py(script: &str, args: &[&str], timeout: Duration) -> String {
    let dir = repo().join("tests/py");
    run(
        Command::new(python())
            .current_dir(&dir)
            .arg(dir.join(script))
            .args(args),
        timeout,
    )
}

fn run(cmd: &mut Command, timeout: Duration) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "client timed out after {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                out.join().unwrap(),
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "client failed ({status})\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like [`eventually`], for async tests: sleeps without blocking the runtime, so client
/// connections keep making progress (and closing) meanwhile.
pub async fn until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mcp-warden-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
