//! Admission: new sessions the store would not admit (its cap, the principal's cap or rate,
//! a drain), counted by reason, audited with who asked, and answered in one way for both
//! transports; and requests turned away while an audit log that must be complete cannot
//! take their records.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::rescue::Failure;
use crate::auth::Principal;
use crate::session::{PrincipalRefusal, Refused};

/// Records a refused session and returns the answer for it.
pub(crate) fn refused(st: &AppState, principal: &Principal, why: Refused) -> Failure {
    st.metrics.session_refused(why.code());
    tracing::info!(
        session.refused = why.code(),
        auth.sub = %principal.subject,
        "new session refused"
    );
    let retry_after = match why {
        Refused::Principal(PrincipalRefusal::Rate { retry_after }) => Some(retry_after),
        Refused::Full(_) | Refused::Draining | Refused::Principal(PrincipalRefusal::Cap(_)) => None,
    };
    st.governance
        .session_refused(principal, why.code(), retry_after);
    match why {
        Refused::Full(_) => Failure::TooManySessions,
        Refused::Draining => Failure::Draining,
        Refused::Principal(p) => Failure::PrincipalSessions(p),
    }
}

/// With `[audit] on_full = "refuse"`: while the audit queue is nearly full (or its output
/// fails), nothing is done that it could not record. Before authentication, so that a flood
/// of bad tokens adds no records either.
pub(crate) async fn audit_room(
    State(st): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !st.governance.audit().accepting() {
        tracing::debug!("request refused: the audit log cannot keep up");
        return Failure::AuditFull.into_response();
    }
    next.run(request).await
}

/// The answer to a session the principal cannot have before connecting `connection`: its
/// connect page, signed for this principal.
pub(crate) fn connection_needed(
    st: &AppState,
    principal: &Principal,
    id: Option<crate::mcp::Id>,
    connection: String,
) -> Failure {
    let url = match &st.connections {
        Some(c) => c.connect_url(&principal.subject, &connection, crate::authz::unix_now()),
        None => String::new(),
    };
    Failure::ConnectionNeeded {
        id,
        connection,
        url,
    }
}
