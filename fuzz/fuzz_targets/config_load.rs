//! The config file loader on arbitrary text: never a panic, and a refusal always says where
//! and why (the file name is in the message). Referenced files (the audit HMAC key) read as
//! a fixed key, so the audit section is reached too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mcp_warden::config::file::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let read = |_: &Path| Ok(b"0123456789abcdef0123456789abcdef".to_vec());
    match parse(
        text,
        Path::new("warden.toml"),
        Path::new("/etc/mcp-warden"),
        &read,
    ) {
        Ok(config) => {
            // A policy that loaded can describe itself.
            let _ = config.policy.summary();
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("warden.toml"), "no file name: {message}");
        }
    }
});
