//! mcp-warden publishes a local STDIO MCP server as a remote MCP endpoint: one sandboxed
//! server process per session, bridged to MCP Streamable HTTP and the legacy HTTP+SSE
//! transport.
//!
//! # Layout
//! - [`mcp`]: pure JSON-RPC/MCP vocabulary (message classification, ids, versions).
//! - [`credentials`]: each session's server environment: allow-listed variables and the
//!   credentials injected for its principal (values, files, claims, token exchange, the
//!   user's own connections).
//! - [`connections`]: users' upstream accounts (GitHub, Google, Slack…): connected in the
//!   browser, sealed at rest, refreshed, revoked, injected into that user's server only.
//! - [`child`]: the wrapped server process: spawn (through the sandbox helper) with a finished
//!   environment, stdio framing, reaping.
//! - [`session`]: sessions, each owning one server; routing of server messages to streams;
//!   bounded replay logs for SSE resumption.
//! - [`transport::http`]: the only module that knows HTTP: Streamable HTTP, HTTP+SSE,
//!   health, origin checks, the error mapping, the accept loop.
//! - [`auth`]: bearer tokens checked as an OAuth 2.1 resource server (JWT and introspection),
//!   the resulting principal, challenges, resource metadata, our issuer's signing keys.
//! - [`authz`]: the built-in authorization server: MCP clients sign in (PKCE, client
//!   metadata documents, dynamic registration) through the team's identity provider.
//! - [`store`]: the authorization server's state (SQLite or PostgreSQL).
//! - [`governance`]: each session's policy decisions, rate limits, list filtering, redaction
//!   and audit records, held by the session; it knows no HTTP.
//! - [`policy`]: pure inline policy beneath it: per-tool authorization, argument rules, rate
//!   limits, list filtering, output redaction.
//! - [`audit`]: hash-chained audit records, written off the request path, and the latest of
//!   them in memory for the admin listener's activity page.
//! - [`sandbox`]: the per-session supervisor helper (`__sandbox-exec`), the only `unsafe`.
//! - [`config`]: the options of each command (clap derives them) validated once into a
//!   frozen configuration whose parts each component takes.
//! - [`secret`]: the one type of every secret value.
//! - [`telemetry`]: logs, Prometheus metrics, W3C trace context, OpenTelemetry export (OTLP).
//! - [`app`], [`cli`], [`signal`]: wiring.
//!
//! # Request flow
//! ```text
//! listener → Router layers: request span → origin check → bearer auth (401/403 +
//!   WWW-Authenticate, else the principal)
//! → POST: parse → session (initialize creates one; the principal must own it)
//!   → the session's governance admits it (a refusal is answered by `rescue`)
//!   → child stdin (queued, coalesced) ; answer: JSON, or SSE when related messages come first
//! child stdout → framing → Session::on_message → governance (filter, redact; the call's
//!   audit record when it is done) → the request's stream (response, progress)
//!   | the GET stream (server→client requests, notifications)
//! ```

pub mod app;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod child;
pub mod cli;
pub mod config;
pub mod connections;
pub mod credentials;
pub mod governance;
pub mod mcp;
pub mod policy;
pub mod sandbox;
pub mod secret;
pub mod session;
pub mod signal;
pub mod store;
pub mod telemetry;
pub mod transport;
