//! Transports clients reach the bridge through.

pub mod http;
