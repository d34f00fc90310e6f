//! What the server may read besides the system: the command's install prefix and its script
//! arguments' packages, never their parent directories wholesale, and never a home
//! directory, `/tmp`, `/` or the work root, whichever way they would be added.

use super::sandbox::{landlock_or_skip, probe, probe_bin, serve_or_exit};
use crate::support::{TempDir, Warden, warden_bin};

fn write(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn open_dir(dir: &std::path::Path) {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Files placed directly in /tmp, removed when dropped.
struct InTmp(Vec<std::path::PathBuf>);

impl Drop for InTmp {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[tokio::test]
async fn a_script_in_tmp_opens_itself_not_tmp() {
    let tag = std::process::id();
    let script = std::path::PathBuf::from(format!("/tmp/mcpw-script-{tag}.py"));
    let sibling = std::path::PathBuf::from(format!("/tmp/mcpw-sibling-{tag}"));
    let _cleanup = InTmp(vec![script.clone(), sibling.clone()]);
    write(&script, "print('server')\n");
    write(&sibling, "another user's file");
    let w = Warden::start(vec![probe_bin(), script.display().to_string()]);
    if !landlock_or_skip(&w, 1, "script arguments") {
        return;
    }
    let got = probe(
        &w,
        &[
            format!("read_file:{}", script.display()),
            format!("read_file:{}", sibling.display()),
            "list_dir:/tmp".into(),
        ],
    )
    .await;
    assert!(
        got[&format!("read_file:{}", script.display())].starts_with("ALLOWED"),
        "{got:?}"
    );
    assert_eq!(
        got[&format!("read_file:{}", sibling.display())],
        "DENIED EACCES",
        "{got:?}"
    );
    assert_eq!(got["list_dir:/tmp"], "DENIED EACCES", "{got:?}");
}

#[tokio::test]
async fn a_script_in_a_home_directory_opens_its_package_not_the_home() {
    let home = TempDir::new("home");
    open_dir(home.dir());
    let ssh_key = home.path(".ssh/id_ed25519");
    write(&ssh_key, "PRIVATE KEY");
    let loose = home.path("server.js");
    write(&loose, "// a script right in the home directory");
    let package = home.path("proj");
    write(&package.join("package.json"), "{}");
    let entry = package.join("src/server.js");
    write(&entry, "// the entry point");
    let util = package.join("lib/util.js");
    write(&util, "// a module of the same package");
    for d in [
        package.as_path(),
        &package.join("src"),
        &package.join("lib"),
    ] {
        open_dir(d);
    }
    // `node ./server.js` from the home directory, as a newcomer would run it.
    let attacks = vec![
        format!("read_file:{}", ssh_key.display()),
        format!("list_dir:{}", home.dir().display()),
        format!("read_file:{}", loose.display()),
    ];
    let w = Warden::builder(vec![probe_bin(), "./server.js".into()])
        .env("HOME", home.dir().display().to_string())
        .via(["env", "-C", &home.dir().display().to_string()])
        .start();
    if !landlock_or_skip(&w, 1, "script arguments") {
        return;
    }
    let got = probe(&w, &attacks).await;
    assert_eq!(got[&attacks[0]], "DENIED EACCES", "{got:?}");
    assert_eq!(got[&attacks[1]], "DENIED EACCES", "{got:?}");
    assert!(got[&attacks[2]].starts_with("ALLOWED"), "{got:?}");
    // A script inside a package: the package is readable, the home around it is not.
    let w = Warden::builder(vec![probe_bin(), entry.display().to_string()])
        .env("HOME", home.dir().display().to_string())
        .start();
    let attacks = vec![
        format!("read_file:{}", util.display()),
        format!("read_file:{}", ssh_key.display()),
        format!("read_file:{}", loose.display()),
    ];
    let got = probe(&w, &attacks).await;
    assert!(got[&attacks[0]].starts_with("ALLOWED"), "{got:?}");
    assert_eq!(got[&attacks[1]], "DENIED EACCES", "{got:?}");
    assert_eq!(got[&attacks[2]], "DENIED EACCES", "{got:?}");
}

fn start(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(warden_bin());
    cmd.args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--")
        .arg(probe_bin())
        .envs(env.iter().copied());
    serve_or_exit(cmd)
}

#[tokio::test]
async fn a_readable_path_over_a_home_tmp_root_or_the_work_root_stops_the_start() {
    let home = TempDir::new("home-cwd");
    let home_s = home.dir().display().to_string();
    let work = TempDir::new("work-parent");
    let work_root = work.path("sessions");
    let work_root_s = work_root.display().to_string();
    let work_s = work.dir().display().to_string();
    // Flags, environment, what the error names, and the flag it blames.
    type Refused<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let refused: Vec<Refused> = vec![
        (
            vec!["--sandbox-read", "/tmp"],
            vec![],
            "/tmp",
            "--sandbox-read",
        ),
        (
            vec!["--sandbox-read", "/"],
            vec![],
            "the whole file system",
            "--sandbox-read",
        ),
        (
            vec!["--sandbox-write", "/home"],
            vec![],
            "home",
            "--sandbox-write",
        ),
        (
            vec!["--cwd", &home_s],
            vec![("HOME", home_s.as_str())],
            "home",
            "--cwd",
        ),
        (
            vec!["--work-root", &work_root_s, "--sandbox-read", &work_s],
            vec![],
            "work dirs",
            "--sandbox-read",
        ),
    ];
    for (args, env, what, flag) in refused {
        let (code, stderr) = start(&args, &env);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(what) && stderr.contains(flag) && !stderr.contains("is serving"),
            "{args:?}: {stderr}"
        );
    }
    // A directory inside the home is fine.
    let project = home.path("project");
    std::fs::create_dir_all(&project).unwrap();
    let (code, stderr) = start(
        &["--sandbox-read", &project.display().to_string()],
        &[("HOME", home_s.as_str())],
    );
    assert_eq!(code, None, "{stderr}");
}

/// A self-signed certificate and its key, PEM.
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn every_file_the_sidecar_keeps_to_itself_is_checked_for_exposure() {
    // `open` is readable by the server (--sandbox-read); `closed` is not.
    let open = TempDir::new("exposed-open");
    let closed = TempDir::new("exposed-closed");
    let key = "0123456789abcdef0123456789abcdef\n";
    let (cert, tls_key) = self_signed();
    let n = std::cell::Cell::new(0);
    let config = |dir: &TempDir, output: &str, hmac_key: &str| {
        n.set(n.get() + 1);
        let path = dir.path(&format!("warden-{}.toml", n.get()));
        write(
            &path,
            &format!("[audit]\noutput = \"{output}\"\nhmac_key_file = \"{hmac_key}\"\n"),
        );
        path.display().to_string()
    };
    write(&closed.path("audit-key"), key);
    write(&open.path("audit-key"), key);
    write(&closed.path("cert.pem"), &cert);
    write(&closed.path("key.pem"), &tls_key);
    write(&open.path("cert.pem"), &cert);
    let open_dir = open.dir().display().to_string();
    let read_open = ["--sandbox-read", open_dir.as_str()];
    let cases: Vec<(Vec<String>, &str)> = vec![
        // The config file itself.
        (
            vec![
                "--config".into(),
                config(
                    &open,
                    &closed.path("audit.jsonl").display().to_string(),
                    &closed.path("audit-key").display().to_string(),
                ),
            ],
            "--config",
        ),
        // The audit HMAC key.
        (
            vec![
                "--config".into(),
                config(
                    &closed,
                    &closed.path("audit.jsonl").display().to_string(),
                    &open.path("audit-key").display().to_string(),
                ),
            ],
            "[audit] hmac_key_file",
        ),
        // The audit log.
        (
            vec![
                "--config".into(),
                config(
                    &closed,
                    &open.path("audit.jsonl").display().to_string(),
                    &closed.path("audit-key").display().to_string(),
                ),
            ],
            "[audit] output",
        ),
        // The TLS certificate (the key is its pair).
        (
            vec![
                "--tls-cert".into(),
                open.path("cert.pem").display().to_string(),
                "--tls-key".into(),
                closed.path("key.pem").display().to_string(),
            ],
            "--tls-cert",
        ),
    ];
    for (args, flag) in cases {
        let mut all: Vec<&str> = read_open.to_vec();
        all.extend(args.iter().map(String::as_str));
        let (code, stderr) = start(&all, &[]);
        assert_eq!(code, Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("which the sandboxed server may read"),
            "{flag}: {stderr}"
        );
    }
    // All of them out of reach: the sidecar starts.
    let ok = config(
        &closed,
        &closed.path("audit.jsonl").display().to_string(),
        &closed.path("audit-key").display().to_string(),
    );
    let (code, stderr) = start(&[read_open[0], read_open[1], "--config", &ok], &[]);
    assert_eq!(code, None, "{stderr}");
}
