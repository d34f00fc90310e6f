//! Regenerates `sandbox/seccomp/<arch>/<profile>.json` from `sandbox/seccomp/source.toml`.
//!
//! Run `cargo run --example gen-seccomp` after editing the source list; a unit test fails
//! while the checked-in files differ from what this writes.

use std::path::Path;

use mcp_warden::sandbox::seccomp::{
    ARCHES, SHIPPED_FILTERS, Source, arch_from_name, generate, render,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox/seccomp");
    let source = Source::parse(&std::fs::read_to_string(root.join("source.toml"))?)?;
    for arch_name in ARCHES {
        let arch = arch_from_name(arch_name)?;
        std::fs::create_dir_all(root.join(arch_name))?;
        for profile in SHIPPED_FILTERS {
            let path = root.join(arch_name).join(format!("{profile}.json"));
            std::fs::write(&path, render(&generate(&source, profile, arch)?))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
