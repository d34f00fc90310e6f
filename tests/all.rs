#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The integration suite: one test binary (faster to build and link than one per file).
//! Every test runs the real `mcp-warden` binary against real STDIO MCP servers.

mod suite;
mod support;
