//! Pure seccomp builders: the shipped filters from their source list, compiling seccompiler
//! JSON to BPF, and the two filters whose values are only known at run time (the x32 guard
//! and the filter protecting the sidecar's and supervisor's pids). Nothing here installs a
//! filter; `exec.rs` does, in the forked server branch.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The source list the shipped JSON files are generated from.
pub const SOURCE: &str = include_str!("../../sandbox/seccomp/source.toml");

/// The profiles the source list defines filters for.
pub const SHIPPED_FILTERS: &[&str] = &["default", "nonet"];

/// The architectures files are generated for (those seccompiler knows).
pub const ARCHES: &[&str] = &["x86_64", "aarch64", "riscv64"];

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("invalid seccomp source list: {0}")]
    Source(String),
    #[error("invalid seccomp filter file: {0}")]
    Compile(String),
    #[error("seccomp is not supported on this architecture ({0})")]
    UnsupportedArch(&'static str),
    #[error("unknown built-in seccomp filter {0:?} (known: default, nonet)")]
    UnknownBuiltin(String),
}

/// `source.toml`, parsed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default)]
    deny: Vec<DenyGroup>,
    #[serde(default)]
    rule: Vec<ArgRule>,
    #[serde(default)]
    enosys: Vec<ArgRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyGroup {
    group: String,
    #[allow(dead_code)] // documentation for readers of the source list
    why: String,
    profiles: Vec<String>,
    syscalls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgRule {
    profiles: Vec<String>,
    syscall: String,
    why: String,
    /// Conditions AND-ed into one rule.
    #[serde(default)]
    args: Vec<toml::Value>,
    /// One rule per condition (OR).
    #[serde(default)]
    args_each: Vec<toml::Value>,
}

impl Source {
    pub fn parse(text: &str) -> Result<Source, SeccompError> {
        toml::from_str(text).map_err(|e| SeccompError::Source(e.to_string()))
    }
}

/// The seccompiler arch of the machine this binary runs on.
pub fn native_arch() -> Result<TargetArch, SeccompError> {
    arch_from_name(std::env::consts::ARCH)
}

pub fn arch_from_name(name: &'static str) -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(name).map_err(|_| SeccompError::UnsupportedArch(name))
}

/// Whether seccompiler knows `name` as a syscall of `arch`.
fn syscall_exists(name: &str, arch: TargetArch) -> bool {
    let probe = json!({"f": {"mismatch_action": "allow", "match_action": "log",
                              "filter": [{"syscall": name}]}});
    seccompiler::compile_from_json(probe.to_string().as_bytes(), arch).is_ok()
}

/// The seccompiler JSON of one shipped profile for one architecture, generated from the
/// source list. Syscalls the architecture lacks are left out.
pub fn generate(source: &Source, profile: &str, arch: TargetArch) -> Result<Value, SeccompError> {
    let applies = |profiles: &[String]| profiles.iter().any(|p| p == profile);
    let mut main = Vec::new();
    for group in source.deny.iter().filter(|g| applies(&g.profiles)) {
        for name in &group.syscalls {
            if syscall_exists(name, arch) {
                main.push(json!({"syscall": name, "comment": group.group}));
            }
        }
    }
    let rules = |list: &[ArgRule]| -> Result<Vec<Value>, SeccompError> {
        let mut out = Vec::new();
        for r in list.iter().filter(|r| applies(&r.profiles)) {
            if !syscall_exists(&r.syscall, arch) {
                continue;
            }
            let to_json = |v: &toml::Value| {
                serde_json::to_value(v).map_err(|e| SeccompError::Source(e.to_string()))
            };
            if !r.args.is_empty() {
                let args = r.args.iter().map(to_json).collect::<Result<Vec<_>, _>>()?;
                out.push(json!({"syscall": r.syscall, "comment": r.why, "args": args}));
            }
            for cond in &r.args_each {
                out.push(json!({"syscall": r.syscall, "comment": r.why, "args": [to_json(cond)?]}));
            }
            if r.args.is_empty() && r.args_each.is_empty() {
                out.push(json!({"syscall": r.syscall, "comment": r.why}));
            }
        }
        Ok(out)
    };
    main.extend(rules(&source.rule)?);
    let enosys = rules(&source.enosys)?;
    let mut filters = serde_json::Map::new();
    filters.insert(
        "main".into(),
        json!({"mismatch_action": "allow", "match_action": {"errno": libc_errno::EPERM}, "filter": main}),
    );
    if !enosys.is_empty() {
        filters.insert(
            "enosys".into(),
            json!({"mismatch_action": "allow", "match_action": {"errno": libc_errno::ENOSYS}, "filter": enosys}),
        );
    }
    let generated = Value::Object(filters);
    // What we generate must compile: catches a bad condition in the source list.
    compile(&generated.to_string(), arch)?;
    Ok(generated)
}

/// The file text written for `generate`'s output (stable, reviewable diffs).
pub fn render(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

mod libc_errno {
    pub(super) const EPERM: u32 = nix::libc::EPERM as u32;
    pub(super) const ENOSYS: u32 = nix::libc::ENOSYS as u32;
}

/// The shipped JSON of a built-in filter for the architecture this binary was built for.
pub fn builtin(name: &str) -> Result<&'static str, SeccompError> {
    #[cfg(target_arch = "x86_64")]
    let files: &[(&str, &str)] = &[
        (
            "default",
            include_str!("../../sandbox/seccomp/x86_64/default.json"),
        ),
        (
            "nonet",
            include_str!("../../sandbox/seccomp/x86_64/nonet.json"),
        ),
    ];
    #[cfg(target_arch = "aarch64")]
    let files: &[(&str, &str)] = &[
        (
            "default",
            include_str!("../../sandbox/seccomp/aarch64/default.json"),
        ),
        (
            "nonet",
            include_str!("../../sandbox/seccomp/aarch64/nonet.json"),
        ),
    ];
    #[cfg(target_arch = "riscv64")]
    let files: &[(&str, &str)] = &[
        (
            "default",
            include_str!("../../sandbox/seccomp/riscv64/default.json"),
        ),
        (
            "nonet",
            include_str!("../../sandbox/seccomp/riscv64/nonet.json"),
        ),
    ];
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )))]
    let files: &[(&str, &str)] = &[];
    files
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .ok_or_else(|| SeccompError::UnknownBuiltin(name.to_owned()))
}

/// One BPF program, in a form that can cross the helper's command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program(pub Vec<(u16, u8, u8, u32)>);

impl Program {
    fn from_bpf(bpf: &BpfProgram) -> Program {
        Program(bpf.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect())
    }

    pub fn to_bpf(&self) -> BpfProgram {
        self.0
            .iter()
            .map(|&(code, jt, jf, k)| sock_filter { code, jt, jf, k })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Compiles a seccompiler JSON file into its programs, in a stable order (by filter name).
pub fn compile(json_text: &str, arch: TargetArch) -> Result<Vec<Program>, SeccompError> {
    let map = seccompiler::compile_from_json(json_text.as_bytes(), arch)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    let sorted: BTreeMap<String, BpfProgram> = map.into_iter().collect();
    Ok(sorted.values().map(Program::from_bpf).collect())
}

// Classic BPF opcodes used by the hand-written guard.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// `arch == x86_64 && nr >= 0x40000000 → ENOSYS`. seccompiler's rules match exact syscall
/// numbers, so without this a deny-list could be bypassed through the x32 ABI
/// (`nr | 0x40000000`) on kernels built with it.
pub fn x32_guard() -> Program {
    let i = |code, jt, jf, k| (code, jt, jf, k);
    Program(vec![
        i(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        i(BPF_JMP_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        i(BPF_LD_W_ABS, 0, 0, DATA_NR),
        i(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        i(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc_errno::ENOSYS),
        i(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ])
}

/// Processes the server must not signal or open a pidfd on: the sidecar, its process group,
/// the session's supervisor, and (where no kernel layer keeps the server from them) the
/// sidecar's other threads: kill(2) and rt_sigqueueinfo(2) accept a thread id and signal
/// its whole process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protected {
    pub sidecar: i32,
    pub sidecar_group: i32,
    pub supervisor: i32,
    pub sidecar_threads: Vec<i32>,
    /// No kernel layer keeps the server away: also refuse making a protected process the
    /// owner of a descriptor (`F_SETOWN`), which has the kernel send it SIGIO (default
    /// action: terminate) or any signal `F_SETSIG` names; `F_SETOWN_EX` and the
    /// `FIOSETOWN`/`SIOCSPGRP` ioctls pass their target behind a pointer, so they are refused
    /// whatever it is.
    pub descriptor_owners: bool,
}

// fcntl and ioctl requests that make a process a descriptor's owner.
const F_SETOWN: u64 = 8;
const F_SETOWN_EX: u64 = 15;
const FIOSETOWN: u64 = 0x8901;
const SIOCSPGRP: u64 = 0x8902;

/// `tkill` → ENOSYS. It names a thread without its process, so a filter cannot tell the
/// sidecar's threads (which come and go) from the server's own; ENOSYS makes callers fall
/// back to tgkill, whose process is filtered. Costs: musl's raise() and pthread_kill() use
/// tkill and then fail, so it is only installed where no kernel layer protects the sidecar.
pub fn tkill_enosys(arch: TargetArch) -> Result<Program, SeccompError> {
    let mut rules = BTreeMap::new();
    rules.insert(nix::libc::SYS_tkill, Vec::new());
    SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc_errno::ENOSYS),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map(|bpf| Program::from_bpf(&bpf))
    .map_err(|e| SeccompError::Compile(e.to_string()))
}

/// `kill`/`tkill`/`tgkill`/`rt_sigqueueinfo`/`rt_tgsigqueueinfo`/`pidfd_open` aimed at a
/// protected pid (or `kill(-1)`, which would reach the sidecar when it runs as the same user)
/// → EPERM. Landlock's signal scope (ABI 6) covers signals too; this covers older kernels
/// and pidfds.
pub fn protect_pids(p: &Protected, arch: TargetArch) -> Result<Program, SeccompError> {
    use nix::libc;
    let eq = |v: i32| {
        SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            v as u32 as u64,
        )
        .and_then(|c| SeccompRule::new(vec![c]))
    };
    let targets = |with_groups: bool| -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
        let mut pids = vec![p.sidecar, p.supervisor];
        pids.extend(&p.sidecar_threads);
        if with_groups {
            pids.extend([-p.sidecar, -p.supervisor, -p.sidecar_group, -1]);
        }
        pids.sort_unstable();
        pids.dedup();
        pids.into_iter().filter(|&v| v != 0).map(eq).collect()
    };
    let arg_eq = |index: u8, v: u64| {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v)
    };
    let build = || -> Result<BpfProgram, seccompiler::BackendError> {
        let mut rules = BTreeMap::new();
        rules.insert(libc::SYS_kill, targets(true)?);
        if p.descriptor_owners {
            let mut owners = vec![SeccompRule::new(vec![arg_eq(1, F_SETOWN_EX)?])?];
            let mut pids = vec![p.sidecar, p.supervisor, -p.sidecar, -p.supervisor];
            pids.push(-p.sidecar_group);
            pids.sort_unstable();
            pids.dedup();
            for pid in pids.into_iter().filter(|&v| v != 0) {
                owners.push(SeccompRule::new(vec![
                    arg_eq(1, F_SETOWN)?,
                    arg_eq(2, pid as u32 as u64)?,
                ])?);
            }
            rules.insert(libc::SYS_fcntl, owners);
            rules.insert(
                libc::SYS_ioctl,
                vec![
                    SeccompRule::new(vec![arg_eq(1, FIOSETOWN)?])?,
                    SeccompRule::new(vec![arg_eq(1, SIOCSPGRP)?])?,
                ],
            );
        }
        for nr in [
            libc::SYS_tkill,
            libc::SYS_tgkill,
            libc::SYS_rt_sigqueueinfo,
            libc::SYS_rt_tgsigqueueinfo,
            libc::SYS_pidfd_open,
        ] {
            rules.insert(nr, targets(false)?);
        }
        SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc_errno::EPERM),
            arch,
        )?
        .try_into()
    };
    build()
        .map(|bpf| Program::from_bpf(&bpf))
        .map_err(|e| SeccompError::Compile(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_list_parses_and_generates_for_every_arch() {
        let source = Source::parse(SOURCE).unwrap();
        for arch in ARCHES {
            let arch = arch_from_name(arch).unwrap();
            for profile in SHIPPED_FILTERS {
                let v = generate(&source, profile, arch).unwrap();
                assert!(v["main"]["filter"].as_array().unwrap().len() > 50);
                assert_eq!(v["enosys"]["filter"][0]["syscall"], "clone3");
            }
        }
    }

    /// The checked-in files are exactly what `cargo run --example gen-seccomp` writes.
    #[test]
    fn shipped_files_match_the_source_list() {
        let source = Source::parse(SOURCE).unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox/seccomp");
        for arch_name in ARCHES {
            let arch = arch_from_name(arch_name).unwrap();
            for profile in SHIPPED_FILTERS {
                let want = render(&generate(&source, profile, arch).unwrap());
                let path = root.join(arch_name).join(format!("{profile}.json"));
                let got = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    got == want,
                    "{} is out of date: run `cargo run --example gen-seccomp`",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn names_missing_on_an_arch_are_left_out() {
        let source = Source::parse(SOURCE).unwrap();
        let names = |arch| {
            generate(&source, "default", arch).unwrap()["main"]["filter"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["syscall"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        let x86 = names(TargetArch::x86_64);
        let arm = names(TargetArch::aarch64);
        assert!(x86.contains(&"modify_ldt".to_owned()));
        assert!(!arm.contains(&"modify_ldt".to_owned()));
        assert!(arm.contains(&"ptrace".to_owned()));
    }

    #[test]
    fn nonet_differs_from_default_only_in_socket_rules() {
        let source = Source::parse(SOURCE).unwrap();
        let rules = |p| {
            generate(&source, p, TargetArch::x86_64).unwrap()["main"]["filter"]
                .as_array()
                .unwrap()
                .clone()
        };
        let (d, n) = (rules("default"), rules("nonet"));
        let only = |a: &Vec<Value>, b: &Vec<Value>| -> Vec<String> {
            a.iter()
                .filter(|r| !b.contains(r))
                .map(|r| r["syscall"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(only(&d, &n), vec!["socket", "socket"]);
        assert_eq!(only(&n, &d), vec!["socket"]);
    }

    #[test]
    fn builtins_compile_to_two_programs() {
        for name in SHIPPED_FILTERS {
            let programs = compile(builtin(name).unwrap(), native_arch().unwrap()).unwrap();
            assert_eq!(programs.len(), 2, "{name}: enosys + main");
        }
        assert!(builtin("nope").is_err());
    }

    #[test]
    fn compile_rejects_unknown_syscalls() {
        let bad = r#"{"main":{"mismatch_action":"allow","match_action":"log","filter":[{"syscall":"nope"}]}}"#;
        assert!(compile(bad, TargetArch::x86_64).is_err());
    }

    /// Runs a classic BPF program over one `seccomp_data` (only the loads and jumps we emit).
    fn run(p: &Program, arch: u32, nr: u32) -> u32 {
        let mut pc = 0;
        let mut acc = 0;
        loop {
            let (code, jt, jf, k) = p.0[pc];
            match code {
                BPF_LD_W_ABS if k == DATA_ARCH => acc = arch,
                BPF_LD_W_ABS if k == DATA_NR => acc = nr,
                BPF_JMP_JEQ_K => pc += if acc == k { jt } else { jf } as usize,
                BPF_JMP_JGE_K => pc += if acc >= k { jt } else { jf } as usize,
                BPF_RET_K => return k,
                _ => panic!("unexpected opcode {code:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn x32_guard_refuses_only_x32_numbers_on_x86_64() {
        let g = x32_guard();
        assert_eq!(run(&g, AUDIT_ARCH_X86_64, 39), SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&g, AUDIT_ARCH_X86_64, 39 | X32_SYSCALL_BIT),
            SECCOMP_RET_ERRNO | 38
        );
        assert_eq!(
            run(&g, 0xc000_00b7, 39 | X32_SYSCALL_BIT),
            SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn protect_filter_builds_and_round_trips() {
        let p = Protected {
            sidecar: 100,
            sidecar_group: 90,
            supervisor: 200,
            sidecar_threads: vec![],
            descriptor_owners: false,
        };
        let prog = protect_pids(&p, native_arch().unwrap()).unwrap();
        assert!(prog.len() > 20);
        let bpf = prog.to_bpf();
        assert_eq!(Program::from_bpf(&bpf), prog);
        // A group of 0 (unknown) must not turn into kill(0), the caller's own group.
        let p0 = Protected {
            sidecar_group: 0,
            ..p.clone()
        };
        assert!(protect_pids(&p0, native_arch().unwrap()).is_ok());
        // Naming the sidecar's threads makes a longer program.
        let threads = Protected {
            sidecar_threads: vec![101, 102, 103],
            descriptor_owners: true,
            ..p
        };
        assert!(
            protect_pids(&threads, native_arch().unwrap())
                .unwrap()
                .len()
                > prog.len()
        );
        assert!(!tkill_enosys(native_arch().unwrap()).unwrap().is_empty());
    }
}
