//! Pure JSON-RPC / MCP vocabulary: message classification, ids, protocol versions.
//!
//! Nothing here does I/O. Messages stay as the bytes they arrived in; this module only reads
//! enough of them to route them (kind, id, method, progress token), so the hot path never
//! re-serializes a message it does not inspect.

mod id;
mod keys;
mod message;
pub mod modern;
mod version;

pub use id::Id;
pub use keys::{ambiguous_key, fold_key};
pub use message::{
    Envelope, Kind, MAX_DEPTH, ParseError, error_response, first_non_whitespace, from_object,
    has_lone_surrogate, json_str, meta_str, peek_id, progress_token, replace_id,
    request_id_of_cancel, too_deep, top_level_raw, top_level_str, with_meta, with_request_id,
};
pub use version::ProtocolVersion;

/// JSON-RPC error codes used by the bridge itself.
pub mod code {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid Request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist / is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameter(s).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Implementation-defined server error: the request timed out.
    pub const REQUEST_TIMEOUT: i64 = -32001;
    /// The user must complete a URL-mode elicitation first (2025-11-25).
    pub const URL_ELICITATION_REQUIRED: i64 = -32042;
    /// Implementation-defined server error: the wrapped server is gone.
    pub const SERVER_UNAVAILABLE: i64 = -32000;
    /// Implementation-defined: the request was cancelled.
    pub const REQUEST_CANCELLED: i64 = -32800;
    /// Implementation-defined server error: the sidecar's policy refused the request.
    pub const POLICY_DENIED: i64 = -32003;
    /// Implementation-defined server error: a rate limit refused the request.
    pub const RATE_LIMITED: i64 = -32029;
}

/// Method names the bridge has to recognise.
pub mod method {
    pub const INITIALIZE: &str = "initialize";
    pub const INITIALIZED: &str = "notifications/initialized";
    pub const CANCELLED: &str = "notifications/cancelled";
    pub const PROGRESS: &str = "notifications/progress";
    pub const PING: &str = "ping";
    pub const TOOLS_CALL: &str = "tools/call";
    pub const SERVER_DISCOVER: &str = "server/discover";
    pub const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";

    /// Whether `method` names a notification. MCP names every notification
    /// `notifications/…`; any other method expects an answer and so needs an id.
    pub fn is_notification(method: &str) -> bool {
        method.starts_with("notifications/")
    }
}
