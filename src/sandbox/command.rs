//! What running a server command touches besides its own file: the interpreter named by a
//! `#!` line, and for a version manager's shim the interpreter the shim stands for. The
//! sandbox must let the server reach it, and when it cannot, the error must name it.
//!
//! Shims (pyenv, rbenv, nodenv and their kin, asdf, volta) are small programs in a
//! directory of the home that find the real interpreter by reading more of the home (the
//! manager's scripts, version files) at every start. Under the sandbox none of that is
//! readable, and opening the home directory would defeat the sandbox. So the sidecar does
//! what the shim would do, once, at spawn: it picks the version the same way and runs that
//! interpreter directly; only its install prefix becomes readable.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The interpreter of a script (`#!/usr/bin/python3`, or `#!/usr/bin/env node` with `node`
/// looked up in `path_var`); `None` for a binary, an unreadable file or an interpreter that
/// cannot be found.
pub fn interpreter(program: &Path, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_ascii_whitespace();
    let first = PathBuf::from(words.next()?);
    if first.file_name() != Some(OsStr::new("env")) {
        return Some(first);
    }
    // `env [-S] [-flags] NAME ...`: the first word that is not an option.
    let name = words.find(|w| !w.starts_with('-') && !w.contains('='))?;
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    find_in_path(name, path_var?)
}

/// A shim resolved to the interpreter it would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shim {
    /// `pyenv`, `rbenv`, `asdf`, `volta`, …
    pub manager: String,
    /// The shim as found on `PATH`.
    pub shim: PathBuf,
    /// The interpreter it stands for.
    pub program: PathBuf,
}

impl Shim {
    /// The interpreter's directory: first on the server's `PATH`, as the manager's own
    /// `exec` puts it, so that what the server starts (`pip`, `npm`) resolves the same way.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.program.parent()
    }
}

/// What a shim's version lookup reads: the sidecar's environment (`PYENV_VERSION`, …) and
/// the directory the server starts in (version files are searched from there upwards).
#[derive(Clone, Copy)]
pub struct ShimContext<'a> {
    pub env: &'a dyn Fn(&str) -> Option<OsString>,
    pub cwd: &'a Path,
}

impl std::fmt::Debug for ShimContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimContext")
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// Largest shim read (real ones are a few hundred bytes).
const MAX_SHIM_BYTES: u64 = 16 * 1024;

/// The interpreter `program` stands for, when it is a shim of a known version manager and
/// the version it selects is installed; `None` otherwise (the program then runs as it is).
pub fn resolve_shim(program: &Path, ctx: ShimContext<'_>) -> Option<Shim> {
    let name = program.file_name()?.to_str()?;
    let found = |manager: &str, real: PathBuf| {
        is_executable(&real).then(|| Shim {
            manager: manager.to_owned(),
            shim: program.to_owned(),
            program: real,
        })
    };
    if let Some((manager, real)) = volta(program, name, ctx) {
        return found(manager, real);
    }
    let mut text = String::new();
    std::fs::File::open(program)
        .ok()?
        .take(MAX_SHIM_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    if !text.starts_with("#!") {
        return None;
    }
    if let Some((manager, real)) = rbenv_style(program, name, &text, ctx) {
        return found(&manager, real);
    }
    let real = asdf(program, name, &text, ctx)?;
    found("asdf", real)
}

/// The version file and environment variable of each rbenv-style manager.
const RBENV_STYLE: &[(&str, &str)] = &[
    ("pyenv", ".python-version"),
    ("rbenv", ".ruby-version"),
    ("nodenv", ".node-version"),
    ("goenv", ".go-version"),
    ("plenv", ".perl-version"),
    ("jenv", ".java-version"),
    ("phpenv", ".php-version"),
];

/// pyenv, rbenv, nodenv, …: the shim ends in `exec "<ROOT>/libexec/<TOOL>" exec "$program"`.
/// The version comes from `<TOOL>_VERSION`, else the nearest `.<lang>-version` file from the
/// start directory up, else `<ROOT>/version`; several may be listed (the first that has the
/// command wins); `system` means the next one on `PATH` outside the manager.
fn rbenv_style(
    program: &Path,
    name: &str,
    text: &str,
    ctx: ShimContext<'_>,
) -> Option<(String, PathBuf)> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("exec \"") && l.contains("/libexec/"))?;
    let target = line.strip_prefix("exec \"")?.split('"').next()?;
    let (root, tool) = target.rsplit_once("/libexec/")?;
    let (_, version_file) = RBENV_STYLE.iter().find(|(t, _)| *t == tool)?;
    let root = PathBuf::from(root);
    let selected = (ctx.env)(&format!("{}_VERSION", tool.to_ascii_uppercase()))
        .and_then(|v| v.into_string().ok())
        .or_else(|| nearest_file(ctx.cwd, version_file))
        .or_else(|| std::fs::read_to_string(root.join("version")).ok())
        .unwrap_or_else(|| "system".into());
    for version in versions(&selected) {
        let real = if version == "system" {
            system(name, program, &root, ctx)
        } else {
            installed(&root.join("versions"), version).map(|v| v.join("bin").join(name))
        };
        if let Some(real) = real.filter(|r| is_executable(r)) {
            return Some((tool.to_owned(), real));
        }
    }
    None
}

/// asdf: the shim lists `# asdf-plugin: <plugin> <version>` lines and runs
/// `asdf exec "<cmd>"`. The version comes from `ASDF_<PLUGIN>_VERSION`, else the nearest
/// `.tool-versions` from the start directory up, else `$HOME/.tool-versions`; installs live
/// in `<data dir>/installs/<plugin>/<version>/bin` (the data dir holds `shims/`).
fn asdf(program: &Path, name: &str, text: &str, ctx: ShimContext<'_>) -> Option<PathBuf> {
    if !text.lines().any(|l| l.contains("asdf exec")) {
        return None;
    }
    let data = program.parent()?.parent()?;
    let mut plugins: Vec<&str> = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.trim().strip_prefix("# asdf-plugin:")
            && let Some(plugin) = rest.split_whitespace().next()
            && !plugins.contains(&plugin)
        {
            plugins.push(plugin);
        }
    }
    let home_versions = (ctx.env)("HOME")
        .map(PathBuf::from)
        .and_then(|h| std::fs::read_to_string(h.join(".tool-versions")).ok());
    for plugin in plugins {
        let var = format!(
            "ASDF_{}_VERSION",
            plugin.to_ascii_uppercase().replace('-', "_")
        );
        let from_file = |text: &str| {
            text.lines()
                .map(|l| l.split('#').next().unwrap_or(""))
                .find_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some(plugin)).then(|| w.collect::<Vec<_>>().join(" "))
                })
        };
        let selected = (ctx.env)(&var)
            .and_then(|v| v.into_string().ok())
            .or_else(|| nearest_file_matching(ctx.cwd, ".tool-versions", &from_file))
            .or_else(|| home_versions.as_deref().and_then(from_file));
        let Some(selected) = selected else { continue };
        for version in versions(&selected) {
            let real = if version == "system" {
                system(name, program, data, ctx)
            } else {
                Some(
                    data.join("installs")
                        .join(plugin)
                        .join(version)
                        .join("bin")
                        .join(name),
                )
            };
            if let Some(real) = real.filter(|r| is_executable(r)) {
                return Some(real);
            }
        }
    }
    None
}

/// volta: `<VOLTA_HOME>/bin/{node,npm,npx}` are copies of (or links to) `volta-shim`. The
/// node version comes from the nearest `package.json` with a `volta.node` pin from the
/// start directory up, else the default toolchain (`tools/user/platform.json`); images live
/// in `tools/image/node/<version>` (and `tools/image/npm/<version>` for a pinned npm).
fn volta(program: &Path, name: &str, ctx: ShimContext<'_>) -> Option<(&'static str, PathBuf)> {
    if !["node", "npm", "npx"].contains(&name) {
        return None;
    }
    let bin = program.parent()?;
    let home = bin.parent()?;
    let is_shim = std::fs::canonicalize(program)
        .ok()
        .is_some_and(|r| r.file_name() == Some(OsStr::new("volta-shim")))
        || bin.join("volta-shim").is_file();
    if !is_shim || !home.join("tools").is_dir() {
        return None;
    }
    let pinned = |text: &str| -> Option<(String, Option<String>)> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let node = v["volta"]["node"].as_str()?.to_owned();
        Some((node, v["volta"]["npm"].as_str().map(str::to_owned)))
    };
    let (node, npm) = nearest_file_matching(ctx.cwd, "package.json", &pinned).or_else(|| {
        let text = std::fs::read_to_string(home.join("tools/user/platform.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        Some((
            v["node"]["runtime"].as_str()?.to_owned(),
            v["node"]["npm"].as_str().map(str::to_owned),
        ))
    })?;
    let image = home.join("tools/image");
    let real = match (name, npm) {
        ("node", _) | (_, None) => image.join("node").join(&node).join("bin").join(name),
        (_, Some(npm)) => image.join("npm").join(npm).join("bin").join(name),
    };
    Some(("volta", real))
}

/// Versions as a version file or variable lists them: whitespace- or `:`-separated, `#`
/// comments ignored.
fn versions(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == ':'))
        .filter(|v| !v.is_empty())
}

/// `dir/<version>`, or when only a prefix is given (`3.11`), the newest installed version
/// it starts (`3.11.9` before `3.11.10`, compared number by number).
fn installed(dir: &Path, version: &str) -> Option<PathBuf> {
    if version.contains('/') || version == ".." {
        return None;
    }
    let exact = dir.join(version);
    if exact.is_dir() {
        return Some(exact);
    }
    let key = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!("{version}.")))
        .max_by_key(|n| key(n))
        .map(|n| dir.join(n))
}

/// The content of the nearest `name` from `start` up to `/`.
fn nearest_file(start: &Path, name: &str) -> Option<String> {
    nearest_file_matching(start, name, &|t| Some(t.to_owned()))
}

/// The first `pick` answer of the files called `name` from `start` up to `/`.
fn nearest_file_matching<T>(
    start: &Path,
    name: &str,
    pick: &dyn Fn(&str) -> Option<T>,
) -> Option<T> {
    start.ancestors().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join(name)).ok()?;
        pick(&text)
    })
}

/// The next `name` on `PATH` that is not inside the manager's directory (its "system"
/// version).
fn system(name: &str, shim: &Path, root: &Path, ctx: ShimContext<'_>) -> Option<PathBuf> {
    let path = (ctx.env)("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| !d.starts_with(root))
        .map(|d| d.join(name))
        .find(|p| p != shim && is_executable(p))
}

/// The first executable `name` in the directories of `path_var`.
pub fn find_in_path(name: &str, path_var: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &Path, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mcpw-shim-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn pyenv_shims_follow_the_variable_then_the_nearest_file_then_the_global_version() {
        let home = tmp("pyenv");
        let root = home.join(".pyenv");
        let shim = root.join("shims/python3");
        file(
            &shim,
            &format!(
                "#!/usr/bin/env bash\nset -e\nprogram=\"${{0##*/}}\"\nexport PYENV_ROOT=\"{r}\"\nexec \"{r}/libexec/pyenv\" exec \"$program\" \"$@\"\n",
                r = root.display()
            ),
            0o755,
        );
        for v in ["3.11.9", "3.11.10", "3.12.1"] {
            file(&root.join(format!("versions/{v}/bin/python3")), "", 0o755);
        }
        file(&root.join("version"), "3.12.1\n", 0o644);
        let project = home.join("proj/src");
        std::fs::create_dir_all(&project).unwrap();
        let env = vars(&[]);
        let at = |cwd: &Path, env: &dyn Fn(&str) -> Option<OsString>| {
            resolve_shim(&shim, ShimContext { env, cwd })
                .map(|s| s.program.strip_prefix(&root).unwrap().display().to_string())
        };
        assert_eq!(at(&project, &env).unwrap(), "versions/3.12.1/bin/python3");
        // A version file above the start directory; a prefix picks the newest match.
        file(&home.join("proj/.python-version"), "3.11\n", 0o644);
        assert_eq!(at(&project, &env).unwrap(), "versions/3.11.10/bin/python3");
        // The variable wins; the first listed version that is installed is used.
        let env = vars(&[("PYENV_VERSION", "3.9.1:3.11.9")]);
        assert_eq!(at(&project, &env).unwrap(), "versions/3.11.9/bin/python3");
        // `system`: the next python3 on PATH outside pyenv.
        let system = home.join("usr/bin/python3");
        file(&system, "", 0o755);
        let path = format!(
            "{}:{}",
            root.join("shims").display(),
            system.parent().unwrap().display()
        );
        let env = vars(&[("PYENV_VERSION", "system"), ("PATH", &path)]);
        let s = resolve_shim(
            &shim,
            ShimContext {
                env: &env,
                cwd: &project,
            },
        )
        .unwrap();
        assert_eq!((s.manager.as_str(), s.program), ("pyenv", system));
        // Not installed: not resolved (the shim runs as it is, and fails as it would).
        let env = vars(&[("PYENV_VERSION", "2.7.18")]);
        assert!(at(&project, &env).is_none());
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn asdf_and_volta_shims_resolve_to_their_installs() {
        let home = tmp("asdf");
        let data = home.join(".asdf");
        let shim = data.join("shims/python3");
        file(
            &shim,
            "#!/usr/bin/env bash\n# asdf-plugin: python 3.11.7\n# asdf-plugin: python 3.12.1\nexec /usr/local/bin/asdf exec \"python3\" \"$@\"\n",
            0o755,
        );
        file(&data.join("installs/python/3.12.1/bin/python3"), "", 0o755);
        file(
            &home.join(".tool-versions"),
            "nodejs 20.1.0\npython 3.12.1 # global\n",
            0o644,
        );
        let home_s = home.display().to_string();
        let env = vars(&[("HOME", &home_s)]);
        let s = resolve_shim(
            &shim,
            ShimContext {
                env: &env,
                cwd: Path::new("/"),
            },
        )
        .unwrap();
        assert_eq!(s.manager, "asdf");
        assert_eq!(s.program, data.join("installs/python/3.12.1/bin/python3"));

        let volta = home.join(".volta");
        file(&volta.join("bin/volta-shim"), "\x7fELF", 0o755);
        std::os::unix::fs::symlink(volta.join("bin/volta-shim"), volta.join("bin/node")).unwrap();
        std::os::unix::fs::symlink(volta.join("bin/volta-shim"), volta.join("bin/npx")).unwrap();
        file(
            &volta.join("tools/user/platform.json"),
            r#"{"node":{"runtime":"20.11.0","npm":null}}"#,
            0o644,
        );
        file(&volta.join("tools/image/node/20.11.0/bin/node"), "", 0o755);
        file(&volta.join("tools/image/node/20.11.0/bin/npx"), "", 0o755);
        file(&volta.join("tools/image/node/18.19.0/bin/node"), "", 0o755);
        let ctx = |cwd| ShimContext { env: &env, cwd };
        let node = resolve_shim(&volta.join("bin/node"), ctx(Path::new("/"))).unwrap();
        assert_eq!(
            node.program,
            volta.join("tools/image/node/20.11.0/bin/node")
        );
        let npx = resolve_shim(&volta.join("bin/npx"), ctx(Path::new("/"))).unwrap();
        assert_eq!(npx.program, volta.join("tools/image/node/20.11.0/bin/npx"));
        // A project's pin wins over the default toolchain.
        let project = home.join("proj");
        file(
            &project.join("package.json"),
            r#"{"volta":{"node":"18.19.0"}}"#,
            0o644,
        );
        let pinned = resolve_shim(&volta.join("bin/node"), ctx(&project)).unwrap();
        assert_eq!(
            pinned.program,
            volta.join("tools/image/node/18.19.0/bin/node")
        );
        // Real interpreters are not shims.
        assert!(resolve_shim(Path::new("/bin/sh"), ctx(Path::new("/"))).is_none());
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn interpreters_are_read_from_the_first_line() {
        let dir = std::env::temp_dir().join(format!("mcpw-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let path = OsStr::new("/nonexistent:/bin:/usr/bin");
        assert_eq!(
            interpreter(&script("a", "#!/bin/sh -e\necho\n"), Some(path)),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            interpreter(&script("b", "#! /usr/bin/env -S sh -e\n"), Some(path)),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            interpreter(&script("c", "#!/usr/bin/env FOO=1 sh\n"), Some(path)),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(interpreter(&script("d", "\x7fELF..."), Some(path)), None);
        assert_eq!(
            interpreter(
                &script("e", "#!/usr/bin/env no-such-interpreter\n"),
                Some(path)
            ),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
