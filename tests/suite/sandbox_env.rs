//! The server's environment and credentials: built from nothing, per session, never leaked
//! to another session's server, never readable from the sidecar.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::sandbox::{is_root, probe, probe_bin};
use crate::support::http::{Mcp, text};
use crate::support::{Warden, eventually, warden_bin};

fn env_of(outcome: &str) -> HashMap<String, String> {
    outcome
        .strip_prefix("ALLOWED: ")
        .unwrap_or_else(|| panic!("{outcome}"))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn the_server_environment_is_the_allow_list_plus_injections() {
    let dir = crate::support::TempDir::new("env");
    let key = dir.dir().join("api-key");
    std::fs::write(&key, "file-secret-123\n").unwrap();
    let w = Warden::builder(vec![probe_bin()])
        .env("WARDEN_SECRET", "sidecar-only")
        .env("LANG", "C.UTF-8")
        .env("EXTRA_PASSED", "passed-value")
        .args(["--env", "MODE=plain-value"])
        .args(["--env-file", &format!("API_KEY={}", key.display())])
        .args(["--env-pass", "EXTRA_PASSED"])
        .start();
    let got = probe(
        &w,
        &[
            "env".into(),
            "write_work".into(),
            "cmdline".into(),
            format!("read_file:{}", key.display()),
        ],
    )
    .await;
    let env = env_of(&got["env"]);
    let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "API_KEY",
            "EXTRA_PASSED",
            "HOME",
            "LANG",
            "MODE",
            "PATH",
            "TMPDIR"
        ],
        "{env:?}"
    );
    // The server holds the secret; what it sends back has it redacted.
    assert_eq!(env["API_KEY"], "[REDACTED:injected_secret]");
    assert_eq!(env["MODE"], "plain-value");
    assert_eq!(env["HOME"], env["TMPDIR"]);
    assert!(env["HOME"].contains("mcp-warden-"), "{}", env["HOME"]);
    assert_eq!(got["write_work"], "ALLOWED");
    // The server gets the secret through its environment only, not by reading the file.
    if super::sandbox::landlock_or_skip(&w, 1, "secret file") {
        assert_eq!(
            got[&format!("read_file:{}", key.display())],
            "DENIED EACCES"
        );
    }
    // The sidecar logged no injected value.
    let logs = w.logs();
    for v in ["file-secret-123", "sidecar-only"] {
        assert!(!logs.contains(v), "{v} in logs:\n{logs}");
    }
}

#[tokio::test]
async fn values_given_on_argv_are_blanked_from_the_process_list() {
    let w = Warden::builder(vec![probe_bin()])
        .args(["--env", "TOKEN=argv-visible-9f3"])
        .start();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", w.pid())).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(!cmdline.contains("argv-visible-9f3"), "{cmdline}");
    assert!(cmdline.contains("TOKEN=****"), "{cmdline}");
    // The server still receives it.
    let got = probe(&w, &["env".into(), "sidecar_cmdline".into()]).await;
    assert_eq!(env_of(&got["env"])["TOKEN"], "argv-visible-9f3");
    assert!(!got["sidecar_cmdline"].contains("argv-visible-9f3"));
}

#[tokio::test]
async fn sessions_get_their_own_work_dir_removed_at_the_end() {
    let w = Warden::start(vec![probe_bin()]);
    let mut a = Mcp::new(w.mcp_url());
    let mut b = Mcp::new(w.mcp_url());
    a.initialize().await;
    b.initialize().await;
    let sidecar = w.pid();
    let home_a = env_of(&call(&a, sidecar, vec!["env".into()]).await["env"])["HOME"].clone();
    let home_b = env_of(&call(&b, sidecar, vec!["env".into()]).await["env"])["HOME"].clone();
    assert_ne!(home_a, home_b);
    // A cannot look into B's dir, nor list the work root.
    let got = call(
        &a,
        sidecar,
        vec![
            format!("list_dir:{home_b}"),
            format!("write_path:{home_b}/planted"),
            "workdirs".into(),
        ],
    )
    .await;
    assert!(
        got[&format!("list_dir:{home_b}")].starts_with("DENIED"),
        "{got:?}"
    );
    assert!(
        got[&format!("write_path:{home_b}/planted")].starts_with("DENIED"),
        "{got:?}"
    );
    assert!(got["workdirs"].starts_with("DENIED"), "{got:?}");
    assert!(std::path::Path::new(&home_a).is_dir());
    a.delete().await;
    assert!(
        eventually(Duration::from_secs(10), || (!std::path::Path::new(&home_a)
            .exists())
        .then_some(()))
        .is_some(),
        "{home_a} left behind"
    );
    assert!(
        std::path::Path::new(&home_b).is_dir(),
        "B's dir stays while B lives"
    );
}

async fn call(m: &Mcp, sidecar: i32, attacks: Vec<String>) -> HashMap<String, String> {
    let r = m
        .call_tool(
            json!(1),
            "probe",
            json!({"attacks": attacks, "sidecar": sidecar}),
        )
        .await;
    serde_json::from_str(&text(&r)).unwrap()
}

#[tokio::test]
async fn the_callers_token_never_reaches_the_server() {
    let w = Warden::start(vec![probe_bin()]);
    let token = "caller-bearer-token-7d1";
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value, session: Option<String>| {
        let mut req = client
            .post(w.mcp_url())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let init = post(
        json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
        None,
    )
    .await
    .unwrap();
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = post(
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"probe","arguments":{"attacks":["env","cmdline","stdin"],"sidecar":w.pid()}}}),
        Some(sid),
    )
    .await
    .unwrap();
    let body = crate::support::http::final_response(r).await;
    let got = text(&body);
    assert!(got.contains("HOME="), "{got}");
    assert!(got.contains("tools/call"), "stdin was recorded: {got}");
    assert!(!got.contains(token), "{got}");
}

#[tokio::test]
async fn a_secret_file_under_a_readable_path_stops_the_start() {
    let dir = crate::support::TempDir::new("exposed");
    let key = dir.dir().join("key");
    std::fs::write(&key, "k").unwrap();
    let out = std::process::Command::new(warden_bin())
        .args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
        .args(["--sandbox-read", &dir.dir().display().to_string()])
        .args(["--env-file", &format!("K={}", key.display())])
        .arg("--")
        .arg(probe_bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--env-file K") && stderr.contains("which the sandboxed server may read"),
        "{stderr}"
    );
    assert!(!stderr.contains("mcp-warden is serving"));
}

#[tokio::test]
async fn a_missing_secret_file_fails_the_session_without_leaking_its_path_to_clients() {
    let w = Warden::builder(vec![probe_bin()])
        .args(["--env-file", "K=/nonexistent/mcpw/secret"])
        .start();
    let m = Mcp::new(w.mcp_url());
    let r = m
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .await;
    let body: serde_json::Value = r.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("credentials are unavailable"), "{body}");
    assert!(!msg.contains("/nonexistent"), "{body}");
    assert!(
        w.wait_log(
            "cannot build the MCP server's environment",
            Duration::from_secs(5)
        )
        .contains("/nonexistent/mcpw/secret")
    );
}

#[tokio::test]
async fn the_server_can_run_as_another_user() {
    if !is_root() {
        eprintln!("SKIPPED: --sandbox-user needs a root sidecar");
        return;
    }
    let dir = crate::support::TempDir::new("uid");
    let root_only = dir.dir().join("root-only");
    std::fs::write(&root_only, "x").unwrap();
    std::fs::set_permissions(
        &root_only,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("read_file:{}", root_only.display());
    let w = Warden::builder(vec![probe_bin()])
        .args(["--sandbox", "none", "--sandbox-user", "65534:65534"])
        .start();
    assert!(w.logs().contains("sandbox.uid=65534"), "{}", w.logs());
    let got = probe(&w, &["status".into(), path.clone(), "write_work".into()]).await;
    assert!(
        got["status"].contains("\nUid:\t65534\t65534\t65534\t65534"),
        "{}",
        got["status"]
    );
    assert_eq!(got[&path], "DENIED EACCES");
    assert_eq!(
        got["write_work"], "ALLOWED",
        "the work dir belongs to the server's user"
    );
}

#[tokio::test]
async fn one_sessions_server_cannot_read_anothers_environment() {
    let dir = crate::support::TempDir::new("cross");
    let key = dir.dir().join("key");
    std::fs::write(&key, "per-session-secret-42").unwrap();
    let run = |profile: &'static str| {
        let key = key.clone();
        async move {
            let w = Warden::builder(vec![probe_bin()])
                .args(["--sandbox", profile])
                .args(["--env-file", &format!("KEY={}", key.display())])
                .start();
            let mut a = Mcp::new(w.mcp_url());
            let mut b = Mcp::new(w.mcp_url());
            a.initialize().await;
            b.initialize().await;
            let b_pid = call(&b, w.pid(), vec!["server_pid".into()]).await["server_pid"]
                .trim_start_matches("ALLOWED: ")
                .to_owned();
            let attack = format!("read_file:/proc/{b_pid}/environ");
            call(&a, w.pid(), vec![attack.clone()]).await[&attack].clone()
        }
    };
    // Without a sandbox, same-user servers read each other's environment...
    let baseline = run("none").await;
    // (The value itself is redacted from what the server sends back.)
    assert!(
        baseline.contains("KEY=[REDACTED:injected_secret]"),
        "{baseline}"
    );
    // ...which Landlock's ptrace scoping stops (and the sidecar refuses to inject secrets
    // under a best-effort profile when Landlock is missing).
    let got = run("default").await;
    assert_eq!(got, "DENIED EACCES");
}

/// A sidecar with the development issuer around the probe, and tokens for it.
struct Authed {
    warden: Warden,
    dir: crate::support::TempDir,
}

impl Authed {
    fn start(extra: &[&str]) -> Authed {
        let dir = crate::support::TempDir::new("sbx-auth");
        let key = dir.path("dev-key.pem");
        let warden = Warden::builder(vec![probe_bin()])
            .with_auth()
            .args(["--dev", "--dev-key-file", key.to_str().unwrap()])
            .args(extra.iter().copied())
            .start();
        Authed { warden, dir }
    }

    fn token(&self, sub: &str) -> String {
        let out = std::process::Command::new(warden_bin())
            .args(["token", "--dev-key-file"])
            .arg(self.dir.path("dev-key.pem"))
            .args(["--listen", &self.warden.addr.to_string()])
            .args(["--sub", sub, "--scope", "", "--ttl", "5m"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    async fn probe_as(&self, token: &str, attacks: &[&str]) -> HashMap<String, String> {
        let mut m = super::auth::mcp_with(self.warden.mcp_url(), token);
        m.initialize().await;
        let r = m
            .call_tool(
                json!(1),
                "probe",
                json!({"attacks": attacks, "sidecar": self.warden.pid()}),
            )
            .await;
        serde_json::from_str(&text(&r)).unwrap_or_else(|_| panic!("{r}"))
    }
}

#[tokio::test]
async fn each_principal_gets_its_own_claims_and_never_its_token() {
    let a = Authed::start(&["--env-claim", "USER_ID=sub", "--env-claim", "ISSUER=iss"]);
    let (alice, bob) = (a.token("alice"), a.token("bob"));
    let got_a = a.probe_as(&alice, &["env", "cmdline", "stdin"]).await;
    let got_b = a.probe_as(&bob, &["env"]).await;
    let (env_a, env_b) = (env_of(&got_a["env"]), env_of(&got_b["env"]));
    assert_eq!(env_a["USER_ID"], "alice");
    assert_eq!(env_b["USER_ID"], "bob");
    assert_eq!(env_a["ISSUER"], env_b["ISSUER"]);
    assert!(
        env_a["ISSUER"].starts_with("http://127.0.0.1:"),
        "{env_a:?}"
    );
    // The caller's token reaches neither the environment, argv nor stdin of the server.
    for part in ["env", "cmdline", "stdin"] {
        assert!(!got_a[part].contains(&alice), "{part}: {}", got_a[part]);
    }
    assert!(got_a["stdin"].contains("tools/call"), "stdin was recorded");
}

#[tokio::test]
async fn a_missing_claim_refuses_the_session_without_starting_a_server() {
    let a = Authed::start(&["--env-claim", "DEPT=department"]);
    let token = a.token("carol");
    let r = super::auth::post_init(
        &a.warden.mcp_url(),
        &[("authorization", format!("Bearer {token}"))],
    )
    .await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("credentials are unavailable"),
        "{body}"
    );
    a.warden.wait_log(
        "has no claim \"department\" for DEPT",
        Duration::from_secs(5),
    );
    assert!(!a.warden.logs().contains("session started"));
}

#[tokio::test]
async fn an_exchanged_token_reaches_the_server_and_the_callers_does_not() {
    let asrv =
        super::auth_oidc::AuthServer::start(&["--any-loopback-resource", "--token-exchange"]);
    let downstream = "http://127.0.0.1:9/downstream-api";
    let w = Warden::builder(vec![probe_bin()])
        .with_auth()
        .env("MCP_WARDEN_EXCHANGE_CLIENT_SECRET", "exchange-secret")
        .args(["--issuer", &asrv.issuer])
        .args(["--exchange-client-id", "exchange-client"])
        .args([
            "--env-exchange",
            &format!("API_TOKEN={downstream},scope=mcp:tools"),
        ])
        .start();
    let caller = asrv.token(&w.mcp_url(), "mcp:tools").await;
    let mut m = super::auth::mcp_with(w.mcp_url(), &caller);
    m.initialize().await;
    let r = m
        .call_tool(
            json!(1),
            "probe",
            json!({"attacks": ["env", "env_hex", "cmdline", "stdin"], "sidecar": w.pid()}),
        )
        .await;
    let got: HashMap<String, String> = serde_json::from_str(&text(&r)).unwrap();
    let env = env_of(&got["env"]);
    // The issued token is redacted from what the server sends; its hex form is not.
    assert_eq!(env["API_TOKEN"], "[REDACTED:injected_secret]");
    let hex = &env_of(&got["env_hex"])["API_TOKEN"];
    let issued = &String::from_utf8(
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect(),
    )
    .unwrap();
    assert_ne!(issued, &caller);
    for part in ["env", "cmdline", "stdin"] {
        assert!(
            !got[part].contains(&caller),
            "the caller's token reached the server's {part}"
        );
    }
    // The issued token is for the downstream API, on the caller's behalf, naming the
    // sidecar as the actor (RFC 8693 §4.1).
    use base64::Engine;
    let payload: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(issued.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["aud"], downstream, "{payload}");
    assert_eq!(payload["act"]["sub"], "exchange-client", "{payload}");
    assert_eq!(payload["sub"], "test-client", "{payload}");
    // Neither token is in the sidecar's logs.
    let logs = w.logs();
    assert!(!logs.contains(issued.as_str()) && !logs.contains(&caller));
}

/// Admission comes before the environment: a principal over its limits makes the sidecar
/// exchange nothing at the issuer (each refused initialize would otherwise cost one).
#[tokio::test]
async fn a_refused_session_costs_no_token_exchange() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let asrv = super::auth_oidc::AuthServer::start(&["--any-loopback-resource"]);
    // A token endpoint that counts connections and closes each at once.
    let endpoint = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = endpoint.local_addr().unwrap().port();
    let exchanges = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = exchanges.clone();
    std::thread::spawn(move || {
        for conn in endpoint.incoming() {
            if conn.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let w = Warden::builder(vec![probe_bin()])
        .with_auth()
        .env("MCP_WARDEN_EXCHANGE_CLIENT_SECRET", "exchange-secret")
        .args(["--issuer", &asrv.issuer])
        .args(["--exchange-client-id", "exchange-client"])
        .args([
            "--exchange-token-endpoint",
            &format!("http://127.0.0.1:{port}/token"),
        ])
        .args(["--env-exchange", "API_TOKEN=http://127.0.0.1:9/api"])
        .args(["--session-rate-per-principal", "1/h"])
        .start();
    let caller = asrv.token(&w.mcp_url(), "mcp:tools").await;
    let m = super::auth::mcp_with(w.mcp_url(), &caller);
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    // Admitted: the exchange is tried, fails, and the server cannot start.
    assert_eq!(m.post(&init).await.status(), 502);
    let tried = exchanges.load(Ordering::SeqCst);
    assert!(tried >= 1, "no exchange was tried");
    // Over the principal's rate: refused before any exchange, on both transports.
    for _ in 0..5 {
        assert_eq!(m.post(&init).await.status(), 429);
    }
    let for_sse = asrv.token(&w.url("/sse"), "mcp:tools").await;
    let sse = reqwest::Client::new()
        .get(w.url("/sse"))
        .bearer_auth(&for_sse)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 429);
    assert_eq!(exchanges.load(Ordering::SeqCst), tried);
}

#[tokio::test]
async fn a_session_ends_when_its_exchanged_credential_expires() {
    // Every token of this issuer lives 3 seconds, the exchanged one included.
    let asrv = super::auth_oidc::AuthServer::start(&[
        "--any-loopback-resource",
        "--token-exchange",
        "--ttl",
        "3",
    ]);
    let w = Warden::builder(vec![probe_bin()])
        .with_auth()
        .env("MCP_WARDEN_EXCHANGE_CLIENT_SECRET", "exchange-secret")
        .args(["--issuer", &asrv.issuer])
        .args(["--exchange-client-id", "exchange-client"])
        .args(["--env-exchange", "API_TOKEN=http://127.0.0.1:9/api"])
        .start();
    let caller = asrv.token(&w.mcp_url(), "mcp:tools").await;
    let mut m = super::auth::mcp_with(w.mcp_url(), &caller);
    m.initialize().await;
    let r = m
        .call_tool(
            json!(1),
            "probe",
            json!({"attacks": ["server_pid"], "sidecar": w.pid()}),
        )
        .await;
    let got: HashMap<String, String> = serde_json::from_str(&text(&r)).unwrap();
    let server: i32 = got["server_pid"]
        .trim_start_matches("ALLOWED: ")
        .parse()
        .unwrap();
    // The server never keeps using an expired credential: its session ends, and it with it.
    w.wait_log("reason=CredentialExpired", Duration::from_secs(15));
    assert!(
        crate::support::eventually(Duration::from_secs(10), || {
            (!crate::support::proc::alive(server)).then_some(())
        })
        .is_some(),
        "the server outlived its credential"
    );
}

/// Runs `wrap` with `args` until it serves or exits; its exit code (None: it served) and
/// stderr.
fn start_or_refuse(args: &[String]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(warden_bin());
    cmd.args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--")
        .arg(probe_bin());
    super::sandbox::serve_or_exit(cmd)
}

#[tokio::test]
async fn loader_variables_are_refused_unless_allowed() {
    let dir = crate::support::TempDir::new("loader");
    let mcp_json = dir.path("mcp.json");
    std::fs::write(
        &mcp_json,
        json!({"mcpServers": {"s": {"command": probe_bin(), "env": {"GLIBC_TUNABLES": "glibc.malloc.check=3"}}}})
            .to_string(),
    )
    .unwrap();
    let refused = [
        (
            vec!["--env".to_owned(), "LD_PRELOAD=/tmp/evil.so".into()],
            "LD_PRELOAD",
        ),
        (
            vec!["--env-pass".to_owned(), "LD_LIBRARY_PATH".into()],
            "LD_LIBRARY_PATH",
        ),
        (
            vec!["--env".to_owned(), "GCONV_PATH=/tmp/gconv".into()],
            "GCONV_PATH",
        ),
    ];
    for (args, name) in &refused {
        let (code, stderr) = start_or_refuse(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains("--env-allow-loader"),
            "{args:?}: {stderr}"
        );
    }
    // From an mcpServers file too (its values are never on the command line).
    let out = std::process::Command::new(warden_bin())
        .args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
        .args([
            "--from-mcp-json",
            &mcp_json.display().to_string(),
            "--server",
            "s",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("GLIBC_TUNABLES"), "{stderr}");
    assert!(
        !stderr.contains("glibc.malloc.check=3"),
        "no value in errors: {stderr}"
    );
}

#[tokio::test]
async fn the_unsandboxed_helper_never_holds_the_servers_environment() {
    let dir = crate::support::TempDir::new("helper-env");
    std::fs::set_permissions(
        dir.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let key = dir.path("key");
    std::fs::write(&key, "helper-must-not-hold-this").unwrap();
    // glibc's loader writes its debug log wherever LD_DEBUG_OUTPUT says, in any dynamically
    // linked process whose environment has it: a file appearing here means a process outside
    // the sandbox (the server's Landlock rules do not allow writing here) ran with the
    // server's environment.
    let log = dir.path("ld");
    let w = Warden::builder(vec![probe_bin()])
        .args(["--env", "LD_DEBUG=files"])
        .args(["--env", &format!("LD_DEBUG_OUTPUT={}", log.display())])
        .args(["--env-allow-loader", "LD_DEBUG,LD_DEBUG_OUTPUT"])
        .args(["--env-file", &format!("API_KEY={}", key.display())])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let got = call(&m, w.pid(), vec!["env".into(), "server_pid".into()]).await;
    // Explicitly allowed, the variables reach the server...
    let env = env_of(&got["env"]);
    assert_eq!(env["LD_DEBUG"], "files", "{env:?}");
    // ...and nothing else: not the supervisor, which is not sandboxed.
    let server: i32 = got["server_pid"]
        .trim_start_matches("ALLOWED: ")
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{server}/stat")).unwrap();
    let supervisor = mcp_warden::sandbox::exec::parse_ppid(&stat).unwrap();
    let environ = std::fs::read(format!("/proc/{supervisor}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for held in ["LD_DEBUG", "helper-must-not-hold-this", "API_KEY"] {
        assert!(
            !environ.contains(held),
            "the supervisor holds {held}: {environ}"
        );
    }
    let written: Vec<_> = std::fs::read_dir(dir.dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("ld"))
        .collect();
    assert!(
        written.is_empty(),
        "a loader outside the sandbox read LD_DEBUG: {written:?}"
    );
    m.delete().await;
}

/// The real uid of a session's server, from its `/proc/self/status`.
async fn server_uid(w: &Warden, m: &Mcp) -> u32 {
    let got = call(m, w.pid(), vec!["status".into()]).await;
    got["status"]
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_root_sidecar_gives_each_session_a_uid_of_its_own() {
    if !is_root() {
        eprintln!("SKIPPED: per-session uids need a root sidecar");
        return;
    }
    let w = Warden::start(vec![probe_bin()]);
    let mut a = Mcp::new(w.mcp_url());
    let mut b = Mcp::new(w.mcp_url());
    a.initialize().await;
    b.initialize().await;
    let (ua, ub) = (server_uid(&w, &a).await, server_uid(&w, &b).await);
    assert_ne!(ua, ub);
    for u in [ua, ub] {
        assert!((60514..=61183).contains(&u), "{u}");
    }
    // Each session's work dir belongs to its server.
    let home = env_of(&call(&a, w.pid(), vec!["env".into()]).await["env"])["HOME"].clone();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&home).unwrap()),
        ua
    );
    assert!(w.logs().contains("sandbox.session_uids=60514-61183"));

    // A range of two: a third live session is refused, and a uid comes back with its session.
    let w = Warden::builder(vec![probe_bin()])
        .args(["--sandbox-uids", "70000-70001"])
        .start();
    let mut a = Mcp::new(w.mcp_url());
    let mut b = Mcp::new(w.mcp_url());
    a.initialize().await;
    b.initialize().await;
    let mut uids = [server_uid(&w, &a).await, server_uid(&w, &b).await];
    uids.sort_unstable();
    assert_eq!(uids, [70000, 70001]);
    let c = Mcp::new(w.mcp_url());
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body.get("error").is_some(), "{body}");
    w.wait_log(
        "every per-session uid of 70000-70001 is in use",
        Duration::from_secs(5),
    );
    a.delete().await;
    // The uid comes back once that session's server tree is gone.
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let mut started = false;
    for _ in 0..100 {
        let r = c.post(&init).await;
        let body: serde_json::Value = r.json().await.unwrap();
        if body.get("result").is_some() {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started, "no session after one ended: {}", w.logs());

    // Off, from the environment: the servers run as the sidecar's uid.
    let w = Warden::builder(vec![probe_bin()])
        .env("MCP_WARDEN_SANDBOX_UIDS", "off")
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert_eq!(server_uid(&w, &m).await, 0);
    assert!(w.logs().contains("sandbox.session_uids=off"));
}

#[tokio::test]
async fn a_server_other_users_cannot_reach_runs_as_the_sidecar_with_a_warning_or_not_at_all() {
    if !is_root() {
        eprintln!("SKIPPED: per-session uids need a root sidecar");
        return;
    }
    // The server installed where only root can enter, as under /root.
    let dir = crate::support::TempDir::new("closed");
    std::fs::set_permissions(
        dir.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let copy = dir.path("probe");
    std::fs::copy(probe_bin(), &copy).unwrap();
    let copy = copy.display().to_string();
    // auto: starts, says why it does not use per-session uids, and runs as root.
    let w = Warden::start(vec![copy.clone()]);
    let logs = w.logs();
    assert!(
        logs.contains("not as a uid per session")
            && logs.contains(&format!("behind {}", dir.dir().display()))
            && logs.contains("mode 0700"),
        "{logs}"
    );
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert_eq!(server_uid(&w, &m).await, 0);
    // The same for a work root other users cannot enter: servers could not reach their
    // own work dirs.
    let w = Warden::builder(vec![probe_bin()])
        .args(["--work-root", &dir.path("work").display().to_string()])
        .start();
    assert!(
        w.logs().contains("not as a uid per session"),
        "{}",
        w.logs()
    );
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert_eq!(
        call(&m, w.pid(), vec!["write_work".into()]).await["write_work"],
        "ALLOWED"
    );
    // A range asked for explicitly: no start, with the same reason.
    let mut cmd = std::process::Command::new(warden_bin());
    cmd.args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
        .args(["--sandbox-uids", "70000-70009", "--", &copy]);
    let (code, stderr) = super::sandbox::serve_or_exit(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--sandbox-uids 70000-70009")
            && stderr.contains(&format!("behind {}", dir.dir().display())),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_root_sidecar_that_cannot_switch_uids_says_so() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    // Root without CAP_SETUID and CAP_SETGID, as in a container started with --cap-drop.
    let no_setuid = [
        "setpriv",
        "--inh-caps=-setuid,-setgid",
        "--bounding-set=-setuid,-setgid",
        "--",
    ];
    let w = Warden::builder(vec![probe_bin()]).via(no_setuid).start();
    assert!(
        w.logs().contains("servers run as the sidecar's uid") && w.logs().contains("CAP_SETUID"),
        "{}",
        w.logs()
    );
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert_eq!(server_uid(&w, &m).await, 0);
    let mut cmd = std::process::Command::new(no_setuid[0]);
    cmd.args(&no_setuid[1..])
        .arg(warden_bin())
        .args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
        .args(["--sandbox-uids", "70000-70009", "--"])
        .arg(probe_bin());
    let (code, stderr) = super::sandbox::serve_or_exit(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--sandbox-uids 70000-70009") && stderr.contains("CAP_SETUID"),
        "{stderr}"
    );
}
