//! A real PostgreSQL (Debian's `postgresql` package) for one test: a fresh cluster in a
//! temporary directory, listening on 127.0.0.1 only, with one database; stopped (immediate
//! shutdown) when dropped. As root, the server runs as the `postgres` user through
//! `setpriv`, which execs: the child is the server itself, so dropping stops it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

/// The newest installed PostgreSQL's binaries.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.retain(|d| d.join("initdb").exists());
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .expect("PostgreSQL is not installed: run ./scripts/setup-test-deps")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs a PostgreSQL binary, as `postgres` when we are root.
fn pg(bin: &str) -> Command {
    let path = bin_dir().join(bin);
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(path);
        c
    } else {
        Command::new(path)
    }
}

pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    password: String,
    _dir: TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = TempDir::new("pg");
        let data = dir.path("data");
        let password = format!("pw{}", std::process::id());
        std::fs::write(dir.path("pwfile"), &password).unwrap();
        if is_root() {
            let owner = nix::unistd::User::from_name("postgres")
                .unwrap()
                .expect("user postgres");
            for p in [dir.dir().to_path_buf(), dir.path("pwfile")] {
                std::os::unix::fs::chown(&p, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))
                    .unwrap();
            }
        }
        let out = pg("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "warden",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
            ])
            .arg(format!("--pwfile={}", dir.path("pwfile").display()))
            .args(["-E", "UTF8", "--no-locale", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = pg("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.dir())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut pgsql = Postgres {
            child: Some(child),
            port,
            password,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = pg("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .unwrap();
            if ready.success() {
                break;
            }
            if let Some(status) = pgsql.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("postgres exited at startup: {status}");
            }
            assert!(Instant::now() < deadline, "postgres did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = pg("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "warden",
                "warden",
            ])
            .env("PGPASSWORD", &pgsql.password)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pgsql
    }

    /// The URL mcp-warden connects with (it holds the password: pass it in the
    /// environment, never in argv).
    pub fn url(&self) -> String {
        format!(
            "postgres://warden:{}@127.0.0.1:{}/warden",
            self.password, self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGQUIT: immediate shutdown.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGQUIT,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
