//! `wrap --from-mcp-json FILE --server NAME`: a client's `mcpServers` entry, served.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::TempDir;
use crate::support::http::{Mcp, text};
use crate::support::{Warden, fixture, warden_bin};

fn write_file(dir: &TempDir) -> String {
    let path = dir.dir().join("mcp.json");
    let file = json!({"mcpServers": {
        "fixture": {
            "command": fixture()[0],
            "args": [],
            "env": {"IMPORTED_MODE": "from-file", "API_TOKEN": "tok-literal-123",
                    "PASSED_THROUGH": "${PASSED_THROUGH}"}
        },
        "hosted": {"type": "http", "url": "https://mcp.example.com/mcp"}
    }});
    std::fs::write(&path, file.to_string()).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn an_entry_of_an_mcp_json_file_is_served_with_its_env() {
    let dir = TempDir::new("mcp-json");
    let file = write_file(&dir);
    let w = Warden::builder(vec![])
        .args(["--from-mcp-json", &file, "--server", "fixture"])
        .env("PASSED_THROUGH", "from-sidecar")
        .env("NOT_PASSED", "x")
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let env = text(&m.call_tool(json!(1), "env", json!({})).await);
    let vars: Vec<&str> = env.lines().collect();
    // Imported values are secrets: the server holds them, and they are redacted from what it
    // sends back.
    assert!(
        vars.contains(&"IMPORTED_MODE=[REDACTED:injected_secret]"),
        "{env}"
    );
    assert!(
        vars.contains(&"API_TOKEN=[REDACTED:injected_secret]"),
        "{env}"
    );
    assert!(!env.contains("tok-literal-123"), "{env}");
    assert!(vars.contains(&"PASSED_THROUGH=from-sidecar"), "{env}");
    assert!(!env.contains("NOT_PASSED"), "{env}");
    // The operator is told to keep the literal secret out of the file, without its value.
    let logs = w.wait_log("API_TOKEN", Duration::from_secs(5));
    assert!(!logs.contains("tok-literal-123"), "{logs}");
}

/// Runs `mcp-warden wrap ARGS` expecting it to refuse at once; returns its stderr.
fn refused(args: &[&str]) -> String {
    let mut child = Command::new(warden_bin())
        .args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mcp-warden {args:?} did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    err
}

#[test]
fn remote_entries_and_unknown_names_are_refused_clearly() {
    let dir = TempDir::new("mcp-json-refused");
    let file = write_file(&dir);
    let err = refused(&["--from-mcp-json", &file, "--server", "hosted"]);
    assert!(err.contains("\"hosted\" is a remote server"), "{err}");
    let err = refused(&["--from-mcp-json", &file, "--server", "nope"]);
    assert!(err.contains("available: fixture, hosted"), "{err}");
}
