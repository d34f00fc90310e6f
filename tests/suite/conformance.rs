//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, server side) run
//! against mcp-warden wrapping a STDIO server built on the official TypeScript SDK.
//!
//! The suite only speaks HTTP and has no STDIO server of its own, so `tests/js/conformance-server.mjs`
//! provides every tool, resource and prompt its scenarios call; the scenarios then exercise the
//! bridge end to end (sessions, JSON and SSE answers, progress and log notifications,
//! server→client sampling and elicitation) plus its own transport checks (DNS rebinding,
//! concurrent streams). No scenario is expected to fail: there is no baseline file.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Warden, repo};

/// The whole active suite takes about 20 s here: one fresh session, so one server process, per
/// scenario. The bound only stops a hang from holding CI.
const SUITE_TIMEOUT: Duration = Duration::from_secs(180);

/// Every scenario of the active suite of 0.1.16 (`conformance list --server` minus the pending
/// `json-schema-2020-12` and `server-sse-polling`). Listed so that a suite that silently runs
/// fewer scenarios fails here instead of passing.
const ACTIVE_SCENARIOS: &[&str] = &[
    "server-initialize",
    "logging-set-level",
    "ping",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "elicitation-sep1034-defaults",
    "server-sse-multiple-streams",
    "elicitation-sep1330-enums",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
];

fn installed(path: PathBuf) -> String {
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/setup-test-deps",
        path.display()
    );
    path.display().to_string()
}

/// The Node.js 22 that `tests/conformance` installs from npm: the suite needs it (it imports
/// `fs.globSync`), and the server under test starts faster on it than on an older system Node.
fn node22() -> String {
    installed(repo().join("tests/conformance/node_modules/.bin/node"))
}

#[test]
fn the_official_conformance_suite_passes_through_the_bridge() {
    let node = node22();
    let cli = installed(
        repo()
            .join("tests/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js"),
    );
    let server = installed(repo().join("tests/js/conformance-server.mjs"));
    installed(repo().join("tests/js/node_modules/@modelcontextprotocol/sdk"));

    let w = Warden::start(vec![node.clone(), server]);
    let results = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-results");
    let _ = std::fs::remove_dir_all(&results);

    let started = Instant::now();
    let (success, output) = run_with_timeout(
        Command::new(&node)
            .arg(&cli)
            .args(["server", "--url", &w.mcp_url(), "--output-dir"])
            .arg(&results),
        SUITE_TIMEOUT,
    );
    eprintln!("conformance suite ran in {:?}", started.elapsed());

    let checks = read_results(&results);
    let mut report = String::new();
    let mut bad = Vec::new();
    for (scenario, checks) in &checks {
        let count = |s: &str| checks.iter().filter(|c| c["status"] == s).count();
        let (ok, failed, warned) = (count("SUCCESS"), count("FAILURE"), count("WARNING"));
        report.push_str(&format!(
            "{scenario}: {ok} passed, {failed} failed, {warned} warnings\n"
        ));
        // A WARNING is a SHOULD the bridge missed (e.g. an SSE stream that delivers nothing):
        // none occurs today, so one appearing is a regression too.
        for c in checks
            .iter()
            .filter(|c| c["status"] == "FAILURE" || c["status"] == "WARNING")
        {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            bad.push(format!(
                "{scenario} / {} {}: {}\n    details: {}",
                field("status"),
                field("id"),
                field("errorMessage"),
                c["details"]
            ));
        }
        if ok == 0 {
            bad.push(format!("{scenario}: no check succeeded"));
        }
    }
    eprintln!("{report}");

    let ran: Vec<&str> = checks.keys().map(String::as_str).collect();
    let mut expected = ACTIVE_SCENARIOS.to_vec();
    expected.sort_unstable();
    assert_eq!(
        ran, expected,
        "the suite ran other scenarios than expected\n{output}"
    );
    assert!(
        bad.is_empty(),
        "conformance checks failed:\n{}\n\nsuite output:\n{output}\n\nmcp-warden logs (tail):\n{}",
        bad.join("\n"),
        tail(&w.logs(), 60)
    );
    assert!(success, "the suite exited with failure\n{output}");
}

/// `<dir>/server-<scenario>-<timestamp>/checks.json` → scenario → checks.
fn read_results(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("no results in {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        // The timestamp is an ISO instant with `:` and `.` made `-`: 24 characters.
        let scenario = name
            .strip_prefix("server-")
            .and_then(|rest| rest.get(..rest.len().checked_sub(25)?))
            .unwrap_or_else(|| panic!("unexpected result directory {name}"));
        let text = std::fs::read_to_string(entry.path().join("checks.json")).unwrap();
        let checks: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert!(
            out.insert(scenario.to_owned(), checks).is_none(),
            "{scenario} ran twice"
        );
    }
    out
}

/// Runs `cmd`, killing it after `timeout`; returns whether it succeeded and its output.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the conformance suite");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).ok();
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "stdout:\n{}\nstderr:\n{}",
        out.join().unwrap(),
        err.join().unwrap()
    );
    let Some(status) = status else {
        panic!("the conformance suite did not finish within {timeout:?}\n{output}");
    };
    (status.success(), output)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
