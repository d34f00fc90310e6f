//! Tamper-evident audit records: one JSON line per session start/end, governed call,
//! denial, redaction, authentication failure and server exit, hash-chained and anchored,
//! written by a thread that the request path waits for only when the deployment says so.
//!
//! `event` defines what a record says, `sink` queues and writes, `chain` links records and
//! verifies files (`mcp-warden audit verify FILE`), `activity` keeps the latest records in
//! memory for the admin listener's activity page.

pub mod activity;
pub mod chain;
pub mod event;
pub mod sink;

pub use activity::Activity;
pub use chain::{Anchor, Broken, Expect, Gap, Hasher, Head, Report, verify};
pub use event::{Arguments, AuditEvent, EventKind, Redactions};
pub use sink::{AuditConfig, AuditSink, OnFull, Output};
