//! The command itself under the sandbox: version-manager shims (pyenv, asdf, volta, …) run
//! the interpreter they stand for without opening the home directory, and a command or
//! interpreter the sandbox refuses is named at startup with the flag that allows it.

use serde_json::json;

use super::sandbox::{landlock_or_skip, probe, probe_bin, serve_or_exit};
use crate::support::http::{Mcp, text};
use crate::support::{TempDir, Warden, repo, warden_bin};

fn write(path: &std::path::Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// A pyenv installation under `home`, laid out as pyenv lays it out, whose "python3"
/// 9.9.9 is the probe. Its `libexec/pyenv` does what pyenv's does for `exec`: pick the
/// version and exec that interpreter.
fn fake_pyenv(home: &std::path::Path) -> std::path::PathBuf {
    let root = home.join(".pyenv");
    let shim = root.join("shims/python3");
    write(
        &shim,
        &format!(
            "#!/usr/bin/env bash\nset -e\n[ -n \"$PYENV_DEBUG\" ] && set -x\n\nprogram=\"${{0##*/}}\"\n\nexport PYENV_ROOT=\"{root}\"\nexec \"{root}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
            root = root.display()
        ),
        0o755,
    );
    write(
        &root.join("libexec/pyenv"),
        "#!/usr/bin/env bash\nset -e\nshift\nprogram=\"$1\"; shift\nversion=$(cat \"$PYENV_ROOT/version\")\nexec \"$PYENV_ROOT/versions/$version/bin/$program\" \"$@\"\n",
        0o755,
    );
    write(&root.join("version"), "9.9.9\n", 0o644);
    let interpreter = root.join("versions/9.9.9/bin/python3");
    std::fs::create_dir_all(interpreter.parent().unwrap()).unwrap();
    std::fs::copy(probe_bin(), &interpreter).unwrap();
    for d in [home, &root, &root.join("shims"), &root.join("versions")] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    shim
}

#[tokio::test]
async fn a_pyenv_shim_runs_its_interpreter_without_opening_the_home_directory() {
    let home = TempDir::new("pyenv-home");
    let shim = fake_pyenv(home.dir());
    let key = home.path(".ssh/id_ed25519");
    write(&key, "PRIVATE KEY", 0o600);
    let project = home.path("project");
    write(&project.join("server.py"), "# the server", 0o644);
    std::fs::set_permissions(
        &project,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // Without a sandbox the shim works: the layout is pyenv's.
    let path = format!("{}:/usr/bin:/bin", shim.parent().unwrap().display());
    let home_s = home.dir().display().to_string();
    let start = |profile: &str| {
        Warden::builder(vec!["python3".into(), "server.py".into()])
            .env("PATH", &path)
            .env("HOME", &home_s)
            .args([
                "--cwd",
                &project.display().to_string(),
                "--sandbox",
                profile,
            ])
            .start()
    };
    let base = probe(&start("none"), &["cmdline".into()]).await;
    assert!(base["cmdline"].starts_with("ALLOWED"), "{base:?}");
    // Under the default sandbox: the real interpreter, read-only, and nothing else of the
    // home directory.
    let w = start("default");
    let logs = w.logs();
    let interpreter = home.path(".pyenv/versions/9.9.9/bin/python3");
    assert!(
        logs.contains("pyenv shim") && logs.contains(&interpreter.display().to_string()),
        "{logs}"
    );
    let got = probe(
        &w,
        &[
            "cmdline".into(),
            "env".into(),
            format!("read_file:{}", key.display()),
            format!("list_dir:{}", home.dir().display()),
            format!("list_dir:{}", home.path(".pyenv").display()),
            format!(
                "write_path:{}",
                home.path(".pyenv/versions/9.9.9/planted").display()
            ),
        ],
    )
    .await;
    // argv[0] is the interpreter's path, as `pyenv exec` runs it, and its bin dir comes
    // first on PATH, so what it starts resolves the same way.
    assert!(
        got["cmdline"].starts_with(&format!("ALLOWED: {} server.py", interpreter.display())),
        "{got:?}"
    );
    assert!(
        got["env"].contains(&format!(
            "PATH={}:",
            home.path(".pyenv/versions/9.9.9/bin").display()
        )),
        "{got:?}"
    );
    if landlock_or_skip(&w, 1, "the home directory behind a shim") {
        assert_eq!(
            got[&format!("read_file:{}", key.display())],
            "DENIED EACCES"
        );
        assert_eq!(
            got[&format!("list_dir:{}", home.dir().display())],
            "DENIED EACCES"
        );
        assert_eq!(
            got[&format!("list_dir:{}", home.path(".pyenv").display())],
            "DENIED EACCES"
        );
        assert!(
            got[&format!(
                "write_path:{}",
                home.path(".pyenv/versions/9.9.9/planted").display()
            )]
                .starts_with("DENIED"),
            "{got:?}"
        );
    }
}

#[tokio::test]
async fn python3_from_this_machines_path_just_works() {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("python3"))
        .find(|p| p.is_file());
    let Some(python3) = found else {
        eprintln!("SKIPPED: no python3 on PATH");
        return;
    };
    let shim = std::fs::read_to_string(&python3).unwrap_or_default();
    if !shim.contains("pyenv") {
        eprintln!(
            "SKIPPED: python3 here ({}) is not a pyenv shim",
            python3.display()
        );
        return;
    }
    let script = repo().join("tests/data/stdio_echo.py");
    let w = Warden::start(vec!["python3".into(), script.display().to_string()]);
    let mut m = Mcp::new(w.mcp_url());
    let init = m.initialize().await;
    assert!(
        init["result"]["serverInfo"].is_object(),
        "{init}\n{}",
        w.logs()
    );
    let r = m
        .call_tool(json!(1), "echo", json!({"message": "hello"}))
        .await;
    let out = text(&r);
    assert!(out.starts_with("hello from /"), "{out}");
    assert!(!out.contains("/shims/"), "the shim itself ran: {out}");
}

#[tokio::test]
async fn a_refused_command_or_interpreter_is_named_with_the_flag_that_allows_it() {
    // A script whose interpreter lives where the sandbox does not look.
    let tools = TempDir::new("interp-tools");
    let app = TempDir::new("interp-app");
    for d in [tools.dir(), app.dir()] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let interpreter = tools.path("runtime/interp");
    std::fs::create_dir_all(interpreter.parent().unwrap()).unwrap();
    std::fs::copy(probe_bin(), &interpreter).unwrap();
    std::fs::set_permissions(
        interpreter.parent().unwrap(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let server = app.path("server");
    write(&server, &format!("#!{}\n", interpreter.display()), 0o755);
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(warden_bin());
        cmd.args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
            .args(extra)
            .arg("--")
            .arg(&server);
        serve_or_exit(cmd)
    };
    let (code, stderr) = run(&[]);
    let w = Warden::start(vec![probe_bin()]);
    if !landlock_or_skip(&w, 1, "a refused interpreter") {
        return;
    }
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} (the interpreter of {})",
            interpreter.display(),
            server.display()
        )) && stderr.contains(&format!(
            "--sandbox-read {}",
            interpreter.parent().unwrap().display()
        )),
        "{stderr}"
    );
    // With the flag it names, the server runs.
    let dir = interpreter.parent().unwrap().display().to_string();
    let (code, stderr) = run(&["--sandbox-read", &dir]);
    assert_eq!(code, None, "{stderr}");
    // A profile that does not let the server read its own command.
    let profile = tools.path("bare.toml");
    let text = std::fs::read_to_string(repo().join("sandbox/default.toml"))
        .unwrap()
        .replace("\"{command_dirs}\", ", "");
    std::fs::write(&profile, text).unwrap();
    let (code, stderr) = run(&["--sandbox", &profile.display().to_string()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{} (the command)", server.display()))
            && stderr.contains(&format!("--sandbox-read {}", app.dir().display())),
        "{stderr}"
    );
}
