//! Several replicas behind the load-balancer configs shipped in `examples/lb`, run by real
//! nginx and HAProxy (Debian packages): every follow-up reaches the replica that holds its
//! session, and when a replica dies its clients get 404 and start over on a live one. Also
//! the default replica id, which both transports' session ids carry.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::support::http::{Mcp, SseParser, text, with_timeout};
use crate::support::lb::Lb;
use crate::support::proc::descendants;
use crate::support::{Warden, fixture};

const REPLICAS: usize = 3;
const SESSIONS: usize = 30;
const FOLLOW_UPS: usize = 5;
const LEGACY_SESSIONS: usize = 6;
/// The replica killed halfway.
const VICTIM: usize = 1;

fn start_replicas() -> Vec<Option<Warden>> {
    start_replicas_with(|_| vec![])
}

fn start_replicas_with(extra: impl Fn(usize) -> Vec<String>) -> Vec<Option<Warden>> {
    (0..REPLICAS)
        .map(|i| {
            Some(
                Warden::builder(fixture())
                    .args(["--replica-id", &format!("mcp-warden-{i}")])
                    .args(extra(i))
                    .start(),
            )
        })
        .collect()
}

/// The replica index a session id names (`mcp-warden-<i>.<random>`).
fn owner_of(session_id: &str) -> usize {
    session_id
        .strip_prefix("mcp-warden-")
        .and_then(|rest| rest.split_once('.'))
        .and_then(|(i, _)| i.parse().ok())
        .unwrap_or_else(|| panic!("session id {session_id:?} carries no replica prefix"))
}

/// Which replica's process tree `pid` belongs to.
fn replica_of_pid(replicas: &[Option<Warden>], pid: i32) -> Option<usize> {
    replicas.iter().position(|w| {
        w.as_ref()
            .is_some_and(|w| descendants(w.pid()).contains(&pid))
    })
}

async fn server_pid(m: &Mcp, id: u64) -> i32 {
    text(&m.call_tool(json!(id), "pid", json!({})).await)
        .parse()
        .unwrap()
}

/// A Streamable HTTP session through the load balancer.
struct Session {
    mcp: Mcp,
    owner: usize,
    pid: i32,
}

async fn open_session(url: String) -> Session {
    let mut mcp = Mcp::new(url);
    mcp.initialize().await;
    let owner = owner_of(mcp.session.as_deref().unwrap());
    let pid = server_pid(&mcp, 1).await;
    Session { mcp, owner, pid }
}

/// A legacy HTTP+SSE session through the load balancer: the stream stays open while it lives.
struct Legacy {
    client: reqwest::Client,
    base: String,
    endpoint: String,
    stream: reqwest::Response,
    parser: SseParser,
    owner: usize,
    pid: i32,
}

impl Legacy {
    async fn open(base: String) -> Legacy {
        let client = reqwest::Client::new();
        let stream = client
            .get(format!("{base}/sse"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        let mut l = Legacy {
            client,
            base,
            endpoint: String::new(),
            stream,
            parser: SseParser::default(),
            owner: usize::MAX,
            pid: 0,
        };
        let (event, data) = l.next().await.expect("endpoint event");
        assert_eq!(event.as_deref(), Some("endpoint"));
        let sid = data
            .split_once("sessionId=")
            .map(|(_, s)| s.to_owned())
            .unwrap();
        l.endpoint = data;
        l.owner = owner_of(&sid);
        let init = l
            .request(
                json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion":"2024-11-05","capabilities":{},
                "clientInfo":{"name":"lb-test","version":"1"}}}),
            )
            .await;
        assert!(init.get("result").is_some(), "{init}");
        let r = l
            .post(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert_eq!(r.status(), 202);
        l.pid = l.pid_now(1).await;
        l
    }

    async fn next(&mut self) -> Option<(Option<String>, String)> {
        with_timeout(Duration::from_secs(10), async {
            loop {
                let chunk = self.stream.chunk().await.ok()??;
                if let Some(e) = self.parser.push(&chunk).into_iter().next() {
                    return Some((e.event, e.data));
                }
            }
        })
        .await
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{}", self.base, self.endpoint))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn request(&mut self, body: Value) -> Value {
        let r = self.post(&body).await;
        assert_eq!(r.status(), 202, "legacy POST through the load balancer");
        loop {
            let (_, data) = self.next().await.expect("answer on the stream");
            let v: Value = serde_json::from_str(&data).unwrap();
            if v.get("id") == body.get("id") {
                return v;
            }
        }
    }

    async fn pid_now(&mut self, id: u64) -> i32 {
        let r = self
            .request(json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                "params":{"name":"pid","arguments":{}}}))
            .await;
        text(&r).parse().unwrap()
    }
}

/// Asserts `resp` is the 404 + JSON-RPC error that makes MCP clients start a new session.
async fn assert_session_gone(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 404, "{what}");
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(
        body.pointer("/error/code").is_some_and(Value::is_i64),
        "{what}: not a JSON-RPC error: {body}"
    );
}

/// The whole scenario against one load balancer.
async fn drive(mut replicas: Vec<Option<Warden>>, lb: &Lb) {
    let started = Instant::now();
    let url = lb.url("/mcp");

    // Many sessions at once; each lands on some replica and names it in its id.
    let mut sessions: Vec<Session> =
        join_all((0..SESSIONS).map(|_| open_session(url.clone()))).await;
    let mut legacy = Vec::new();
    for _ in 0..LEGACY_SESSIONS {
        legacy.push(Legacy::open(lb.url("")).await);
    }
    for s in &sessions {
        assert_eq!(
            replica_of_pid(&replicas, s.pid),
            Some(s.owner),
            "the session's server runs on the replica its id names"
        );
    }
    for l in &legacy {
        assert_eq!(replica_of_pid(&replicas, l.pid), Some(l.owner), "legacy");
    }
    let mut per_replica = [0usize; REPLICAS];
    for o in sessions
        .iter()
        .map(|s| s.owner)
        .chain(legacy.iter().map(|l| l.owner))
    {
        per_replica[o] += 1;
    }
    assert!(
        per_replica.iter().all(|n| *n > 0),
        "new sessions are spread over every replica: {per_replica:?}\n{}",
        lb.logs()
    );

    // Every follow-up reaches the very process that holds the session.
    let follow_ups = join_all(sessions.iter().map(|s| async move {
        for k in 0..FOLLOW_UPS {
            assert_eq!(server_pid(&s.mcp, 10 + k as u64).await, s.pid);
        }
    }));
    follow_ups.await;
    for l in &mut legacy {
        for k in 0..FOLLOW_UPS {
            assert_eq!(l.pid_now(10 + k as u64).await, l.pid, "legacy follow-up");
        }
    }
    let routed = SESSIONS * (FOLLOW_UPS + 1) + LEGACY_SESSIONS * (FOLLOW_UPS + 1);
    let routing_done = started.elapsed();

    // One replica dies (SIGKILL: no drain). Its clients get 404 and start over elsewhere; the
    // others notice nothing.
    replicas[VICTIM] = None;
    let victims = sessions.iter().filter(|s| s.owner == VICTIM).count();
    assert!(victims > 0, "{per_replica:?}");
    for s in &mut sessions {
        if s.owner == VICTIM {
            let resp = s
                .mcp
                .post(&json!({"jsonrpc":"2.0","id":50,"method":"tools/call",
                        "params":{"name":"pid","arguments":{}}}))
                .await;
            assert_session_gone(resp, "a follow-up of a dead replica's session").await;
            let fresh = open_session(url.clone()).await;
            assert_ne!(fresh.owner, VICTIM, "a new session lands on a live replica");
            assert_eq!(replica_of_pid(&replicas, fresh.pid), Some(fresh.owner));
            assert_eq!(server_pid(&fresh.mcp, 2).await, fresh.pid);
            *s = fresh;
        } else {
            assert_eq!(server_pid(&s.mcp, 51).await, s.pid, "survivors unaffected");
        }
    }
    for l in &mut legacy {
        if l.owner == VICTIM {
            let resp = l
                .post(&json!({"jsonrpc":"2.0","id":50,"method":"tools/list"}))
                .await;
            assert_session_gone(resp, "a legacy message of a dead replica's session").await;
            let fresh = Legacy::open(lb.url("")).await;
            assert_ne!(fresh.owner, VICTIM);
            *l = fresh;
        } else {
            assert_eq!(l.pid_now(51).await, l.pid, "legacy survivors unaffected");
        }
    }
    eprintln!(
        "{REPLICAS} replicas behind {}: {routed} requests routed to their owner in {routing_done:.1?}; \
         {victims} sessions re-initialized after a replica died, {:.1?} in all",
        lb.name,
        started.elapsed()
    );
}

fn addrs(replicas: &[Option<Warden>]) -> Vec<SocketAddr> {
    replicas.iter().map(|w| w.as_ref().unwrap().addr).collect()
}

#[tokio::test]
async fn nginx_routes_each_session_to_its_replica() {
    let replicas = start_replicas();
    let lb = Lb::nginx(&addrs(&replicas));
    with_timeout(Duration::from_secs(120), drive(replicas, &lb)).await;
}

#[tokio::test]
async fn haproxy_routes_each_session_to_its_replica() {
    let replicas = start_replicas();
    let lb = Lb::haproxy(&addrs(&replicas));
    with_timeout(Duration::from_secs(120), drive(replicas, &lb)).await;
}

/// A replica that refuses new sessions (503: at its cap here; draining answers the same) is
/// skipped for new sessions: every initialize through the balancer succeeds elsewhere.
async fn full_replica_is_skipped(replicas: Vec<Option<Warden>>, lb: &Lb) {
    let url = lb.url("/mcp");
    let mut per_replica = [0usize; REPLICAS];
    let mut sessions = Vec::new();
    // Sequential, so round-robin offers replica 0 a new session again and again.
    for _ in 0..3 * REPLICAS {
        let s = open_session(url.clone()).await;
        assert_eq!(replica_of_pid(&replicas, s.pid), Some(s.owner));
        per_replica[s.owner] += 1;
        sessions.push(s);
    }
    assert_eq!(per_replica[0], 1, "{per_replica:?}");
    for s in &sessions {
        assert_eq!(server_pid(&s.mcp, 3).await, s.pid);
    }
}

fn one_session_on_replica_0(i: usize) -> Vec<String> {
    if i == 0 {
        vec!["--max-sessions".into(), "1".into()]
    } else {
        vec![]
    }
}

#[tokio::test]
async fn nginx_skips_a_replica_that_refuses_new_sessions() {
    let replicas = start_replicas_with(one_session_on_replica_0);
    let lb = Lb::nginx(&addrs(&replicas));
    with_timeout(
        Duration::from_secs(60),
        full_replica_is_skipped(replicas, &lb),
    )
    .await;
}

#[tokio::test]
async fn haproxy_skips_a_replica_that_refuses_new_sessions() {
    let replicas = start_replicas_with(one_session_on_replica_0);
    let lb = Lb::haproxy(&addrs(&replicas));
    with_timeout(
        Duration::from_secs(60),
        full_replica_is_skipped(replicas, &lb),
    )
    .await;
}

#[tokio::test]
async fn session_ids_of_both_transports_carry_the_default_replica_id() {
    // POD_NAME (the downward API's pod name) wins over the host name, made a valid id.
    let w = Warden::builder(fixture())
        .env("POD_NAME", "MCP_Warden.7")
        .start();
    w.wait_log("replica=mcp-warden-7", Duration::from_secs(5));
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert!(m.session.as_deref().unwrap().starts_with("mcp-warden-7."));
    let l = Legacy::open(format!("http://{}", w.addr)).await;
    assert!(
        l.endpoint.contains("sessionId=mcp-warden-7."),
        "{}",
        l.endpoint
    );

    // An explicit empty id turns the prefix off.
    let w = Warden::builder(fixture())
        .env("POD_NAME", "web-0")
        .args(["--replica-id", ""])
        .start();
    w.wait_log("replica=(none)", Duration::from_secs(5));
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert!(!m.session.as_deref().unwrap().contains('.'));
}

/// A sessionless-era call of `bearer` through the balancer: its answer.
async fn sessionless_call(lb: &Lb, bearer: &str, id: i64, tool: &str, extra: Value) -> Value {
    let mut params = json!({"name": tool, "arguments": {}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    reqwest::Client::new()
        .post(lb.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .header("authorization", format!("Bearer {bearer}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sessionless callers stay on one replica each (their calls share its server), spread over
/// the replicas, and a multi-round-trip retry comes back to the replica whose state it holds.
async fn sessionless_callers_keep_to_one_replica(replicas: Vec<Option<Warden>>, lb: &Lb) {
    let mut used = std::collections::HashSet::new();
    for caller in 0..8 {
        // The replicas run without authentication: the header only steers the balancer.
        let bearer = format!("caller-{caller}");
        let mut pids = std::collections::HashSet::new();
        for id in 0..4 {
            pids.insert(text(
                &sessionless_call(lb, &bearer, id, "pid", json!({})).await,
            ));
        }
        assert_eq!(
            pids.len(),
            1,
            "{bearer}'s calls reached several servers: {pids:?}"
        );
        let pid: i32 = pids.into_iter().next().unwrap().parse().unwrap();
        used.insert(replica_of_pid(&replicas, pid).expect("a replica's server"));
        let ask = sessionless_call(
            lb,
            &bearer,
            10,
            "sample",
            json!({"arguments": {"prompt": "q"}}),
        )
        .await;
        let state = ask["result"]["requestState"]
            .as_str()
            .expect("a question")
            .to_owned();
        let key = ask["result"]["inputRequests"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone();
        let retry = json!({"requestState": state, "arguments": {"prompt": "q"}, "inputResponses": { key: {
            "role": "assistant", "model": "m", "content": {"type": "text", "text": "via the balancer"}}}});
        let done = sessionless_call(lb, &bearer, 11, "sample", retry).await;
        assert_eq!(text(&done), "sampled: via the balancer", "{done}");
    }
    assert!(
        used.len() > 1,
        "every caller hashed to one replica: {used:?}"
    );
}

#[tokio::test]
async fn nginx_keeps_each_sessionless_caller_on_one_replica() {
    let replicas = start_replicas();
    let lb = Lb::nginx(&addrs(&replicas));
    with_timeout(
        Duration::from_secs(60),
        sessionless_callers_keep_to_one_replica(replicas, &lb),
    )
    .await;
}

#[tokio::test]
async fn haproxy_keeps_each_sessionless_caller_on_one_replica() {
    let replicas = start_replicas();
    let lb = Lb::haproxy(&addrs(&replicas));
    with_timeout(
        Duration::from_secs(60),
        sessionless_callers_keep_to_one_replica(replicas, &lb),
    )
    .await;
}
