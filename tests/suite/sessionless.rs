//! 2026-07-28 (sessionless) callers on the same endpoint as session-era clients: the official
//! Python SDK in its modern-only and auto modes against real servers, the era's refusals,
//! cancellation by a closed response, principals kept apart, and a wide burst of one
//! principal's calls with none lost.

use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use super::auth::{DevWarden, mcp_with};
use super::clients::json;
use crate::support::http::text;
use crate::support::{Warden, everything, fixture, py, time_server};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// `sessionless_client.py ARGS` against `server` wrapped by a fresh sidecar: the sidecar and
/// what the client printed.
fn python_client(server: Vec<String>, args: &[&str]) -> (Warden, Value) {
    let w = Warden::start(server);
    let url = w.mcp_url();
    let argv: Vec<&str> = std::iter::once(url.as_str())
        .chain(args.iter().copied())
        .collect();
    let out = json(&py("sessionless_client.py", &argv, CLIENT_TIMEOUT));
    (w, out)
}

fn envelope() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientCapabilities": {}})
}

/// A modern POST: the era's headers (each overridable, `None` to leave one out) and body.
async fn modern(
    url: &str,
    bearer: Option<&str>,
    headers: &[(&str, Option<&str>)],
    body: &Value,
) -> (u16, Value) {
    let method = body["method"].as_str().unwrap_or("").to_owned();
    let mut defaults: Vec<(&str, Option<String>)> = vec![
        ("mcp-protocol-version", Some("2026-07-28".into())),
        ("mcp-method", Some(method)),
    ];
    if let Some(name) = body["params"]["name"].as_str() {
        defaults.push(("mcp-name", Some(name.to_owned())));
    }
    for (k, v) in headers {
        defaults.retain(|(d, _)| d != k);
        defaults.push((k, v.map(str::to_owned)));
    }
    let mut req = reqwest::Client::new()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json");
    for (k, v) in defaults {
        if let Some(v) = v {
            req = req.header(k, v);
        }
    }
    if let Some(t) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let r = req.body(body.to_string()).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// What is sent (headers overridden, body) and what must come back (status, error code).
type Case = (
    &'static str,
    Vec<(&'static str, Option<&'static str>)>,
    Value,
    u16,
    i64,
);

fn call(id: Value, tool: &str, args: Value) -> Value {
    let mut params = json!({"name": tool, "arguments": args});
    params["_meta"] = envelope();
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params})
}

#[test]
fn a_modern_only_python_client_uses_server_everything() {
    let (w, out) = python_client(everything(), &["2026-07-28", "everything"]);
    assert_eq!(out["protocolVersion"], "2026-07-28", "{out}");
    assert_eq!(out["discover"]["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(out["discover"]["serverInfo"], "mcp-servers/everything");
    for cap in ["prompts", "resources", "tools"] {
        assert!(
            out["discover"]["capabilities"]
                .as_array()
                .unwrap()
                .contains(&json!(cap)),
            "{out}"
        );
    }
    assert!(
        out["tools"].as_array().unwrap().contains(&json!("echo")),
        "{out}"
    );
    assert_eq!(out["echo"], "Echo: hello sessionless");
    assert_eq!(out["progress"], json!([1.0, 2.0, 3.0]), "{out}");
    assert!(out["longRunning"].as_str().unwrap().contains("completed"));
    assert!(
        out["prompts"]
            .as_array()
            .unwrap()
            .contains(&json!("simple-prompt"))
    );
    assert!(out["prompt"].as_str().unwrap().contains("simple prompt"));
    assert_eq!(out["resource"], out["read"]);
    assert!(out["templates"].as_u64().unwrap() >= 1);
    assert_eq!(out["cancelled"], "MCPError", "{out}");
    assert_eq!(out["afterCancel"], "Echo: after cancel");
    // The sidecar, not the session-era server, answered discover.
    assert!(!w.logs().contains("server/discover"), "{}", w.logs());
}

#[test]
fn an_auto_mode_python_client_adopts_the_sessionless_era_with_mcp_server_time() {
    let (_w, out) = python_client(time_server(), &["auto", "time"]);
    assert_eq!(out["protocolVersion"], "2026-07-28", "{out}");
    assert_eq!(out["discover"]["serverInfo"], "mcp-time");
    assert_eq!(out["tools"], json!(["convert_time", "get_current_time"]));
    assert_eq!(out["time"]["timezone"], "UTC");
}

#[test]
fn two_hundred_concurrent_modern_calls_of_one_principal_are_all_answered() {
    let (_w, out) = python_client(
        everything(),
        &["2026-07-28", "concurrent", "--count", "200"],
    );
    assert_eq!(out["answered"], 200, "{out}");
}

#[tokio::test]
async fn each_refusal_of_the_era_has_its_code_and_status() {
    let w = Warden::start(fixture());
    let url = w.mcp_url();
    let echo = call(json!(1), "echo", json!({"text": "x"}));
    let (status, body) = modern(&url, None, &[], &echo).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["resultType"], "complete", "{body}");
    assert_eq!(body["id"], 1);

    let cases: Vec<Case> = vec![
        (
            "no envelope",
            vec![],
            json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}),
            400,
            -32602,
        ),
        (
            "no MCP-Protocol-Version header",
            vec![("mcp-protocol-version", None)],
            echo.clone(),
            400,
            -32020,
        ),
        (
            "Mcp-Method names another method",
            vec![("mcp-method", Some("tools/list"))],
            echo.clone(),
            400,
            -32020,
        ),
        (
            "Mcp-Name names another tool",
            vec![("mcp-name", Some("env"))],
            echo.clone(),
            400,
            -32020,
        ),
        (
            "no Mcp-Name on tools/call",
            vec![("mcp-name", None)],
            echo.clone(),
            400,
            -32020,
        ),
        (
            "a version the sidecar does not speak",
            vec![("mcp-protocol-version", Some("2030-01-01"))],
            json!({"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{
                "io.modelcontextprotocol/protocolVersion":"2030-01-01",
                "io.modelcontextprotocol/clientCapabilities":{}}}}),
            400,
            -32022,
        ),
        (
            "a method the era removed",
            vec![],
            json!({"jsonrpc":"2.0","id":4,"method":"ping","params":{"_meta":envelope()}}),
            404,
            -32601,
        ),
    ];
    for (what, headers, body, want_status, want_code) in cases {
        let (status, answer) = modern(&url, None, &headers, &body).await;
        assert_eq!(status, want_status, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], want_code, "{what}: {answer}");
        assert_eq!(answer["id"], body["id"], "{what}: {answer}");
    }
    let (_, unsupported) = modern(
        &url,
        None,
        &[("mcp-protocol-version", Some("2030-01-01"))],
        &json!({"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{
            "io.modelcontextprotocol/protocolVersion":"2030-01-01",
            "io.modelcontextprotocol/clientCapabilities":{}}}}),
    )
    .await;
    assert_eq!(
        unsupported["error"]["data"],
        json!({"supported":["2026-07-28"],"requested":"2030-01-01"})
    );
    // A client that can be asked things (here: sampling) is sent to the session era, where
    // its server may ask them: the answer is not one of the era's codes, so it falls back.
    let discover = json!({"jsonrpc":"2.0","id":5,"method":"server/discover","params":{"_meta":{
        "io.modelcontextprotocol/protocolVersion":"2026-07-28",
        "io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}}});
    let (status, answer) = modern(&url, None, &[], &discover).await;
    assert_eq!(status, 400, "{answer}");
    let code = answer["error"]["code"].as_i64().unwrap();
    assert!(!(-32022..=-32020).contains(&code), "{answer}");
    let mut plain = discover.clone();
    plain["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let (status, answer) = modern(&url, None, &[], &plain).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["supportedVersions"], json!(["2026-07-28"]));
    // The era has no GET stream and no session to delete.
    let c = reqwest::Client::new();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = c
            .request(method.clone(), &url)
            .header("accept", ACCEPT_BOTH)
            .header("mcp-protocol-version", "2026-07-28")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "POST");
    }
    // Batches do not exist in the era.
    let (status, _) = modern(
        &url,
        None,
        &[("mcp-method", Some("tools/call"))],
        &json!([echo]),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn closing_the_response_cancels_the_call_at_the_server() {
    let w = Warden::start(fixture());
    let url = w.mcp_url();
    // Ids repeat across sessionless callers: the server must see ids of the sidecar's own.
    let hang = call(json!(1), "hang", json!({}));
    let gone =
        tokio::time::timeout(Duration::from_millis(500), modern(&url, None, &[], &hang)).await;
    assert!(gone.is_err(), "a hanging call cannot have been answered");
    let again = call(json!(1), "slow", json!({"ms": 10}));
    let (status, body) = modern(&url, None, &[], &again).await;
    assert_eq!(
        (status, text(&body)),
        (200, "slept 10 ms".to_owned()),
        "{body}"
    );
    // What reached the server: both calls under distinct ids, and the cancellation of the
    // first under the id the server knew it by.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, seen) = modern(&url, None, &[], &call(json!(9), "received", json!({}))).await;
        let seen: Vec<Value> = serde_json::from_str(&text(&seen)).unwrap();
        let calls: Vec<&Value> = seen
            .iter()
            .filter(|s| s["method"] == "tools/call")
            .collect();
        let cancels: Vec<&Value> = seen
            .iter()
            .filter(|s| s["method"] == "notifications/cancelled")
            .collect();
        if let Some(cancel) = cancels.first() {
            assert_eq!(cancel["requestId"], calls[0]["id"], "{seen:?}");
            assert_ne!(calls[0]["id"], calls[1]["id"], "{seen:?}");
            assert_ne!(
                calls[0]["id"],
                json!(1),
                "the caller's id reached the server"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cancellation reached the server: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn principals_never_share_a_server_and_session_era_clients_keep_their_sessions() {
    let dev = DevWarden::start(&[]);
    let url = dev.warden.mcp_url();
    let alice = dev.token("alice", "", "1h");
    let bob = dev.token("bob", "", "1h");
    let pid = call(json!(1), "pid", json!({}));
    let (_, a1) = modern(&url, Some(&alice), &[], &pid).await;
    let (_, a2) = modern(&url, Some(&alice), &[], &pid).await;
    let (_, b1) = modern(&url, Some(&bob), &[], &pid).await;
    assert_eq!(
        text(&a1),
        text(&a2),
        "one principal's calls share its server"
    );
    assert_ne!(text(&a1), text(&b1), "two principals got one server");
    // A session-era client on the same endpoint at the same time.
    let mut m = mcp_with(url.clone(), &alice);
    m.initialize().await;
    let r = m
        .call_tool(json!(2), "echo", json!({"text": "session era"}))
        .await;
    assert_eq!(text(&r), "session era", "{r}");
    assert!(r["result"].get("resultType").is_none(), "{r}");
}

fn call_with_caps(id: Value, tool: &str, args: Value, caps: Value) -> Value {
    let mut c = call(id, tool, args);
    c["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = caps;
    c
}

#[test]
fn a_modern_only_python_client_answers_sampling_elicitation_and_roots_in_round_trips() {
    let (_w, out) = python_client(everything(), &["2026-07-28", "mrtr"]);
    assert_eq!(out["protocolVersion"], "2026-07-28", "{out}");
    // Asked through discover, such a client is sent to the session era.
    assert_eq!(out["discoverFallback"], true, "{out}");
    assert!(
        out["sampling"]
            .as_str()
            .unwrap()
            .contains("sampled-by-py-client"),
        "{out}"
    );
    assert!(
        out["elicitation"].as_str().unwrap().contains("octocat"),
        "{out}"
    );
    assert!(
        out["roots"]
            .as_str()
            .unwrap()
            .contains("file:///srv/project"),
        "{out}"
    );
    assert_eq!(
        out["asked"],
        json!({"sampling": 1, "elicitation": 1, "roots": 1})
    );
}

#[tokio::test]
async fn a_request_state_opens_once_for_its_own_caller_only() {
    let dev = DevWarden::start(&[]);
    let url = dev.warden.mcp_url();
    let alice = dev.token("alice", "", "1h");
    let bob = dev.token("bob", "", "1h");
    let sampling = json!({"sampling": {}});
    let ask = call_with_caps(
        json!(1),
        "sample",
        json!({"prompt": "hello"}),
        sampling.clone(),
    );
    let (status, first) = modern(&url, Some(&alice), &[], &ask).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let requests = first["result"]["inputRequests"].as_object().unwrap();
    assert_eq!(requests.len(), 1, "{first}");
    let (key, question) = requests.iter().next().unwrap();
    assert_eq!(question["method"], "sampling/createMessage");
    assert!(question.get("id").is_none(), "{question}");
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let retry = |state: &str, id: i64| {
        let mut r = call_with_caps(
            json!(id),
            "sample",
            json!({"prompt": "hello"}),
            sampling.clone(),
        );
        r["params"]["requestState"] = json!(state);
        r["params"]["inputResponses"] = json!({ key.clone(): {
            "role": "assistant", "model": "m", "content": {"type": "text", "text": "answered"}}});
        r
    };
    // Another principal's retry, and forgeries, open nothing.
    let (status, foreign) = modern(&url, Some(&bob), &[], &retry(&state, 2)).await;
    assert_eq!(
        (status, foreign["error"]["code"].clone()),
        (400, json!(-32602)),
        "{foreign}"
    );
    let mut forged = state.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (body, _) = state.split_once('.').unwrap();
    for bad in [forged, format!("{body}."), "garbage".into()] {
        let (status, answer) = modern(&url, Some(&alice), &[], &retry(&bad, 3)).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (400, json!(-32602)),
            "{bad}: {answer}"
        );
    }
    // The caller's own retry is answered by the server, under the retry's id.
    let (status, done) = modern(&url, Some(&alice), &[], &retry(&state, 4)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["id"], 4);
    assert_eq!(done["result"]["resultType"], "complete");
    assert_eq!(text(&done), "sampled: answered", "{done}");
    // And never again.
    let (status, replayed) = modern(&url, Some(&alice), &[], &retry(&state, 5)).await;
    assert_eq!(
        (status, replayed["error"]["code"].clone()),
        (400, json!(-32602)),
        "{replayed}"
    );
    // A caller that cannot be asked is not: the server's question is refused at the server.
    let plain = call(json!(6), "sample", json!({"prompt": "hello"}));
    let (status, refused) = modern(&url, Some(&alice), &[], &plain).await;
    assert_eq!(status, 200, "{refused}");
    assert_eq!(text(&refused), "sampled: <no reply>", "{refused}");
}

#[tokio::test]
async fn a_request_state_expires_with_its_request() {
    let w = Warden::builder(fixture())
        .args(["--request-timeout", "2s"])
        .start();
    let url = w.mcp_url();
    let caps = json!({"sampling": {}});
    let (_, first) = modern(
        &url,
        None,
        &[],
        &call_with_caps(json!(1), "sample", json!({}), caps.clone()),
    )
    .await;
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let key = first["result"]["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut retry = call_with_caps(json!(2), "sample", json!({}), caps);
    retry["params"]["requestState"] = json!(state);
    retry["params"]["inputResponses"] = json!({ key: {"role": "assistant", "model": "m",
        "content": {"type": "text", "text": "late"}}});
    let (status, answer) = modern(&url, None, &[], &retry).await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (400, json!(-32602)),
        "{answer}"
    );
}

#[test]
fn a_modern_only_python_client_listens_for_resource_updates() {
    let (_w, out) = python_client(everything(), &["2026-07-28", "listen"]);
    assert_eq!(
        out["honored"],
        json!(["resource_subscriptions", "tools_list_changed"]),
        "{out}"
    );
    assert_eq!(out["subscriptionId"], "listen-1");
    assert_eq!(out["event"], "ResourceUpdated", "{out}");
    assert_eq!(
        out["eventUri"],
        "demo://resource/static/document/architecture.md"
    );
}

#[tokio::test]
async fn a_question_never_reaches_another_caller_of_the_same_server() {
    let w = Warden::start(fixture());
    let url = w.mcp_url();
    let caps = json!({"sampling": {}});
    // Caller A's call asks, and A does not answer yet: its request stays parked.
    let (_, a) = modern(
        &url,
        None,
        &[],
        &call_with_caps(json!(1), "sample", json!({"prompt": "alpha"}), caps.clone()),
    )
    .await;
    assert_eq!(a["result"]["resultType"], "input_required", "{a}");
    // Caller B (same principal, same server) asks while A's request is in flight: stdio does
    // not say whose question it is, so it is refused at the server, never shown to A or B.
    let (status, b) = modern(
        &url,
        None,
        &[],
        &call_with_caps(json!(1), "sample", json!({"prompt": "bravo"}), caps.clone()),
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(text(&b), "sampled: <no reply>", "{b}");
    assert!(!b.to_string().contains("alpha"), "{b}");
    // A's round trip still completes with A's own answer.
    let key = a["result"]["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    assert!(
        a.to_string().contains("alpha") && !a.to_string().contains("bravo"),
        "{a}"
    );
    let mut retry = call_with_caps(json!(2), "sample", json!({"prompt": "alpha"}), caps);
    retry["params"]["requestState"] = a["result"]["requestState"].clone();
    retry["params"]["inputResponses"] = json!({ key: {"role": "assistant", "model": "m",
        "content": {"type": "text", "text": "for alpha"}}});
    let (status, done) = modern(&url, None, &[], &retry).await;
    assert_eq!(
        (status, text(&done)),
        (200, "sampled: for alpha".to_owned()),
        "{done}"
    );
}

#[tokio::test]
async fn unknown_methods_and_notifications_with_ids_are_refused() {
    let w = Warden::start(fixture());
    let url = w.mcp_url();
    // The server's "method not found" is a 404 in this era.
    let unknown =
        json!({"jsonrpc":"2.0","id":1,"method":"tools/unknown","params":{"_meta":envelope()}});
    let (status, body) = modern(&url, None, &[], &unknown).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!(-32601)),
        "{body}"
    );
    // A notification sent as a request could cancel another caller's request on a shared
    // server: refused before it gets there.
    let cancel = json!({"jsonrpc":"2.0","id":2,"method":"notifications/cancelled",
        "params":{"requestId":1,"_meta":envelope()}});
    let (status, body) = modern(&url, None, &[], &cancel).await;
    assert_eq!(status, 400, "{body}");
    let (_, seen) = modern(&url, None, &[], &call(json!(3), "received", json!({}))).await;
    assert!(!text(&seen).contains("notifications/cancelled"), "{seen}");
}

#[tokio::test]
async fn a_listen_stream_ends_when_its_token_expires() {
    let dev = DevWarden::start(&["--clock-skew", "0s"]);
    let token = dev.token("alice", "", "2s");
    let listen = json!({"jsonrpc":"2.0","id":"listen-1","method":"subscriptions/listen","params":{
        "notifications":{"toolsListChanged":true},"_meta":envelope()}});
    let r = reqwest::Client::new()
        .post(dev.warden.mcp_url())
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(listen.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The whole body arrives: the stream ends by itself once the token has expired.
    let body = tokio::time::timeout(Duration::from_secs(20), r.text())
        .await
        .expect("the listen stream outlived its token")
        .unwrap();
    assert!(
        body.contains("notifications/subscriptions/acknowledged"),
        "{body}"
    );
    assert!(
        body.contains("\"listen-1\""),
        "the subscription's id: {body}"
    );
}

#[tokio::test]
async fn callers_that_leave_while_their_server_starts_leave_no_server_behind() {
    let mut server = fixture();
    server.push("--slow-initialize".into());
    let w = Warden::start(server);
    let url = w.mcp_url();
    // Each caller gives up while the server is still initializing.
    let calls = (0..5).map(|i| {
        let url = url.clone();
        async move {
            let body = call(json!(i), "echo", json!({"text": "x"}));
            tokio::time::timeout(Duration::from_millis(300), modern(&url, None, &[], &body)).await
        }
    });
    for gave_up in futures_util::future::join_all(calls).await {
        assert!(gave_up.is_err(), "answered before the server started");
    }
    // Nothing could ever use those servers: none is left running.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let servers = crate::support::proc::descendants(w.pid())
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.contains("stdio_fixture"))
            })
            .count();
        if servers == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{servers} abandoned servers still run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The next caller gets a server of its own.
    let (status, body) = modern(
        &url,
        None,
        &[],
        &call(json!(9), "echo", json!({"text": "here"})),
    )
    .await;
    assert_eq!((status, text(&body)), (200, "here".to_owned()), "{body}");
}

#[tokio::test]
async fn log_lines_reach_a_caller_that_asked_for_its_level() {
    let w = Warden::start(fixture());
    let url = w.mcp_url();
    // Without a log level in the envelope: the answer alone, as JSON.
    let plain = call(json!(1), "notify", json!({"count": 2}));
    let (status, body) = modern(&url, None, &[], &plain).await;
    assert_eq!(
        (status, text(&body)),
        (200, "notified".to_owned()),
        "{body}"
    );
    // With `info`: the server's info lines come first, on the request's own stream.
    let mut asked = call(json!(2), "notify", json!({"count": 2}));
    asked["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!("info");
    let (status, body) = modern(&url, None, &[], &asked).await;
    assert_eq!(status, 200);
    let stream = body.as_str().expect("an SSE stream").to_owned();
    assert!(
        stream.contains("note 0") && stream.contains("note 1"),
        "{stream}"
    );
    assert!(stream.contains("\"notified\""), "{stream}");
    assert!(
        !stream.contains("id:"),
        "no event ids in this era: {stream}"
    );
    // With `error`: info lines are below it.
    let mut strict = call(json!(3), "notify", json!({"count": 2}));
    strict["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!("error");
    let (_, body) = modern(&url, None, &[], &strict).await;
    assert_eq!(text(&body), "notified", "{body}");
}

#[tokio::test]
async fn a_sessionless_call_without_its_scope_gets_the_step_up_challenge() {
    let d = super::policy::dir("sessionless-step-up");
    let config = r#"
[[rule]]
name = "everyday"
tools = ["echo"]
scopes = ["mcp:tools"]

[[rule]]
name = "environment"
tools = ["get-env"]
scopes = ["mcp:tools", "mcp:admin"]
"#;
    let w = super::policy::dev_warden(&d, config);
    let token = super::policy::dev_token(&d, &w, "alice", "mcp:tools");
    let url = w.mcp_url();
    let (status, echo) = modern(
        &url,
        Some(&token),
        &[],
        &call(json!(1), "echo", json!({"message": "hi"})),
    )
    .await;
    assert_eq!(
        (status, text(&echo)),
        (200, "Echo: hi".to_owned()),
        "{echo}"
    );
    let body = call(json!(2), "get-env", json!({}));
    let r = reqwest::Client::new()
        .post(&url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "get-env")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("mcp:admin"), "{challenge}");
}

#[tokio::test]
async fn a_listener_asks_for_a_bounded_number_of_resource_subscriptions() {
    let w = Warden::start(everything());
    let uris: Vec<String> = (0..65)
        .map(|i| format!("demo://resource/dynamic/text/{i}"))
        .collect();
    let listen = json!({"jsonrpc":"2.0","id":"listen-1","method":"subscriptions/listen","params":{
        "notifications":{"resourceSubscriptions": uris},"_meta":envelope()}});
    let (status, body) = modern(&w.mcp_url(), None, &[], &listen).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!(-32602)),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("64"),
        "{body}"
    );
}

/// A POST of the era whose response is read as it arrives (for streams that stay open).
async fn open_stream(url: &str, body: &Value) -> reqwest::Response {
    let r = reqwest::Client::new()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", body["method"].as_str().unwrap())
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

/// Reads `r` until its text so far contains `wanted`; the text read.
async fn read_until(r: &mut reqwest::Response, seen: &mut String, wanted: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains(wanted) {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {wanted} on the stream: {seen}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before {wanted}: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// What the fixture says reached it (its `received` tool).
async fn received(url: &str) -> Vec<Value> {
    let (_, seen) = modern(url, None, &[], &call(json!("seen"), "received", json!({}))).await;
    serde_json::from_str(&text(&seen)).unwrap()
}

fn native_fixture() -> Vec<String> {
    let mut server = fixture();
    server.push("--modern".into());
    server
}

#[tokio::test]
async fn a_native_server_gets_modern_requests_untranslated_and_is_never_initialized() {
    let w = Warden::start(native_fixture());
    let url = w.mcp_url();
    // discover: the server's own answer (its caching hints, instructions and name), under
    // the caller's id.
    let discover = json!({"jsonrpc":"2.0","id":"d-1","method":"server/discover",
        "params":{"_meta":envelope()}});
    let (status, body) = modern(&url, None, &[], &discover).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "d-1");
    assert_eq!(body["result"]["ttlMs"], 5000, "{body}");
    assert_eq!(body["result"]["cacheScope"], "public", "{body}");
    assert_eq!(body["result"]["instructions"], "a native fixture");
    assert_eq!(
        body["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "stdio-fixture-modern"
    );
    // The envelope reaches the server as the caller sent it: a session-era server would get
    // it stripped (the server refuses any request without it).
    let mut meta = call(json!("c-1"), "meta", json!({}));
    meta["params"]["_meta"]["io.modelcontextprotocol/clientInfo"] =
        json!({"name": "native-test", "version": "1"});
    let (status, body) = modern(&url, None, &[], &meta).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "c-1");
    assert_eq!(body["result"]["resultType"], "complete");
    let seen_meta: Value = serde_json::from_str(&text(&body)).unwrap();
    assert_eq!(
        seen_meta["io.modelcontextprotocol/clientInfo"]["name"],
        "native-test"
    );
    assert_eq!(
        seen_meta["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    // Progress under the caller's token, though the server got one of the sidecar's.
    let mut progress = call(json!("c-2"), "progress", json!({"steps": 2}));
    progress["params"]["_meta"]["progressToken"] = json!("mine");
    let (_, body) = modern(&url, None, &[], &progress).await;
    let stream = body
        .as_str()
        .expect("an SSE stream of progress, then the answer");
    assert_eq!(
        stream.matches("\"progressToken\":\"mine\"").count(),
        2,
        "{stream}"
    );
    assert!(stream.contains("done in 2 steps"), "{stream}");
    // What reached the server: the probe, then requests, never `initialize`, and ids of the
    // sidecar's own.
    let seen = received(&url).await;
    let methods: Vec<&str> = seen.iter().filter_map(|s| s["method"].as_str()).collect();
    assert_eq!(methods[0], "server/discover", "{seen:?}");
    assert!(
        !methods.contains(&"initialize") && !methods.contains(&"notifications/initialized"),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|s| s["id"]
            .as_str()
            .is_none_or(|id| !["d-1", "c-1", "c-2"].contains(&id))),
        "a caller's id reached the server: {seen:?}"
    );
    // Logged before the answer; read from the sidecar's output as it arrives.
    w.wait_log("speaks 2026-07-28 itself", Duration::from_secs(10));
}

#[tokio::test]
async fn a_native_servers_round_trip_and_listen_stream_reach_the_caller() {
    let w = Warden::start(native_fixture());
    let url = w.mcp_url();
    // The server's own round trip: its question and state pass through, and the retry
    // reaches it with the answer.
    let ask = call(json!(1), "ask", json!({}));
    let (status, body) = modern(&url, None, &[], &ask).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["resultType"], "input_required", "{body}");
    assert_eq!(body["result"]["requestState"], "fixture-state");
    assert_eq!(
        body["result"]["inputRequests"]["colour"]["method"],
        "elicitation/create"
    );
    let mut retry = call(json!(2), "ask", json!({}));
    retry["params"]["requestState"] = json!("fixture-state");
    retry["params"]["inputResponses"] =
        json!({"colour": {"action": "accept", "content": {"colour": "blue"}}});
    let (_, body) = modern(&url, None, &[], &retry).await;
    assert_eq!(text(&body), "you chose blue", "{body}");
    // A listen stream: the server's acknowledgement and notifications, under the caller's
    // subscription id (the server knew it by one of the sidecar's).
    let listen = json!({"jsonrpc":"2.0","id":"my-listen","method":"subscriptions/listen",
        "params":{"notifications":{"toolsListChanged":true},"_meta":envelope()}});
    let mut stream = open_stream(&url, &listen).await;
    let mut seen = String::new();
    read_until(
        &mut stream,
        &mut seen,
        "notifications/subscriptions/acknowledged",
    )
    .await;
    let (_, told) = modern(&url, None, &[], &call(json!(3), "change", json!({}))).await;
    assert_eq!(text(&told), "told 1", "{told}");
    read_until(&mut stream, &mut seen, "notifications/tools/list_changed").await;
    assert_eq!(
        seen.matches("\"io.modelcontextprotocol/subscriptionId\":\"my-listen\"")
            .count(),
        2,
        "{seen}"
    );
    // Closing the stream cancels the subscription at the server.
    drop(stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, told) = modern(&url, None, &[], &call(json!(4), "change", json!({}))).await;
        if text(&told) == "told 0" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the subscription outlived its stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_server_that_dies_of_the_probe_is_served_as_a_session_era_server() {
    let mut server = fixture();
    server.push("--exit-on-discover".into());
    let w = Warden::start(server);
    let url = w.mcp_url();
    // The first caller does not see the probe's casualty: a server started again, without
    // the probe, answers it.
    let (status, body) = modern(
        &url,
        None,
        &[],
        &call(json!(1), "echo", json!({"text": "still here"})),
    )
    .await;
    assert_eq!(
        (status, text(&body)),
        (200, "still here".to_owned()),
        "{body}"
    );
    let seen = received(&url).await;
    assert_eq!(seen[0]["method"], "initialize", "{seen:?}");
    assert!(!w.logs().contains("speaks 2026-07-28 itself"));
}

#[test]
fn mcp_server_time_speaks_the_era_itself_and_is_bridged_natively() {
    let (w, out) = python_client(time_server(), &["2026-07-28", "time"]);
    assert_eq!(out["protocolVersion"], "2026-07-28", "{out}");
    assert_eq!(out["discover"]["serverInfo"], "mcp-time");
    assert_eq!(out["tools"], json!(["convert_time", "get_current_time"]));
    assert_eq!(out["time"]["timezone"], "UTC");
    // Logged before the answer; read from the sidecar's output as it arrives.
    w.wait_log("speaks 2026-07-28 itself", Duration::from_secs(10));
}

#[tokio::test]
async fn what_one_principals_server_claims_decides_nothing_for_another() {
    // alice's server speaks 2026-07-28 itself; bob's, the same command, does not.
    let mut server = fixture();
    server.push("--modern-when=WHO=alice".into());
    let dev = DevWarden::start_with(server, &["--env-claim", "WHO=sub"]);
    let url = dev.warden.mcp_url();
    let discover = json!({"jsonrpc":"2.0","id":"d","method":"server/discover",
        "params":{"_meta":envelope()}});
    let alice = dev.token("alice", "", "1h");
    let bob = dev.token("bob", "", "1h");
    let (status, a) = modern(&url, Some(&alice), &[], &discover).await;
    assert_eq!(
        (status, a["result"]["ttlMs"].clone()),
        (200, json!(5000)),
        "{a}"
    );
    // Alice's server asks in a round trip of its own.
    let (_, asked) = modern(&url, Some(&alice), &[], &call(json!(2), "ask", json!({}))).await;
    assert_eq!(asked["result"]["requestState"], "fixture-state", "{asked}");
    // Bob's server is still probed, and served by translation.
    let (status, b) = modern(&url, Some(&bob), &[], &discover).await;
    assert_eq!(
        (status, b["result"]["ttlMs"].clone()),
        (200, json!(0)),
        "{b}"
    );
    let (status, echoed) = modern(
        &url,
        Some(&bob),
        &[],
        &call(json!(1), "echo", json!({"text": "bob"})),
    )
    .await;
    assert_eq!((status, text(&echoed)), (200, "bob".to_owned()), "{echoed}");
    // What bob's server showed does not change how alice's retry is served.
    let mut retry = call(json!(3), "ask", json!({}));
    retry["params"]["requestState"] = json!("fixture-state");
    retry["params"]["inputResponses"] =
        json!({"colour": {"action": "accept", "content": {"colour": "green"}}});
    let (status, answered) = modern(&url, Some(&alice), &[], &retry).await;
    assert_eq!(
        (status, text(&answered)),
        (200, "you chose green".to_owned()),
        "{answered}"
    );
}
