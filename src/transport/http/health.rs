//! Liveness, readiness and metrics.

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
pub(crate) async fn readyz(State(st): State<AppState>) -> Response {
    let draining = st.store.is_draining();
    let capacity = st.store.has_capacity();
    let ready = !draining && capacity;
    let body = Json(json!({
        "ready": ready,
        "draining": draining,
        "sessions": st.store.len(),
        "max_sessions": st.store.config().max_sessions,
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
