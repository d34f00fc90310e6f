//! The fault fixture server for the benchmarks that drive the real binary (soak, capacity),
//! built with the benchmark's own profile.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the sidecar binary (and the examples beside it) are built.
pub fn target_dir() -> PathBuf {
    // .../target/<profile>/mcp-warden
    Path::new(env!("CARGO_BIN_EXE_mcp-warden"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The fault fixture, built with the same profile as this benchmark.
pub fn fixture() -> PathBuf {
    let path = target_dir().join("examples/stdio_fixture");
    let profile = if target_dir().ends_with("debug") {
        "dev"
    } else {
        "bench"
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--profile",
            profile,
            "--example",
            "stdio_fixture",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build --example stdio_fixture");
    assert!(
        status.success() && path.exists(),
        "{} missing",
        path.display()
    );
    path
}
