//! Tamper-evident audit records: one JSON line per session start/end, governed call,
//! denial, redaction, authentication failure and server exit, hash-chained, written by a
//! thread that the request path never waits for.
//!
//! `event` defines what a record says, `sink` queues and writes, `chain` links records and
//! verifies files (`mcp-warden audit verify FILE`).

pub mod chain;
pub mod event;
pub mod sink;

pub use chain::{Broken, Hasher, Head, verify};
pub use event::{Arguments, AuditEvent, EventKind, Redactions};
pub use sink::{AuditConfig, AuditSink, Output};
