//! `mcp-warden install DIR`: the init-container injection step (copy the binary into a
//! shared volume without a shell).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::TempDir;
use crate::support::warden_bin;

#[test]
fn install_copies_a_runnable_binary_into_the_directory() {
    let dir = TempDir::new("install");
    let target_dir = dir.dir().join("warden");
    let out = Command::new(warden_bin())
        .arg("install")
        .arg(&target_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let copy = target_dir.join("mcp-warden");
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(!target_dir.join(".mcp-warden.partial").exists());
    let version = Command::new(&copy).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("mcp-warden {}", env!("CARGO_PKG_VERSION"))
    );
    // Installing again replaces it in place.
    let again = Command::new(warden_bin())
        .arg("install")
        .arg(&target_dir)
        .status()
        .unwrap();
    assert!(again.success());
}
