//! The HTTP application as a value: routes and the layer order, in one place.

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use super::{
    AppState, activity, admission, authn, authz, health, legacy_sse, limits, origin, streamable,
    well_known,
};

/// Builds the router. Tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState) -> Router {
    let cfg = state.config.clone();
    let mut mcp = Router::new().route(
        &cfg.path,
        post(streamable::post)
            .get(streamable::get)
            .delete(streamable::delete),
    );
    if let Some(legacy) = &cfg.legacy {
        mcp = mcp
            .route(&legacy.sse, get(legacy_sse::connect))
            .route(&legacy.message, post(legacy_sse::message));
    }
    // Layers run outermost first: the last `.layer` below sees the request first.
    let mcp = mcp
        // 3. Who is calling: a bearer token from the Authorization header, or 401/403 with
        //    a challenge; the principal every handler binds sessions to.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authn::authenticate,
        ))
        // 2b. An audit log that must be complete and cannot take more records: 503 before
        //     anything (authentication failures included) would add one.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            admission::audit_room,
        ))
        // 2. DNS-rebinding protection: a present, disallowed Origin never reaches auth.
        .layer(middleware::from_fn_with_state(state.clone(), origin::check))
        // 1. The body is read in full, bounded in size and time, before anyone answers: an
        //    answer given while the body still arrives costs the client its connection.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::buffer_body,
        ))
        // 0. A span per request (debug level: free when not enabled), exported by
        //    OpenTelemetry when that is on.
        .layer(middleware::from_fn(request_span));
    Router::new()
        .merge(mcp)
        // Public metadata: outside authentication and the origin check.
        .merge(well_known::routes(&state))
        // The sign-in server: outside bearer authentication (it is how tokens are had).
        .merge(authz::routes(&state))
        // Probes for anyone: alive, ready or not, and nothing else.
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state)
}

/// The admin listener: probes with details, metrics, and (`--admin-ui`) the activity page;
/// no authentication, never on the MCP port.
pub fn admin_router(state: AppState) -> Router {
    let ui = Router::new()
        .route(activity::BASE, get(activity::page))
        .route(
            &format!("{}/sessions/end", activity::BASE),
            post(activity::end_session),
        )
        .route(
            &format!("{}/static/activity.css", activity::BASE),
            get(activity::css),
        )
        // Host (rebinding) and fetch-metadata checks, and the page headers.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            activity::guard,
        ));
    let admin = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz_details))
        .route("/metrics", get(health::metrics));
    let admin = if state.config.admin_ui {
        admin.merge(ui)
    } else {
        admin
    };
    admin.with_state(state)
}

async fn request_span(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    let span = tracing::debug_span!(
        "request",
        http.method = %request.method(),
        http.path = request.uri().path(),
        mcp.session = tracing::field::Empty,
    );
    if let Some(id) = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    {
        span.record(
            "mcp.session",
            id.get(id.len().saturating_sub(8)..).unwrap_or(""),
        );
    }
    // The exported span (when OpenTelemetry export is on): its context is the task's
    // current span, the parent of the MCP spans and server spawns this request causes.
    let exported = crate::telemetry::otel::http_span(
        request.method().as_str(),
        request.uri().path(),
        super::headers::trace(request.headers()),
    );
    async move {
        let response = match &exported {
            Some(s) => crate::telemetry::otel::scope(s.context(), next.run(request)).await,
            None => next.run(request).await,
        };
        let status = response.status().as_u16();
        tracing::debug!(http.status = status, "response");
        if let Some(mut s) = exported {
            s.set("http.response.status_code", i64::from(status));
            if status >= 500 {
                s.fail(response.status().as_str());
            }
            s.end();
        }
        response
    }
    .instrument(span)
    .await
}
