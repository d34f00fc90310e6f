//! Warm spares (`--spare N`): servers started ahead of demand are given to new sessions,
//! replaced when used or dead, stopped at shutdown, and refused where a server's environment
//! would depend on its caller.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::http::{Mcp, text};
use crate::support::{Warden, eventually, fixture, warden_bin};

/// The pids of the spares started so far, from the sidecar's log.
fn spare_pids(w: &Warden) -> Vec<i32> {
    w.logs()
        .lines()
        .filter(|l| l.contains("warm spare started"))
        .filter_map(|l| {
            let at = l.find("pid=")? + 4;
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Whether the server answering as `server` runs under the helper `spare` started (the
/// sandbox's supervisor may fork it).
fn runs_under(server: i32, spare: i32) -> bool {
    server == spare || crate::support::proc::descendants(spare).contains(&server)
}

async fn server_pid(m: &Mcp, id: i64) -> i32 {
    let r = m.call_tool(json!(id), "pid", json!({})).await;
    text(&r).parse().unwrap()
}

#[tokio::test]
async fn new_sessions_get_a_started_server_and_the_spares_are_replaced() {
    let w = Warden::builder(fixture()).args(["--spare", "2"]).start();
    w.wait_log("warm spares ready", Duration::from_secs(20));
    let before: HashSet<i32> = spare_pids(&w).into_iter().collect();
    assert_eq!(before.len(), 2, "{}", w.logs());

    let mut first = Mcp::new(w.mcp_url());
    first.initialize().await;
    let pid = server_pid(&first, 1).await;
    assert!(
        before.iter().any(|s| runs_under(pid, *s)),
        "the session's server {pid} was not a spare {before:?}"
    );
    w.wait_log("warm=true", Duration::from_secs(5));

    // The one taken is replaced: a third spare starts.
    let third = eventually(Duration::from_secs(20), || {
        (spare_pids(&w).len() >= 3).then_some(())
    });
    assert!(third.is_some(), "{}", w.logs());

    // More sessions than spares: every one is served, each by a server of its own.
    let mut pids = HashSet::from([pid]);
    let mut sessions = Vec::new();
    for i in 0..4 {
        let mut m = Mcp::new(w.mcp_url());
        m.initialize().await;
        pids.insert(server_pid(&m, i).await);
        sessions.push(m);
    }
    assert_eq!(pids.len(), 5, "one server per session");
}

#[tokio::test]
async fn a_spare_that_died_is_replaced_and_never_given_out() {
    let w = Warden::builder(fixture()).args(["--spare", "1"]).start();
    w.wait_log("warm spares ready", Duration::from_secs(20));
    let dead = spare_pids(&w)[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(dead), Signal::SIGKILL).unwrap();
    // Its successor starts.
    let next = eventually(Duration::from_secs(20), || {
        spare_pids(&w).into_iter().find(|p| *p != dead)
    })
    .unwrap_or_else(|| panic!("no new spare: {}", w.logs()));
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let pid = server_pid(&m, 1).await;
    assert!(!runs_under(pid, dead));
    assert!(runs_under(pid, next), "the live spare served the session");
}

#[tokio::test]
async fn spares_stop_with_the_sidecar() {
    let mut w = Warden::builder(fixture()).args(["--spare", "2"]).start();
    w.wait_log("warm spares ready", Duration::from_secs(20));
    let pids = spare_pids(&w);
    let status = tokio::task::spawn_blocking(move || {
        let s = w.stop_with(Signal::SIGTERM, Duration::from_secs(20));
        (s, w)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status}");
    for pid in pids {
        let gone = eventually(Duration::from_secs(10), || {
            (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
        });
        assert!(gone.is_some(), "spare {pid} outlived the sidecar");
    }
}

#[test]
fn spares_are_refused_where_the_environment_depends_on_the_caller() {
    let out = std::process::Command::new(warden_bin())
        .args(["wrap", "--listen", "127.0.0.1:0", "--dev", "--spare", "1"])
        .args(["--env-claim", "WHO=sub"])
        .arg("--")
        .args(fixture())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--spare cannot be used with --env-claim"),
        "{err}"
    );
}
