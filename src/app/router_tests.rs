//! The HTTP app as a value: `router(state)` driven with `oneshot`, no socket, no process.
//! The protocol's status matrix for requests that need no live session.

use std::collections::HashMap;
use std::ffi::OsString;

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
