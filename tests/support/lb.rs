//! Real load balancers (nginx and HAProxy from Debian packages) running the configs shipped in
//! `examples/lb`, each in a private scratch directory, killed and removed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;
use super::repo;

/// Replaces every `{{name}}` of `template`; panics if a placeholder is left.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    assert!(!out.contains("{{"), "placeholder left unrendered:\n{out}");
    out
}

/// The shipped template `examples/lb/<file>` rendered for replicas `mcp-warden-<i>` at
/// `replicas[i]`.
pub fn render_example(file: &str, listen: &str, replicas: &[SocketAddr]) -> String {
    let template = std::fs::read_to_string(repo().join("examples/lb").join(file)).unwrap();
    let mut vars = vec![("listen", listen.to_owned())];
    let names: Vec<String> = (0..replicas.len())
        .map(|i| format!("replica-{i}"))
        .collect();
    for (name, addr) in names.iter().zip(replicas) {
        vars.push((name.as_str(), addr.to_string()));
    }
    render(&template, &vars)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Debian-packaged program (`/usr/sbin` is not on every PATH).
pub fn system_bin(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run ./scripts/setup-test-deps (installs nginx-light and haproxy from Debian)")
        })
}

/// A running load balancer.
pub struct Lb {
    child: Option<Child>,
    pub name: &'static str,
    pub addr: SocketAddr,
    /// Its own log file, besides stderr.
    log: Option<PathBuf>,
    dir: TempDir,
}

impl Lb {
    /// nginx (one process: `master_process off`, so a kill leaves no worker behind) with
    /// `examples/lb/nginx.conf` included in its `http` block.
    pub fn nginx(replicas: &[SocketAddr]) -> Lb {
        let dir = TempDir::new("nginx");
        let d = dir.dir().display().to_string();
        let port = free_port();
        let site = render_example("nginx.conf", &format!("127.0.0.1:{port}"), replicas);
        std::fs::write(dir.dir().join("mcp-warden.conf"), site).unwrap();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 include {d}/mcp-warden.conf;\n}}\n"
        );
        std::fs::write(dir.dir().join("nginx.conf"), main).unwrap();
        let mut cmd = Command::new(system_bin("nginx"));
        cmd.args(["-p", &d, "-e", &format!("{d}/error.log"), "-c"])
            .arg(dir.dir().join("nginx.conf"));
        let log = Some(dir.dir().join("error.log"));
        Lb::start("nginx", cmd, port, log, dir)
    }

    /// HAProxy in the foreground (`-db`) with `examples/lb/haproxy.cfg`.
    pub fn haproxy(replicas: &[SocketAddr]) -> Lb {
        let dir = TempDir::new("haproxy");
        let port = free_port();
        let cfg = render_example("haproxy.cfg", &format!("127.0.0.1:{port}"), replicas);
        let path = dir.dir().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let mut cmd = Command::new(system_bin("haproxy"));
        cmd.arg("-db").arg("-f").arg(&path);
        // HAProxy logs to stderr (see the config's global section).
        Lb::start("haproxy", cmd, port, None, dir)
    }

    fn start(
        name: &'static str,
        mut cmd: Command,
        port: u16,
        log: Option<PathBuf>,
        dir: TempDir,
    ) -> Lb {
        let log_file = std::fs::File::create(dir.dir().join("stderr.log")).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = cmd.spawn().expect("start the load balancer");
        let mut lb = Lb {
            child: Some(child),
            name,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(lb.addr).is_err() {
            if let Some(status) = lb.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("load balancer exited at startup ({status}):\n{}", lb.logs());
            }
            assert!(
                Instant::now() < deadline,
                "load balancer not listening:\n{}",
                lb.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        lb
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Its error log and stderr.
    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "{}{}",
            self.log.as_deref().map(read).unwrap_or_default(),
            read(&self.dir.dir().join("stderr.log"))
        )
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
