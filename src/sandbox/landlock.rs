//! Landlock: building the ruleset of a [`LandlockPlan`] (before the helper forks), reading
//! the kernel's ABI, and the startup check that no sidecar secret lies under a path the
//! server may read. Enforcing (`restrict_self`) happens in `exec.rs`.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use serde::{Deserialize, Serialize};

use super::profile::{LandlockPlan, LandlockScope};

/// The ABI the rulesets are written for: filesystem rights up to ioctl on devices (5) and
/// the signal/abstract-socket scopes (6). Newer kernels enforce it fully; older ones
/// partially (reported, and refused by `required` profiles).
const TARGET_ABI: ABI = ABI::V6;

/// Why a ruleset could not be built.
#[derive(Debug, thiserror::Error)]
#[error("landlock: {0}")]
pub struct LandlockError(String);

/// What Landlock enforced for the server, as reported by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    FullyEnforced,
    PartiallyEnforced,
    NotEnforced,
    /// The profile does not use Landlock.
    Off,
}

impl From<RulesetStatus> for Enforcement {
    fn from(s: RulesetStatus) -> Enforcement {
        match s {
            RulesetStatus::FullyEnforced => Enforcement::FullyEnforced,
            RulesetStatus::PartiallyEnforced => Enforcement::PartiallyEnforced,
            RulesetStatus::NotEnforced => Enforcement::NotEnforced,
        }
    }
}

/// Builds the ruleset: read (and execute) under `read`, everything under `read_write`,
/// the requested scopes, and TCP bind/connect denied when asked. Paths that do not exist are
/// skipped (e.g. `/lib64` on aarch64). In best-effort mode features the kernel lacks are
/// dropped; `restrict_self` then reports partial or no enforcement.
pub fn build_ruleset(plan: &LandlockPlan) -> Result<RulesetCreated, LandlockError> {
    let err = |e: &dyn std::fmt::Display| LandlockError(e.to_string());
    let abi = TARGET_ABI;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)
        .map_err(|e| err(&e))?;
    if plan.deny_tcp {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|e| err(&e))?;
    }
    for scope in &plan.scopes {
        ruleset = ruleset
            .scope(match scope {
                LandlockScope::Signal => Scope::Signal,
                LandlockScope::AbstractUnixSocket => Scope::AbstractUnixSocket,
            })
            .map_err(|e| err(&e))?;
    }
    let mut created = ruleset.create().map_err(|e| err(&e))?;
    for (paths, access) in [(&plan.read, read), (&plan.read_write, all)] {
        for path in paths {
            let Ok(fd) = PathFd::new(path) else {
                continue; // missing: nothing to allow
            };
            // Directory-only rights on a file are an error: keep the file subset.
            let access = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(abi)
            };
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|e| err(&e))?;
        }
    }
    Ok(created)
}

/// A sidecar file the server could read under the profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {file} lies under {under}, which the sandboxed server may read: move it, or narrow the profile"
)]
pub struct ExposedFile {
    pub what: String,
    pub file: PathBuf,
    pub under: PathBuf,
}

/// Refuses when any of the sidecar's own secret or config files lies under a path the
/// server may read or write. Landlock rules only add access, so a secret below an allowed
/// directory cannot be carved out. Paths are compared after resolving symlinks.
pub fn check_not_exposed(
    files: &[(String, PathBuf)],
    readable: &[PathBuf],
) -> Result<(), ExposedFile> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let readable: Vec<(PathBuf, PathBuf)> =
        readable.iter().map(|r| (r.clone(), canon(r))).collect();
    for (what, file) in files {
        let real = canon(file);
        for (shown, dir) in &readable {
            if real.starts_with(dir) || file.starts_with(shown) {
                return Err(ExposedFile {
                    what: what.clone(),
                    file: file.clone(),
                    under: shown.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_under_readable_paths_are_found() {
        let readable = vec![PathBuf::from("/etc"), PathBuf::from("/usr")];
        let ok = vec![(
            "--env-file API_KEY".to_owned(),
            PathBuf::from("/run/secrets/key"),
        )];
        assert!(check_not_exposed(&ok, &readable).is_ok());
        let bad = vec![(
            "--env-file API_KEY".to_owned(),
            PathBuf::from("/etc/app/key"),
        )];
        let e = check_not_exposed(&bad, &readable).unwrap_err();
        assert_eq!(e.under, PathBuf::from("/etc"));
        assert!(e.to_string().contains("/etc/app/key"));
        // A sibling with a shared prefix is not "under".
        let sibling = vec![("x".to_owned(), PathBuf::from("/etcetera/key"))];
        assert!(check_not_exposed(&sibling, &readable).is_ok());
    }

    #[test]
    fn symlinks_into_readable_dirs_are_found() {
        let tmp = std::env::temp_dir().join(format!("mcpw-ll-{}", std::process::id()));
        let open = tmp.join("open");
        std::fs::create_dir_all(&open).unwrap();
        std::fs::write(open.join("key"), "k").unwrap();
        let link = tmp.join("link-to-key");
        std::os::unix::fs::symlink(open.join("key"), &link).unwrap();
        let e = check_not_exposed(&[("key".into(), link)], std::slice::from_ref(&open));
        assert!(e.is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn rulesets_build_and_skip_missing_paths() {
        let plan = LandlockPlan {
            required: false,
            read: vec!["/usr".into(), "/no/such/dir".into(), "/etc/hostname".into()],
            read_write: vec!["/dev/null".into()],
            scopes: vec![LandlockScope::Signal, LandlockScope::AbstractUnixSocket],
            deny_tcp: true,
        };
        // Building never restricts this process; it only creates a ruleset fd (or a dummy
        // ruleset where Landlock is unavailable).
        assert!(build_ruleset(&plan).is_ok());
    }
}
