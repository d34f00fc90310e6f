//! Streamable HTTP behaviour, asserted on the wire against the fixture server.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::http::{self, ACCEPT_BOTH, Mcp, SseParser, final_response, sse_events, text};
use crate::support::{Warden, fixture, until};

#[tokio::test]
async fn initialize_creates_a_session_with_an_unguessable_id() {
    let w = Warden::start(fixture());
    let mut a = Mcp::new(w.mcp_url());
    let init = a.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "stdio-fixture");
    let id = a.session.clone().unwrap();
    assert!(
        id.len() >= 22,
        "session id {id:?} shorter than 128 bits of base64"
    );
    assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    let mut b = Mcp::new(w.mcp_url());
    b.initialize().await;
    assert_ne!(a.session, b.session);
    let r = a
        .call_tool(json!(1), "echo", json!({"text": "hello"}))
        .await;
    assert_eq!(text(&r), "hello");
    assert_eq!(r["id"], 1);
}

#[tokio::test]
async fn each_session_has_its_own_server_process() {
    let w = Warden::start(fixture());
    let mut a = Mcp::new(w.mcp_url());
    let mut b = Mcp::new(w.mcp_url());
    a.initialize().await;
    b.initialize().await;
    let pa = text(&a.call_tool(json!(1), "pid", json!({})).await);
    let pb = text(&b.call_tool(json!(1), "pid", json!({})).await);
    assert_ne!(pa, pb, "two sessions share a server process");
}

#[tokio::test]
async fn accept_and_content_type_are_checked() {
    let w = Warden::start(fixture());
    let c = reqwest::Client::new();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let r = c
        .post(w.mcp_url())
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let r = c
        .post(w.mcp_url())
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "text/plain")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c
        .get(w.mcp_url())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let r = c
        .post(w.mcp_url())
        .header("accept", "*/*")
        .header("content-type", "application/json; charset=utf-8")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "wildcard accept and charset parameter are fine"
    );
}

#[tokio::test]
async fn session_header_rules() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    // No session on a non-initialize request: 400.
    let r = m
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(r.status(), 400);
    // Unknown session: 404, for POST, GET and DELETE.
    m.session = Some("nonexistent-session".into());
    assert_eq!(
        m.post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
            .await
            .status(),
        404
    );
    assert_eq!(m.get_stream(None).await.status(), 404);
    assert_eq!(m.delete().await.status(), 404);
}

#[tokio::test]
async fn notifications_and_responses_get_202() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m
        .post(&json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed"}))
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), "");
    let r = m
        .post(&json!({"jsonrpc":"2.0","id":"unknown","result":{}}))
        .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn protocol_version_header_is_validated() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    m.version = "1999-01-01".into();
    let r = m
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(r.status(), 400);
    m.version = "2025-06-18".into();
    let r = m
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn sessionless_era_requests_get_the_fallback_answer() {
    // With the sessionless era turned off, as a server of the session era alone.
    let w = Warden::builder(fixture()).arg("--no-sessionless").start();
    let c = reqwest::Client::new();
    // What a 2026-07-28 client sends first: server/discover with the modern version header.
    let discover = json!({"jsonrpc":"2.0","id":"d","method":"server/discover","params":{"_meta":{
        "io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    let r = c
        .post(w.mcp_url())
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .body(discover.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let code = body["error"]["code"].as_i64().unwrap();
    // Not a recognized modern error (-32020..-32022), which would stop the client's fallback.
    assert!(!(-32022..=-32020).contains(&code), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2025-11-25"),
        "names supported versions: {body}"
    );
    // Without the header, server/discover without a session is refused the same way.
    let r = c
        .post(w.mcp_url())
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(discover.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // No server process was started for either.
    assert!(!w.logs().contains("session started"), "{}", w.logs());
}

#[tokio::test]
async fn origin_is_checked() {
    let w = Warden::start(fixture());
    let c = reqwest::Client::new();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let post = |origin: Option<&'static str>| {
        let mut r = c
            .post(w.mcp_url())
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(init.to_string());
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(
        post(Some("http://evil.example.com"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(Some("http://localhost.evil.com"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(post(Some("null")).await.unwrap().status(), 403);
    assert_eq!(
        post(Some("http://localhost:3000")).await.unwrap().status(),
        200
    );
    assert_eq!(post(None).await.unwrap().status(), 200);
    // Configured origins are allowed too.
    let w2 = Warden::builder(fixture())
        .args(["--allowed-origin", "https://app.example.com"])
        .start();
    let r = c
        .post(w2.mcp_url())
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("origin", "https://app.example.com")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_foreign_host_is_refused_on_a_loopback_listener() {
    // DNS rebinding: a page on evil.example.com resolved to 127.0.0.1 reaches us with its own
    // Host, and a same-origin GET /sse carries no Origin at all.
    let w = Warden::start(fixture());
    let c = reqwest::Client::new();
    let r = c
        .get(w.url("/sse"))
        .header("host", "evil.example.com")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let r = c
        .post(w.mcp_url())
        .header("host", "evil.example.com:8080")
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        !w.logs().contains("session started"),
        "no server was started for a foreign host"
    );
    for host in ["localhost", "127.0.0.1:9", "[::1]:1234"] {
        let r = c
            .post(w.mcp_url())
            .header("host", host)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(init.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    let w2 = Warden::builder(fixture())
        .args(["--allowed-host", "tools.internal"])
        .start();
    let r = c
        .post(w2.mcp_url())
        .header("host", "tools.internal:443")
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn progress_turns_the_answer_into_an_sse_stream_with_event_ids() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m
        .post(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"progress","arguments":{"steps":3},"_meta":{"progressToken":"tok"}}}))
        .await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    let events = sse_events(r).await;
    // Priming event (2025-11-25): an id, a retry, and empty data.
    assert_eq!(events[0].data, "");
    assert!(events[0].id.is_some() && events[0].retry.is_some());
    let msgs: Vec<Value> = events[1..].iter().map(|e| e.json()).collect();
    assert_eq!(msgs.len(), 4, "{events:?}");
    for (i, m) in msgs[..3].iter().enumerate() {
        assert_eq!(m["method"], "notifications/progress");
        assert_eq!(m["params"]["progress"], i as u64 + 1);
    }
    assert_eq!(text(&msgs[3]), "done in 3 steps");
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "event ids are unique");
}

#[tokio::test]
async fn no_priming_event_for_clients_older_than_2025_11_25() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.version = "2025-06-18".into();
    m.initialize().await;
    let r = m
        .post(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"progress","arguments":{"steps":2},"_meta":{"progressToken":1}}}))
        .await;
    let events = sse_events(r).await;
    assert!(events.iter().all(|e| !e.data.is_empty()), "{events:?}");
    assert_eq!(events.len(), 3);
}

#[tokio::test]
async fn batches_only_in_2025_03_26() {
    let w = Warden::start(fixture());
    let mut old = Mcp::new(w.mcp_url());
    old.version = "2025-03-26".into();
    old.initialize().await;
    let batch = json!([
        {"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"text":"A"}}},
        {"jsonrpc":"2.0","method":"notifications/roots/list_changed"},
        {"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"echo","arguments":{"text":"B"}}}
    ]);
    let r = old.post(&batch).await;
    assert_eq!(r.status(), 200);
    let mut answers: Vec<(String, String)> = sse_events(r)
        .await
        .iter()
        .map(|e| e.json())
        .filter(|v| v.get("result").is_some())
        .map(|v| (v["id"].as_str().unwrap().to_owned(), text(&v)))
        .collect();
    answers.sort();
    assert_eq!(
        answers,
        vec![("a".into(), "A".into()), ("b".into(), "B".into())]
    );
    // Only notifications: 202.
    let r = old
        .post(&json!([{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}]))
        .await;
    assert_eq!(r.status(), 202);

    let mut new = Mcp::new(w.mcp_url());
    new.initialize().await;
    let r = new.post(&batch).await;
    assert_eq!(r.status(), 400);
    // initialize may never be batched.
    let c = reqwest::Client::new();
    let r = c
        .post(w.mcp_url())
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(json!([{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn server_requests_travel_on_the_get_stream_and_answers_go_back() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize_with(json!({"sampling": {}})).await;
    let get = m.get_stream(None).await;
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "text/event-stream");
    // Wait for the stream to be attached before triggering (the priming event proves it).
    let mut get = get;
    let mut parser = SseParser::default();
    let first = http::with_timeout(Duration::from_secs(5), get.chunk())
        .await
        .unwrap()
        .unwrap();
    assert!(parser.push(&first).iter().any(|e| e.data.is_empty()));
    let m2 = m.clone();
    let call = tokio::spawn(async move {
        m2.call_tool(json!("s1"), "sample", json!({"prompt":"ping"}))
            .await
    });
    // The sampling request arrives on the GET stream…
    let request = http::with_timeout(Duration::from_secs(10), async {
        loop {
            let chunk = get.chunk().await.unwrap().unwrap();
            if let Some(e) = parser
                .push(&chunk)
                .into_iter()
                .find(|e| e.json()["method"] == "sampling/createMessage")
            {
                return e.json();
            }
        }
    })
    .await;
    // …and the client's answer (a POSTed response) reaches the server.
    let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":{"role":"assistant","content":{"type":"text","text":"pong"},"model":"m"}});
    assert_eq!(m.post(&answer).await.status(), 202);
    let result = http::with_timeout(Duration::from_secs(10), call)
        .await
        .unwrap();
    assert_eq!(text(&result), "sampled: pong");
}

#[tokio::test]
async fn without_a_get_stream_server_requests_use_the_request_stream() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize_with(json!({"sampling": {}})).await;
    let mut resp = m.post(&json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"sample","arguments":{"prompt":"x"}}})).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut parser = SseParser::default();
    let mut got = Vec::new();
    let request = loop {
        let chunk = http::with_timeout(Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap();
        got.extend(parser.push(&chunk));
        if let Some(e) = got
            .iter()
            .find(|e| e.json()["method"] == "sampling/createMessage")
        {
            break e.json();
        }
    };
    let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":{"role":"assistant","content":{"type":"text","text":"ok"},"model":"m"}});
    assert_eq!(m.post(&answer).await.status(), 202);
    let rest = http::with_timeout(Duration::from_secs(10), sse_events(resp)).await;
    assert_eq!(text(&rest.last().unwrap().json()), "sampled: ok");
}

#[tokio::test]
async fn resuming_a_dropped_stream_loses_and_duplicates_nothing() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let steps = 40;
    let mut resp = m
        .post(&json!({"jsonrpc":"2.0","id":"r","method":"tools/call","params":{"name":"progress","arguments":{"steps":steps,"interval_ms":25},"_meta":{"progressToken":"p"}}}))
        .await;
    let mut parser = SseParser::default();
    let mut seen: Vec<http::SseEvent> = Vec::new();
    // Read a few progress events, then drop the connection mid-stream.
    while seen.iter().filter(|e| !e.data.is_empty()).count() < 5 {
        let chunk = http::with_timeout(Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap();
        seen.extend(parser.push(&chunk));
    }
    drop(resp);
    let last = seen.last().unwrap().id.clone().unwrap();
    // Resume with Last-Event-ID on a GET.
    let resumed = m.get_stream(Some(&last)).await;
    assert_eq!(resumed.status(), 200);
    let rest = http::with_timeout(Duration::from_secs(20), sse_events(resumed)).await;
    let all: Vec<Value> = seen
        .iter()
        .chain(rest.iter())
        .filter(|e| !e.data.is_empty())
        .map(|e| e.json())
        .collect();
    let progress: Vec<u64> = all
        .iter()
        .filter(|v| v["method"] == "notifications/progress")
        .map(|v| v["params"]["progress"].as_u64().unwrap())
        .collect();
    assert_eq!(
        progress,
        (1..=steps).collect::<Vec<_>>(),
        "every progress event exactly once, in order"
    );
    assert_eq!(text(all.last().unwrap()), format!("done in {steps} steps"));
    let ids: Vec<_> = seen
        .iter()
        .chain(rest.iter())
        .filter_map(|e| e.id.clone())
        .collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
}

#[tokio::test]
async fn resuming_a_finished_stream_does_not_loop() {
    // A client may resume after it already has everything (TS SDK does after an error
    // response): it gets the standalone stream if free, else 405 — never an instant close.
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m.post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"progress","arguments":{"steps":1},"_meta":{"progressToken":"p"}}})).await;
    let events = sse_events(r).await;
    let last = events.last().unwrap().id.clone().unwrap();
    let standalone = m.get_stream(Some(&last)).await;
    assert_eq!(standalone.status(), 200);
    let again = m.get_stream(Some(&last)).await;
    assert_eq!(again.status(), 405);
    drop(standalone);
}

#[tokio::test]
async fn garbage_ids_and_bad_event_ids_are_refused() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    for bad in [
        json!({"jsonrpc":"2.0","id":null,"method":"x"}),
        json!({"jsonrpc":"2.0","id":1.5,"method":"x"}),
        json!({"nope":1}),
        json!([]),
    ] {
        assert_eq!(m.post(&bad).await.status(), 400, "{bad}");
    }
    assert_eq!(m.get_stream(Some("not-an-id")).await.status(), 400);
    assert_eq!(m.get_stream(Some("0-999999")).await.status(), 400);
    let r = m
        .client
        .post(&m.url)
        .headers(m.headers())
        .body(vec![0xff, 0xfe, b'{'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a_duplicate_request_id_in_flight_is_refused() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let m2 = m.clone();
    let slow =
        tokio::spawn(async move { m2.call_tool(json!(5), "slow", json!({"ms": 800})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = m.post(&json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"dup"}}})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(text(&slow.await.unwrap()), "slept 800 ms");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let w = Warden::builder(fixture())
        .args(["--max-message-bytes", "64KiB"])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let big = "z".repeat(70 * 1024);
    let r = m.post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text": big}}})).await;
    assert_eq!(r.status(), 413);
    // The session is unaffected.
    assert_eq!(
        text(
            &m.call_tool(json!(2), "echo", json!({"text":"still here"}))
                .await
        ),
        "still here"
    );
}

#[tokio::test]
async fn deeply_nested_json_is_refused() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"x":{}1{}}}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let r = m
        .client
        .post(&m.url)
        .headers(m.headers())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        text(&m.call_tool(json!(2), "echo", json!({"text":"ok"})).await),
        "ok"
    );
}

#[tokio::test]
async fn fifty_concurrent_sessions_each_get_only_their_own_answers() {
    let w = Warden::builder(fixture())
        .args(["--max-sessions", "60"])
        .start();
    let mut tasks = Vec::new();
    for s in 0..50 {
        let url = w.mcp_url();
        tasks.push(tokio::spawn(async move {
            let mut m = Mcp::new(url);
            m.initialize().await;
            let mut inflight = Vec::new();
            for i in 0..10 {
                let m = m.clone();
                inflight.push(tokio::spawn(async move {
                    let want = format!("session {s} call {i}");
                    let r = m.call_tool(json!(i), "echo", json!({"text": want})).await;
                    (want, r)
                }));
            }
            for t in inflight {
                let (want, r) = t.await.unwrap();
                assert_eq!(text(&r), want, "answer delivered to the wrong request: {r}");
            }
            m.delete().await;
        }));
    }
    for t in tasks {
        http::with_timeout(Duration::from_secs(60), t)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn delete_ends_the_session_and_its_server() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let pid: i32 = text(&m.call_tool(json!(1), "pid", json!({})).await)
        .parse()
        .unwrap();
    assert!(crate::support::proc::alive(pid));
    assert_eq!(m.delete().await.status(), 200);
    assert!(
        until(Duration::from_secs(10), || (!crate::support::proc::alive(
            pid
        ))
        .then_some(()))
        .await
        .is_some()
    );
    assert_eq!(
        m.post(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn client_cancellation_reaches_the_server_and_ends_the_stream() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let m2 = m.clone();
    let pending = tokio::spawn(async move {
        m2.post(&json!({"jsonrpc":"2.0","id":"h","method":"tools/call","params":{"name":"hang","arguments":{}}})).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = m.post(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"h","reason":"user"}})).await;
    assert_eq!(r.status(), 202);
    let resp = http::with_timeout(Duration::from_secs(5), pending)
        .await
        .unwrap();
    // The answer ends without a response (the client no longer expects one).
    let body = http::with_timeout(Duration::from_secs(5), final_response(resp)).await;
    assert_eq!(body, Value::Null);
    // The session goes on.
    assert_eq!(
        text(&m.call_tool(json!(2), "echo", json!({"text":"next"})).await),
        "next"
    );
}

#[tokio::test]
async fn an_early_refusal_keeps_the_connection_usable() {
    // A client that sends headers and body in separate writes, is refused (a 2026-07-28
    // probe), and reuses the connection for initialize must get its answer, not a reset.
    use tokio::io::AsyncWriteExt;
    let w = Warden::start(fixture());
    let mut tcp = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    let probe = r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: {ACCEPT_BOTH}\r\ncontent-type: application/json\r\nmcp-protocol-version: 2026-07-28\r\ncontent-length: {}\r\n\r\n",
        probe.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tcp.write_all(probe.as_bytes()).await.unwrap();
    let first = read_response(&mut tcp).await;
    assert!(first.starts_with("HTTP/1.1 400"), "{first}");
    let init = json!({"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}).to_string();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: {ACCEPT_BOTH}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{init}",
        init.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let second = read_response(&mut tcp).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

/// Reads one HTTP/1.1 response with a Content-Length body from a raw connection.
async fn read_response(tcp: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// Posts a call without waiting for its answer.
fn call_later(m: &Mcp, id: Value, name: &str, args: Value) -> tokio::task::JoinHandle<Value> {
    let m = m.clone();
    let name = name.to_owned();
    tokio::spawn(async move { m.call_tool(id, &name, args).await })
}

#[tokio::test]
async fn a_late_answer_never_answers_a_new_request_with_the_same_id() {
    // The server answers `late` whatever happens meanwhile, with an e-mail address that only
    // `late`'s answers have redacted. A client that gave up on a request (cancelled, or
    // timed out) and reused its id must get the answer of its new request.
    let dir = crate::support::TempDir::new("late-answers");
    let config = dir.path("warden.toml");
    std::fs::write(
        &config,
        "[policy]\ndefault = \"allow\"\n\n[[redact]]\nname = \"mail\"\ntools = [\"late\"]\ndetectors = [\"email\"]\n",
    )
    .unwrap();
    let w = Warden::builder(fixture())
        .args(["--config", config.to_str().unwrap()])
        .args(["--request-timeout", "2s"])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let record = json!({"text": "the record of bob@example.com", "ms": 400});

    // Cancelled.
    let first = call_later(&m, json!(5), "late", record.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = m
        .post(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5}}))
        .await;
    assert_eq!(r.status(), 202);
    let second = call_later(&m, json!(5), "slow", json!({"ms": 1200}));
    assert_eq!(
        http::with_timeout(Duration::from_secs(10), first)
            .await
            .unwrap(),
        Value::Null,
        "a cancelled request gets no answer"
    );
    let answer = http::with_timeout(Duration::from_secs(10), second)
        .await
        .unwrap();
    assert_eq!(answer["id"], 5);
    assert_eq!(text(&answer), "slept 1200 ms", "{answer}");

    // Timed out.
    let slow_record = json!({"text": "the record of bob@example.com", "ms": 3000});
    let first = m.call_tool(json!("t"), "late", slow_record).await;
    assert_eq!(first["error"]["code"], -32001, "{first}");
    let answer = m.call_tool(json!("t"), "slow", json!({"ms": 1500})).await;
    assert_eq!(answer["id"], "t");
    assert_eq!(text(&answer), "slept 1500 ms", "{answer}");
    assert!(!answer.to_string().contains("bob@example.com"));

    // Each request reached the server under an id of its own, and the cancellation named
    // the id the server knew the cancelled request by.
    let seen = m.call_tool(json!(9), "received", json!({})).await;
    let seen: Vec<Value> = serde_json::from_str(&text(&seen)).unwrap();
    let calls: Vec<&Value> = seen
        .iter()
        .filter(|s| s["method"] == "tools/call")
        .collect();
    let ids: std::collections::HashSet<String> =
        calls.iter().map(|c| c["id"].to_string()).collect();
    assert_eq!(ids.len(), calls.len(), "ids reused at the server: {seen:?}");
    let cancels: Vec<&Value> = seen
        .iter()
        .filter(|s| s["method"] == "notifications/cancelled")
        .collect();
    assert_eq!(cancels.len(), 2, "{seen:?}");
    assert_eq!(cancels[0]["requestId"], calls[0]["id"], "{seen:?}");
    assert_eq!(cancels[1]["requestId"], calls[2]["id"], "{seen:?}");
}
