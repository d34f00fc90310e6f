//! The HTTP app as a value: `router(state)` driven with `oneshot`, no socket. The protocol's
//! status matrix for requests that need no live session, and for a live one (its server a
//! real process: `tests/data/stdio_echo.py` behind the built binary's sandbox helper).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use tower::ServiceExt;

use super::App;
use crate::config::WrapConfig;

async fn router() -> axum::Router {
    let env: HashMap<String, OsString> = [("PATH".to_owned(), OsString::from("/usr/bin"))].into();
    let config = WrapConfig::from_options(
        crate::config::tests::options(),
        &env,
        "/proc/self/exe".into(),
    )
    .unwrap();
    App::build(config).await.unwrap().router()
}

const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

fn request(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:8080")
}

fn post(body: &'static str) -> axum::http::request::Builder {
    request(Method::POST, "/mcp")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
}

async fn status(req: axum::http::request::Builder, body: &'static str) -> StatusCode {
    router()
        .await
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn the_protocol_status_matrix_without_a_session() {
    let cases: Vec<(&str, axum::http::request::Builder, &'static str, StatusCode)> = vec![
        (
            "a request other than initialize without Mcp-Session-Id",
            post(TOOLS_LIST),
            TOOLS_LIST,
            StatusCode::BAD_REQUEST,
        ),
        (
            "a notification without Mcp-Session-Id",
            post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST to a session that does not exist",
            post(TOOLS_LIST).header("mcp-session-id", "no-such-session"),
            TOOLS_LIST,
            StatusCode::NOT_FOUND,
        ),
        (
            "GET of a session that does not exist",
            request(Method::GET, "/mcp")
                .header(header::ACCEPT, "text/event-stream")
                .header("mcp-session-id", "no-such-session"),
            "",
            StatusCode::NOT_FOUND,
        ),
        (
            "GET without Mcp-Session-Id",
            request(Method::GET, "/mcp").header(header::ACCEPT, "text/event-stream"),
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            "DELETE of a session that does not exist",
            request(Method::DELETE, "/mcp").header("mcp-session-id", "no-such-session"),
            "",
            StatusCode::NOT_FOUND,
        ),
        (
            "DELETE without Mcp-Session-Id",
            request(Method::DELETE, "/mcp"),
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            "a method the endpoint does not serve",
            request(Method::PUT, "/mcp"),
            "",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "GET on the legacy message endpoint",
            request(Method::GET, "/message"),
            "",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST that does not accept an event stream",
            request(Method::POST, "/mcp")
                .header(header::ACCEPT, "application/json")
                .header(header::CONTENT_TYPE, "application/json"),
            TOOLS_LIST,
            StatusCode::NOT_ACCEPTABLE,
        ),
        (
            "GET that does not accept an event stream",
            request(Method::GET, "/mcp")
                .header(header::ACCEPT, "application/json")
                .header("mcp-session-id", "no-such-session"),
            "",
            StatusCode::NOT_ACCEPTABLE,
        ),
        (
            "a body that is not JSON",
            request(Method::POST, "/mcp")
                .header(header::ACCEPT, "application/json, text/event-stream")
                .header(header::CONTENT_TYPE, "text/plain"),
            TOOLS_LIST,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "a protocol version nobody speaks",
            post(TOOLS_LIST).header("mcp-protocol-version", "1999-01-01"),
            TOOLS_LIST,
            StatusCode::BAD_REQUEST,
        ),
        (
            "a page of another origin",
            post(TOOLS_LIST).header(header::ORIGIN, "https://evil.example"),
            TOOLS_LIST,
            StatusCode::FORBIDDEN,
        ),
    ];
    for (what, req, body, expected) in cases {
        assert_eq!(status(req, body).await, expected, "{what}");
    }
}

/// The built `mcp-warden` next to this test binary (`target/<profile>/deps/…`): a session's
/// server starts through its `__sandbox-exec` mode.
fn helper_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("mcp-warden");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build` (sessions start their server through it)",
        bin.display()
    );
    bin
}

/// An app whose sessions run `python3 tests/data/stdio_echo.py`, with their work dirs
/// under `work_root`.
async fn live_app(work_root: &Path) -> App {
    let mut options = crate::config::tests::options();
    options.sandbox.work_root = Some(work_root.to_owned());
    options.command = vec![
        "python3".into(),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/stdio_echo.py")
            .into(),
    ];
    let env: HashMap<String, OsString> = [("PATH".to_owned(), OsString::from("/usr/bin"))].into();
    let config = WrapConfig::from_options(options, &env, helper_exe()).unwrap();
    crate::child::create_work_root(work_root).unwrap();
    App::build(config).await.unwrap()
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"router-tests","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

async fn send(
    router: &axum::Router,
    req: axum::http::request::Builder,
    body: &'static str,
) -> axum::response::Response {
    router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap()
}

async fn body_text(response: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn a_live_session_takes_notifications_with_202_and_is_gone_once_deleted() {
    let work_root =
        std::env::temp_dir().join(format!("mcp-warden-router-tests-{}", std::process::id()));
    let app = live_app(&work_root).await;
    let router = app.router();

    let opened = send(&router, post(INITIALIZE), INITIALIZE).await;
    assert_eq!(opened.status(), StatusCode::OK);
    let id = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(body_text(opened).await.contains("stdio-echo"));
    let in_session = |req: axum::http::request::Builder| req.header("mcp-session-id", id.as_str());

    let notified = send(&router, in_session(post(INITIALIZED)), INITIALIZED).await;
    assert_eq!(notified.status(), StatusCode::ACCEPTED);
    assert_eq!(body_text(notified).await, "");

    let deleted = send(&router, in_session(request(Method::DELETE, "/mcp")), "").await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert!(app.sessions().get(&id).is_none());

    let after = send(&router, in_session(post(TOOLS_LIST)), TOOLS_LIST).await;
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
    let again = send(&router, in_session(request(Method::DELETE, "/mcp")), "").await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // The server stopped too: its work dir goes once its process tree has exited.
    let emptied = tokio::time::timeout(Duration::from_secs(10), async {
        while std::fs::read_dir(&work_root).unwrap().next().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    std::fs::remove_dir_all(&work_root).unwrap();
    assert!(
        emptied.is_ok(),
        "the deleted session's server is still running"
    );
}
