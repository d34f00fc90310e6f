//! What running a server command touches besides its own file: the interpreter named by a
//! `#!` line. The sandbox must let the server reach it, and when it cannot, the error must
//! name it.

use std::ffi::OsStr;
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
