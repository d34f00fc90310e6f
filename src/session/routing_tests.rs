//! A session's routing in-process: a stand-in child that records what it is sent, server
//! lines fed through the session's `ChildSink`, tokio's paused clock for deadlines and idle
//! time. No process, no store, no HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::time::{Instant, advance};

use super::routing::{Followed, Opening, SessionLimits, SessionTable};
use super::{EventStream, Next, Session, SessionError, StreamLimits, Transport};
use crate::audit::AuditSink;
use crate::auth::Principal;
use crate::child::{ChildHandle, ChildSink, Closed, ExitStatus, StdinClosed};
use crate::credentials::{SecretSet, SessionEnv};
use crate::governance::Governance;
use crate::mcp::{self, Envelope};
use crate::telemetry::Metrics;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MS: Duration = Duration::from_millis(1);

/// What the stand-in child was sent, and whether it was told to stop.
#[derive(Debug, Default)]
struct Stdin {
    lines: Mutex<Vec<Bytes>>,
    terminated: AtomicBool,
}

#[derive(Debug)]
struct FakeChild(Arc<Stdin>);

impl ChildHandle for FakeChild {
    fn pid(&self) -> i32 {
        4242
    }

    fn send(&self, message: Bytes) -> BoxFuture<'_, Result<(), StdinClosed>> {
        self.0.lines.lock().push(message);
        Box::pin(async { Ok(()) })
    }

    fn try_send(&self, message: Bytes) -> Result<(), StdinClosed> {
        self.0.lines.lock().push(message);
        Ok(())
    }

    fn terminate(&self) {
        self.0.terminated.store(true, Ordering::SeqCst);
    }

    fn wait(&self) -> BoxFuture<'_, ExitStatus> {
        Box::pin(async { ExitStatus::Code(0) })
    }
}

/// The store's table, as far as a session sees it: which ids left it.
#[derive(Default)]
struct Table {
    removed: Mutex<Vec<String>>,
}

impl SessionTable for Table {
    fn remove(&self, id: &str) {
        self.removed.lock().push(id.to_owned());
    }
}

struct Harness {
    session: Arc<Session>,
    stdin: Arc<Stdin>,
    table: Arc<Table>,
}

fn open(transport: Transport) -> Harness {
    open_with(transport, StreamLimits::default(), 4)
}

fn open_with(transport: Transport, stream_limits: StreamLimits, retained: usize) -> Harness {
    let governance = Arc::new(Governance::new(None, AuditSink::disabled(), Metrics::new()));
    let table = Arc::new(Table::default());
    let session = Session::open(Opening {
        id: "session-under-test".into(),
        transport,
        owner: "anonymous".into(),
        env: &SessionEnv::default(),
        governance: governance.open_session(&Principal::anonymous(), &SecretSet::default()),
        limits: SessionLimits {
            request_timeout: REQUEST_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            stream_limits,
            retained_streams: retained,
        },
        metrics: Metrics::new(),
        table: Arc::downgrade(&table) as Weak<dyn SessionTable>,
    });
    let stdin = Arc::new(Stdin::default());
    session.attach(Box::new(FakeChild(stdin.clone())));
    Harness {
        session,
        stdin,
        table,
    }
}

impl Harness {
    /// Forwards a client request the way the transport does; `id` is JSON.
    async fn request(&self, id: &str, params: Value) -> Result<Arc<EventStream>, SessionError> {
        let message = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{params}}}"#
        ));
        let env = Envelope::parse(&message).unwrap();
        let client_id = env.id.clone().unwrap();
        let progress = mcp::progress_token(env.params);
        self.session
            .request(
                client_id,
                "tools/list",
                None,
                progress,
                message.clone(),
                Followed::default(),
            )
            .await
    }

    /// One line from the server's stdout.
    fn server(&self, line: Value) {
        self.session.on_message(Bytes::from(line.to_string()));
    }

    /// Everything the server was sent, parsed.
    fn written(&self) -> Vec<Value> {
        self.stdin
            .lines
            .lock()
            .iter()
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    fn sweep(&self) {
        self.session.sweep(Instant::now());
    }
}

/// What a stream holds (read from its start, without waiting).
fn events(stream: &Arc<EventStream>) -> Vec<Value> {
    let mut cursor = stream.attach(Some(0)).unwrap();
    read(&mut cursor)
}

fn read(cursor: &mut super::Cursor) -> Vec<Value> {
    match cursor.next().now_or_never() {
        Some(Next::Events { events, .. }) => events
            .iter()
            .map(|e| serde_json::from_slice(&e.data).unwrap())
            .collect(),
        Some(Next::End) | None => Vec::new(),
        Some(Next::Replaced) => panic!("the cursor was replaced"),
    }
}

fn answer(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn notification(method: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": {}})
}

fn progress(token: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}})
}

#[tokio::test(start_paused = true)]
async fn an_answer_reaches_only_its_own_request_under_the_client_id() {
    let h = open(Transport::Streamable);
    let a = h.request(r#""a""#, json!({})).await.unwrap();
    let b = h.request("7", json!({})).await.unwrap();
    // The server knows the requests by ids of the session's own.
    let ids: Vec<Value> = h.written().iter().map(|m| m["id"].clone()).collect();
    assert_eq!(ids, [json!(1), json!(2)]);

    h.server(answer(json!(2), json!({"for": "b"})));
    assert_eq!(events(&b), [answer(json!(7), json!({"for": "b"}))]);
    assert!(b.is_finished());
    assert!(events(&a).is_empty());
    assert!(!a.is_finished());
    assert!(events(&h.session.standalone()).is_empty());

    // An id the session never gave out names no request, even if the client used it.
    h.server(answer(json!("a"), json!({"forged": true})));
    assert!(events(&a).is_empty());

    h.server(answer(json!(1), json!({"for": "a"})));
    assert_eq!(events(&a), [answer(json!("a"), json!({"for": "a"}))]);
    assert_eq!(events(&b).len(), 1);
    assert!(events(&h.session.standalone()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_late_answer_to_a_cancelled_request_never_reaches_a_request_that_reuses_its_id() {
    let h = open(Transport::Streamable);
    let first = h.request("5", json!({})).await.unwrap();
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5, "reason": "user"}});
    h.session
        .cancelled_by_client(&mcp::Id::Int(5), cancel.to_string().as_bytes())
        .await
        .unwrap();
    // The server hears of it under the id it knows the request by; the client's stream
    // ends without an answer.
    assert_eq!(h.written()[1]["params"]["requestId"], json!(1));
    assert!(first.is_finished());
    assert!(events(&first).is_empty());

    let second = h.request("5", json!({})).await.unwrap();
    assert_eq!(h.written()[2]["id"], json!(2));
    h.server(answer(json!(1), json!({"late": true})));
    assert!(events(&second).is_empty());
    assert!(events(&first).is_empty());

    h.server(answer(json!(2), json!({"late": false})));
    assert_eq!(events(&second), [answer(json!(5), json!({"late": false}))]);
}

#[tokio::test(start_paused = true)]
async fn a_late_answer_to_a_timed_out_request_never_reaches_a_request_that_reuses_its_id() {
    let h = open(Transport::Streamable);
    let first = h.request("5", json!({})).await.unwrap();
    advance(REQUEST_TIMEOUT).await;
    h.sweep();
    assert_eq!(
        events(&first)[0]["error"]["code"],
        json!(mcp::code::REQUEST_TIMEOUT)
    );

    let second = h.request("5", json!({})).await.unwrap();
    h.server(answer(json!(1), json!({"late": true})));
    assert!(events(&second).is_empty());
    assert_eq!(events(&first).len(), 1);

    h.server(answer(json!(2), json!({"late": false})));
    assert_eq!(events(&second), [answer(json!(5), json!({"late": false}))]);
}

#[tokio::test(start_paused = true)]
async fn a_request_expires_at_its_deadline_and_not_before() {
    let h = open(Transport::Streamable);
    let stream = h.request(r#""slow""#, json!({})).await.unwrap();

    advance(REQUEST_TIMEOUT - MS).await;
    h.sweep();
    assert!(events(&stream).is_empty());
    assert!(!stream.is_finished());
    assert_eq!(
        h.written().len(),
        1,
        "nothing is cancelled before the deadline"
    );

    advance(MS).await;
    h.sweep();
    let got = events(&stream);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], json!("slow"));
    assert_eq!(got[0]["error"]["code"], json!(mcp::code::REQUEST_TIMEOUT));
    assert_eq!(got[0]["error"]["message"], json!("request timed out"));
    assert!(stream.is_finished());
    // The server is told to stop working on it, under its own id.
    let cancel = &h.written()[1];
    assert_eq!(cancel["method"], json!("notifications/cancelled"));
    assert_eq!(cancel["params"]["requestId"], json!(1));
    assert!(!h.session.is_ended());
}

#[tokio::test(start_paused = true)]
async fn progress_goes_to_the_stream_of_the_request_that_carries_its_token() {
    let h = open(Transport::Streamable);
    let a = h
        .request("1", json!({"_meta": {"progressToken": "p1"}}))
        .await
        .unwrap();
    let b = h
        .request("2", json!({"_meta": {"progressToken": "p2"}}))
        .await
        .unwrap();

    h.server(progress("p2"));
    assert_eq!(events(&b), [progress("p2")]);
    assert!(events(&a).is_empty());

    // A token no request in flight carries goes nowhere.
    h.server(progress("p9"));
    assert!(events(&a).is_empty());
    assert_eq!(events(&b).len(), 1);
    assert!(events(&h.session.standalone()).is_empty());

    // Nor does the token of a request that was answered.
    h.server(answer(json!(2), json!({})));
    h.server(progress("p2"));
    assert_eq!(events(&b).len(), 2);
    assert!(events(&a).is_empty());
    assert!(events(&h.session.standalone()).is_empty());

    h.server(progress("p1"));
    assert_eq!(events(&a), [progress("p1")]);
}

#[tokio::test(start_paused = true)]
async fn unsolicited_messages_go_to_the_standalone_stream_while_a_client_reads_it() {
    let h = open(Transport::Streamable);
    let pending = h.request("1", json!({})).await.unwrap();
    let standalone = h.session.standalone();
    let mut get = standalone.attach(None).unwrap();

    let ask =
        json!({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {}});
    h.server(notification("notifications/tools/list_changed"));
    h.server(ask.clone());
    assert_eq!(
        read(&mut get),
        [notification("notifications/tools/list_changed"), ask]
    );
    assert!(events(&pending).is_empty());
    // A server→client request keeps the server's id: the client's answer goes back as is.
    assert!(h.written().iter().all(|m| m["id"] != json!("s1")));
}

#[tokio::test(start_paused = true)]
async fn without_a_get_stream_unsolicited_messages_ride_the_oldest_request_in_flight() {
    let h = open(Transport::Streamable);
    let older = h.request("1", json!({})).await.unwrap();
    let newer = h.request("2", json!({})).await.unwrap();

    h.server(notification("notifications/message"));
    assert_eq!(events(&older), [notification("notifications/message")]);
    assert!(events(&newer).is_empty());

    h.server(answer(json!(1), json!({})));
    h.server(notification("notifications/resources/updated"));
    assert_eq!(
        events(&newer),
        [notification("notifications/resources/updated")]
    );

    // Nothing in flight: kept on the standalone stream for a GET stream to come.
    h.server(answer(json!(2), json!({})));
    h.server(notification("notifications/tools/list_changed"));
    assert_eq!(
        events(&h.session.standalone()),
        [notification("notifications/tools/list_changed")]
    );
    assert_eq!(events(&older).len(), 2);
    assert_eq!(events(&newer).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn on_http_sse_everything_goes_to_the_one_stream() {
    let h = open(Transport::LegacySse);
    let standalone = h.session.standalone();
    let stream = h
        .request("1", json!({"_meta": {"progressToken": "p"}}))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&stream, &standalone));

    h.server(progress("p"));
    h.server(notification("notifications/message"));
    h.server(answer(json!(1), json!({})));
    assert_eq!(
        events(&standalone),
        [
            progress("p"),
            notification("notifications/message"),
            answer(json!(1), json!({}))
        ]
    );
    // The connection outlives every answer.
    assert!(!standalone.is_finished());
    assert!(h.session.stream(1).is_none());
}

#[tokio::test(start_paused = true)]
async fn an_answer_given_without_the_server_takes_the_stream_an_answer_would() {
    let reply = Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"Method not found"}}"#,
    );

    let h = open(Transport::Streamable);
    let stream = h.session.answer_locally(reply.clone());
    assert_ne!(stream.id(), 0);
    assert!(stream.is_finished());
    assert_eq!(events(&stream).len(), 1);
    // Not listed for resumption: only the streams of forwarded requests are.
    assert!(h.session.stream(stream.id()).is_none());
    assert!(events(&h.session.standalone()).is_empty());
    assert!(h.written().is_empty());

    let h = open(Transport::LegacySse);
    let stream = h.session.answer_locally(reply);
    assert!(Arc::ptr_eq(&stream, &h.session.standalone()));
    assert!(!stream.is_finished());
    assert_eq!(events(&stream).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn finished_request_streams_stay_resumable_up_to_the_retention_limit() {
    let h = open_with(Transport::Streamable, StreamLimits::default(), 2);
    let mut ids = Vec::new();
    for n in 1..=3 {
        let stream = h.request(&n.to_string(), json!({})).await.unwrap();
        ids.push(stream.id());
        assert!(h.session.stream(stream.id()).is_some(), "in flight");
        h.server(answer(json!(n), json!({})));
    }
    assert!(
        h.session.stream(ids[0]).is_none(),
        "the oldest is forgotten"
    );
    assert!(h.session.stream(ids[1]).is_some());
    assert!(h.session.stream(ids[2]).is_some());
}

#[tokio::test(start_paused = true)]
async fn server_requests_evicted_unread_are_answered_for_the_client() {
    let h = open_with(
        Transport::Streamable,
        StreamLimits {
            max_events: 2,
            max_bytes: 1 << 20,
        },
        4,
    );
    h.server(notification("notifications/message"));
    h.server(json!({"jsonrpc": "2.0", "id": "s1", "method": "roots/list"}));
    h.server(json!({"jsonrpc": "2.0", "id": "s2", "method": "roots/list"}));
    // The notification was evicted: nothing to answer.
    assert!(h.written().is_empty());
    h.server(json!({"jsonrpc": "2.0", "id": "s3", "method": "roots/list"}));
    let written = h.written();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["id"], json!("s1"));
    assert_eq!(
        written[0]["error"]["code"],
        json!(mcp::code::INTERNAL_ERROR)
    );
}

#[tokio::test(start_paused = true)]
async fn an_oversized_answer_fails_its_request() {
    let h = open(Transport::Streamable);
    let stream = h.request(r#""big""#, json!({})).await.unwrap();
    h.session.on_oversized(Some(mcp::Id::Int(1)), 99_000_000);
    let got = events(&stream);
    assert_eq!(got[0]["id"], json!("big"));
    assert_eq!(got[0]["error"]["code"], json!(mcp::code::INTERNAL_ERROR));
    assert!(stream.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_after_the_idle_timeout_without_traffic() {
    let h = open(Transport::Streamable);
    advance(IDLE_TIMEOUT - MS).await;
    h.sweep();
    assert!(!h.session.is_ended());

    // Client traffic starts the wait over.
    h.session.touch();
    advance(IDLE_TIMEOUT - MS).await;
    h.sweep();
    assert!(!h.session.is_ended());

    advance(MS).await;
    h.sweep();
    assert!(h.session.is_ended());
    assert!(h.stdin.terminated.load(Ordering::SeqCst));
    assert_eq!(*h.table.removed.lock(), ["session-under-test"]);
}

#[tokio::test(start_paused = true)]
async fn a_session_a_client_still_reads_is_not_idle() {
    let h = open(Transport::Streamable);
    let standalone = h.session.standalone();
    let get = standalone.attach(None).unwrap();
    advance(IDLE_TIMEOUT * 3).await;
    h.sweep();
    assert!(!h.session.is_ended());

    drop(get);
    h.sweep();
    assert!(h.session.is_ended());
}

#[tokio::test(start_paused = true)]
async fn when_the_server_closes_its_output_the_session_ends_and_every_waiter_hears_why() {
    let h = open(Transport::Streamable);
    let a = h.request(r#""a""#, json!({})).await.unwrap();
    let b = h.request("2", json!({})).await.unwrap();

    h.session.on_closed(Closed::StdoutClosed);
    for (stream, id) in [(&a, json!("a")), (&b, json!(2))] {
        let got = events(stream);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["id"], id);
        assert_eq!(
            got[0]["error"]["code"],
            json!(mcp::code::SERVER_UNAVAILABLE)
        );
        assert_eq!(
            got[0]["error"]["message"],
            json!("the MCP server closed its output")
        );
        assert!(stream.is_finished());
    }
    assert!(h.session.is_ended());
    assert!(h.session.standalone().is_finished());
    assert!(h.stdin.terminated.load(Ordering::SeqCst));
    assert_eq!(*h.table.removed.lock(), ["session-under-test"]);
    assert_eq!(
        h.request("3", json!({})).await.unwrap_err(),
        SessionError::Gone
    );
    // A late line of the dying server reaches nobody.
    h.server(answer(json!(1), json!({})));
    assert_eq!(events(&a).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn when_the_server_exits_its_waiters_hear_the_exit_status() {
    let h = open(Transport::Streamable);
    let stream = h.request("1", json!({})).await.unwrap();
    h.session.on_closed(Closed::Exited(ExitStatus::Code(3)));
    let got = events(&stream);
    assert_eq!(
        got[0]["error"]["code"],
        json!(mcp::code::SERVER_UNAVAILABLE)
    );
    let message = got[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("the MCP server exited (") && message.ends_with(") before answering"),
        "{message}"
    );
    assert!(h.session.is_ended());
}
