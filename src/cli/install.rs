//! `mcp-warden install DIR` (the binary onto a shared volume) and `mcp-warden keygen FILE`
//! (a signing key for the sign-in server).

use std::path::Path;

use anyhow::Context;

pub(super) fn install(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let target = dir.join("mcp-warden");
    // Copy, then rename: a container starting on the volume never sees half a binary.
    let partial = dir.join(".mcp-warden.partial");
    std::fs::copy("/proc/self/exe", &partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    eprintln!("mcp-warden: installed {}", target.display());
    Ok(())
}

/// `mcp-warden keygen FILE`: a new ES256 signing key (mode 0600), for --signing-key-file.
pub(super) fn keygen(path: &Path) -> anyhow::Result<()> {
    let (key, created) = crate::auth::LocalIssuer::load_or_create("keygen", path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    if !created {
        anyhow::bail!("{} exists; not overwritten", path.display());
    }
    eprintln!(
        "mcp-warden: wrote {} (key id {})",
        path.display(),
        key.kid()
    );
    Ok(())
}
