//! Liveness, readiness and metrics. The MCP port answers only alive and ready or not (a
//! status and a word): anyone who can reach it could otherwise read how the deployment is
//! sandboxed and how busy it is. The details are for the admin listener.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// Live while the process serves HTTP; a crashing MCP server never fails it.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to accept new sessions: not draining and under the session cap.
fn is_ready(st: &AppState) -> bool {
    !st.store.is_draining() && st.store.has_capacity()
}

/// The MCP port's readiness: the status code, and one word for people reading it.
pub(crate) async fn readyz(State(st): State<AppState>) -> Response {
    if is_ready(&st) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// The admin listener's readiness: the same status, with why (draining, sessions against the
/// cap) and what the kernel enforces for the servers.
pub(crate) async fn readyz_details(State(st): State<AppState>) -> Response {
    let draining = st.store.is_draining();
    let ready = is_ready(&st);
    let body = Json(json!({
        "ready": ready,
        "draining": draining,
        "sessions": st.store.len(),
        "max_sessions": st.store.config().max_sessions,
        "spares": st.store.spares_ready(),
        "spares_wanted": st.store.config().spares,
        "sandbox": st.store.config().child.sandbox_status.get(),
    }));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// Prometheus text exposition.
pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}
