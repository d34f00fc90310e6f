//! What each sandbox layer actually enforces, as measured by the helper at startup: logged,
//! exposed on readiness, and checked against what the profile requires.

use serde::{Deserialize, Serialize};

use super::landlock::Enforcement;
use super::profile::{Isolation, Namespace, Rlimit, SandboxConfig};

/// The layers as the kernel applied them to a server process (the helper's report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerReport {
    /// Seccomp programs installed by us (the container runtime's come on top).
    pub seccomp_filters: usize,
    pub x32_guard: bool,
    pub protect_sidecar: bool,
    pub landlock: Enforcement,
    /// Landlock ABI of the kernel when Landlock is available.
    pub landlock_abi: Option<i32>,
    pub no_new_privs: bool,
    pub uid: u32,
    pub gid: u32,
    /// Capability sets and bounding set emptied (root sidecar without a uid drop).
    pub capabilities_dropped: bool,
    /// Effective capabilities of the server process (hex, from /proc/self/status).
    pub cap_eff: String,
    pub rlimits: Vec<(Rlimit, u64)>,
    /// Namespaces the server got its own copy of.
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// The layers that keep the server from signalling other sessions' processes (and the
    /// sidecar's threads); empty where none does.
    #[serde(default)]
    pub signal_isolation: Vec<SignalIsolation>,
    /// No layer above does it, so the pid filter also names the sidecar's threads and
    /// refuses tkill (ENOSYS): the sidecar is protected, other sessions are not.
    #[serde(default)]
    pub sidecar_threads_guarded: bool,
    /// Why the server's command could not run under these layers (startup check only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_refused: Option<String>,
}

/// A layer that keeps one session's server from signalling processes outside its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalIsolation {
    /// The server runs as a uid no other session has (the kernel refuses signals, ptrace
    /// and `/proc` reads across uids once capabilities are gone).
    SessionUid,
    /// Landlock's signal scope (ABI 6, Linux 6.12): no signals out of the server's domain.
    LandlockScope,
    /// The server is the first process of its own PID namespace: no pid outside it can be
    /// named (and pidfds of outside processes are refused by the kernel).
    PidNamespace,
}

impl std::fmt::Display for SignalIsolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignalIsolation::SessionUid => "session_uid",
            SignalIsolation::LandlockScope => "landlock_scope",
            SignalIsolation::PidNamespace => "pid_namespace",
        })
    }
}

/// The sidecar's sandbox status: the profile, the measured layers, and the sidecar's own
/// protections. Serializes to the object shown on `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStatus {
    pub profile: String,
    /// Every layer the profile requires is in force.
    pub enforced: bool,
    pub layers: LayerReport,
    pub sidecar: SidecarProtection,
    /// Layers the profile asks for best-effort that the kernel does not (fully) enforce.
    pub degraded: Vec<String>,
}

/// Protections of the sidecar process itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarProtection {
    /// `PR_SET_DUMPABLE 0`: same-user processes cannot read its memory or environment.
    pub non_dumpable: bool,
    /// Orphans of a server tree are re-parented to the sidecar, which kills them.
    pub subreaper: bool,
}

/// What is missing when no layer keeps sessions apart, and the remedies.
const NO_ISOLATION: &str = "no uid per session (the sidecar is not root), no Landlock signal scope (needs Linux 6.12 and a runtime that allows Landlock) and no PID namespace (user namespaces are refused here): run the sidecar as root, on Linux 6.12 or later, or where unprivileged user namespaces are allowed";

/// A layer the profile requires is not in force: the sidecar refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sandbox profile {profile}: {layer} is required but {found}; refusing to start")]
pub struct NotEnforced {
    pub profile: String,
    pub layer: &'static str,
    pub found: String,
}

impl SandboxStatus {
    /// Compares a measured report with what `config` requires. `injects_secrets`: sessions
    /// get secret values in their environment; then Landlock is required whenever the profile
    /// uses it at all, because it is what keeps one session's server from reading another's
    /// `/proc/<pid>/environ` (same user, both dumpable).
    pub fn evaluate(
        config: &SandboxConfig,
        layers: LayerReport,
        sidecar: SidecarProtection,
        injects_secrets: bool,
    ) -> Result<SandboxStatus, NotEnforced> {
        use super::profile::LandlockMode;
        let fail = |layer, found: String| NotEnforced {
            profile: config.name.clone(),
            layer,
            found,
        };
        let s = &config.seccomp;
        let want_filters = s.programs.len()
            + usize::from(s.x32_guard && cfg!(target_arch = "x86_64"))
            + usize::from(s.protect_sidecar);
        if s.required && layers.seccomp_filters < want_filters {
            return Err(fail(
                "seccomp",
                format!(
                    "only {} of {want_filters} filters could be installed",
                    layers.seccomp_filters
                ),
            ));
        }
        let mut degraded = Vec::new();
        match config.landlock.mode {
            LandlockMode::Required if layers.landlock != Enforcement::FullyEnforced => {
                return Err(fail(
                    "Landlock",
                    format!(
                        "the kernel reports {:?} (ABI {})",
                        layers.landlock,
                        layers.landlock_abi.unwrap_or(0)
                    ),
                ));
            }
            // A uid per session keeps each server's environment from the others already.
            LandlockMode::BestEffort
                if injects_secrets
                    && layers.landlock == Enforcement::NotEnforced
                    && !layers
                        .signal_isolation
                        .contains(&SignalIsolation::SessionUid) =>
            {
                return Err(fail(
                    "Landlock (it keeps each session's injected secrets from the other sessions' servers)",
                    format!(
                        "the kernel reports {:?} (ABI {}); use --sandbox none to accept that risk",
                        layers.landlock,
                        layers.landlock_abi.unwrap_or(0)
                    ),
                ));
            }
            LandlockMode::BestEffort if layers.landlock != Enforcement::FullyEnforced => {
                degraded.push(format!(
                    "landlock: {:?} (ABI {})",
                    layers.landlock,
                    layers.landlock_abi.unwrap_or(0)
                ));
            }
            _ => {}
        }
        if !config.namespaces.is_empty() && layers.namespaces != config.namespaces {
            let found = format!("the kernel gave only {:?}", layers.namespaces);
            if config.namespaces_mode == super::profile::LandlockMode::Required {
                return Err(fail("namespaces", found));
            }
            degraded.push(format!("namespaces: {found}"));
        }
        if layers.signal_isolation.is_empty() {
            match config.isolate_sessions {
                Isolation::Off => {}
                Isolation::Required => {
                    return Err(fail("keeping sessions apart", NO_ISOLATION.into()));
                }
                Isolation::BestEffort => degraded.push(format!(
                    "sessions: {NO_ISOLATION}; a server can signal other sessions' servers and supervisors (the sidecar itself stays protected by its pid filter)"
                )),
            }
        }
        if config.drop_capabilities && !layers.cap_eff.trim_start_matches('0').is_empty() {
            return Err(fail(
                "dropping capabilities",
                format!("the server still has capabilities {}", layers.cap_eff),
            ));
        }
        if let Some((uid, gid)) = config.user
            && (layers.uid, layers.gid) != (uid, gid)
        {
            return Err(fail(
                "the uid/gid change",
                format!("the server runs as {}:{}", layers.uid, layers.gid),
            ));
        }
        Ok(SandboxStatus {
            profile: config.name.clone(),
            enforced: true,
            layers,
            sidecar,
            degraded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::profile::SandboxOverrides;

    fn report() -> LayerReport {
        LayerReport {
            seccomp_filters: 4,
            x32_guard: true,
            protect_sidecar: true,
            landlock: Enforcement::FullyEnforced,
            landlock_abi: Some(7),
            no_new_privs: true,
            uid: 1000,
            gid: 1000,
            capabilities_dropped: false,
            cap_eff: "0000000000000000".into(),
            rlimits: vec![],
            namespaces: vec![],
            signal_isolation: vec![SignalIsolation::LandlockScope],
            sidecar_threads_guarded: false,
            exec_refused: None,
        }
    }

    fn config(name: &str) -> SandboxConfig {
        SandboxConfig::load(name, SandboxOverrides::default()).unwrap()
    }

    const SIDECAR: SidecarProtection = SidecarProtection {
        non_dumpable: true,
        subreaper: true,
    };

    #[test]
    fn required_landlock_fails_closed() {
        let mut r = report();
        r.landlock = Enforcement::NotEnforced;
        let e = SandboxStatus::evaluate(&config("strict"), r.clone(), SIDECAR, false).unwrap_err();
        assert_eq!(e.layer, "Landlock");
        let s = SandboxStatus::evaluate(&config("default"), r.clone(), SIDECAR, false).unwrap();
        assert!(s.enforced);
        assert_eq!(s.degraded.len(), 1);
        // With per-session secrets, best-effort is not enough.
        assert!(SandboxStatus::evaluate(&config("default"), r, SIDECAR, true).is_err());
    }

    #[test]
    fn sessions_without_isolation_degrade_loudly_or_refuse() {
        let mut r = report();
        r.signal_isolation.clear();
        let s = SandboxStatus::evaluate(&config("default"), r.clone(), SIDECAR, false).unwrap();
        assert!(
            s.degraded
                .iter()
                .any(|d| d.starts_with("sessions:") && d.contains("as root")),
            "{:?}",
            s.degraded
        );
        let e = SandboxStatus::evaluate(&config("strict"), r.clone(), SIDECAR, false).unwrap_err();
        assert_eq!(e.layer, "keeping sessions apart");
        assert!(SandboxStatus::evaluate(&config("none"), r, SIDECAR, false).is_ok());
        // Any one layer is enough.
        for layer in [
            SignalIsolation::SessionUid,
            SignalIsolation::LandlockScope,
            SignalIsolation::PidNamespace,
        ] {
            let mut r = report();
            r.signal_isolation = vec![layer];
            let s = SandboxStatus::evaluate(&config("strict"), r, SIDECAR, false).unwrap();
            assert!(s.degraded.is_empty());
        }
    }

    #[test]
    fn per_session_uids_protect_secrets_without_landlock() {
        let mut r = report();
        r.landlock = Enforcement::NotEnforced;
        r.signal_isolation = vec![SignalIsolation::SessionUid];
        assert!(SandboxStatus::evaluate(&config("default"), r, SIDECAR, true).is_ok());
    }

    #[test]
    fn missing_filters_and_capabilities_fail_closed() {
        let mut r = report();
        r.seccomp_filters = 1;
        assert!(SandboxStatus::evaluate(&config("default"), r, SIDECAR, false).is_err());
        let mut r = report();
        r.cap_eff = "000001ffffffffff".into();
        assert!(SandboxStatus::evaluate(&config("default"), r.clone(), SIDECAR, false).is_err());
        // `none` asks for nothing.
        r.seccomp_filters = 0;
        r.landlock = Enforcement::Off;
        assert!(SandboxStatus::evaluate(&config("none"), r, SIDECAR, true).is_ok());
    }
}
