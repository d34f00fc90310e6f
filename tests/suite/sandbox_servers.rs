//! Real registry servers keep working under every shipped profile: initialize, tools/list
//! and tools/call through the sidecar, node directly and through `npx --offline`, python
//! from a venv and through `uvx --offline`.

use serde_json::{Value, json};

use super::sandbox::probe_bin;
use crate::support::http::{Mcp, text};
use crate::support::{Warden, WardenBuilder, everything, repo, time_server};

const PROFILES: &[&str] = &["default", "nonet", "strict"];

/// Whether `profile` can run here (strict requires Landlock); prints why not.
fn available(profile: &str) -> bool {
    if profile != "strict" {
        return true;
    }
    let out = std::process::Command::new(crate::support::warden_bin())
        .args([
            "wrap",
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--sandbox",
            "strict",
        ])
        .args(["--drain-timeout", "1ms", "--", &probe_bin()])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            // Startup either fails at once (Landlock missing) or serves.
            std::thread::sleep(std::time::Duration::from_millis(500));
            let exited = c.try_wait()?;
            let _ = c.kill();
            let _ = c.wait();
            Ok(exited)
        })
        .unwrap();
    match out {
        None => true,
        Some(status) => {
            assert!(
                std::env::var_os("MCP_WARDEN_REQUIRE_LANDLOCK").is_none(),
                "strict does not start ({status}) although MCP_WARDEN_REQUIRE_LANDLOCK is set"
            );
            eprintln!("SKIPPED strict: it requires Landlock, which this kernel does not enforce");
            false
        }
    }
}

async fn exercise(builder: WardenBuilder, profile: &str, tool: &str, args: Value) -> String {
    let w = builder.args(["--sandbox", profile]).start();
    let mut m = Mcp::new(w.mcp_url());
    let init = m.initialize().await;
    assert!(
        init["result"]["serverInfo"].is_object(),
        "{profile}: {init}"
    );
    let tools = m.request(json!(1), "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{profile}: {tools}\n{}", w.logs()))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&tool), "{profile}: {names:?}");
    let r = m.call_tool(json!(2), tool, args).await;
    assert!(r.get("error").is_none(), "{profile}: {r}\n{}", w.logs());
    text(&r)
}

#[tokio::test]
async fn server_everything_under_each_profile() {
    for profile in PROFILES.iter().filter(|p| available(p)) {
        let out = exercise(
            Warden::builder(everything()),
            profile,
            "echo",
            json!({"message": "sandboxed"}),
        )
        .await;
        assert_eq!(out, "Echo: sandboxed", "{profile}");
    }
}

#[tokio::test]
async fn server_everything_through_npx_offline_under_each_profile() {
    let js = repo().join("tests/js");
    for profile in PROFILES.iter().filter(|p| available(p)) {
        let builder = Warden::builder(vec![
            "npx".into(),
            "--offline".into(),
            "mcp-server-everything".into(),
            "stdio".into(),
        ])
        .args(["--cwd", &js.display().to_string()]);
        let out = exercise(builder, profile, "get-sum", json!({"a": 2, "b": 3})).await;
        assert!(out.contains('5'), "{profile}: {out}");
    }
}

#[tokio::test]
async fn mcp_server_time_under_each_profile() {
    for profile in PROFILES.iter().filter(|p| available(p)) {
        let out = exercise(
            Warden::builder(time_server()),
            profile,
            "get_current_time",
            json!({"timezone": "UTC"}),
        )
        .await;
        assert!(
            out.contains("UTC") && out.contains("datetime"),
            "{profile}: {out}"
        );
    }
}

#[tokio::test]
async fn mcp_server_time_through_uvx_offline_under_each_profile() {
    let py = repo().join("tests/py");
    let uvx = py.join(".venv/bin/uvx");
    let cache = py.join("uv-cache");
    assert!(
        uvx.exists() && cache.exists(),
        "uvx or its cache is missing: run ./scripts/setup-test-deps"
    );
    let requirements = std::fs::read_to_string(py.join("requirements.txt")).unwrap();
    let pinned = requirements
        .lines()
        .find(|l| l.starts_with("mcp-server-time=="))
        .unwrap()
        .to_owned();
    let cache = cache.display().to_string();
    for profile in PROFILES.iter().filter(|p| available(p)) {
        let builder = Warden::builder(vec![
            uvx.display().to_string(),
            "--offline".into(),
            pinned.clone(),
            "--local-timezone".into(),
            "UTC".into(),
        ])
        // uv keeps its environments (and lock files) in the cache.
        .args(["--env", &format!("UV_CACHE_DIR={cache}")])
        .args(["--sandbox-write", &cache]);
        let out = exercise(
            builder,
            profile,
            "get_current_time",
            json!({"timezone": "UTC"}),
        )
        .await;
        assert!(out.contains("datetime"), "{profile}: {out}");
    }
}
