//! Process inspection from /proc (liveness by state, not `kill -0`, which succeeds on zombies).

use std::collections::HashSet;

/// The state letter of a process, if it exists.
pub fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Alive = exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(state(pid), Some(s) if s != 'Z' && s != 'X')
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every live descendant of `root`.
pub fn descendants(root: i32) -> Vec<i32> {
    let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| Some((p, ppid(p)?)))
        .collect();
    let mut found: HashSet<i32> = HashSet::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (c, pp) in &all {
            if *pp == p && found.insert(*c) {
                frontier.push(*c);
            }
        }
    }
    found.into_iter().filter(|p| alive(*p)).collect()
}

/// Open file descriptors of a process.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A field of `/proc/<pid>/status` (the first number after the name), e.g. `VmRSS` in KiB.
pub fn status_field(pid: i32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.split(':').next() == Some(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: i32) -> u64 {
    status_field(pid, "VmRSS")
}

/// What a process holds: counted before and after a load to show nothing leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub fds: usize,
    pub rss_kib: u64,
    pub threads: u64,
    pub descendants: usize,
}

impl Footprint {
    pub fn of(pid: i32) -> Footprint {
        Footprint {
            fds: fd_count(pid),
            rss_kib: rss_kib(pid),
            threads: status_field(pid, "Threads"),
            descendants: descendants(pid).len(),
        }
    }
}
