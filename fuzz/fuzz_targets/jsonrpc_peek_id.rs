//! The id of an oversized server line, read from its first bytes: never a guess. Whatever a
//! prefix yields, the whole line yields the same, and so does the full parse when the line is
//! a valid message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden::mcp::{Envelope, peek_id};

// Input: where the prefix ends (two bytes, big-endian), then the line.
fuzz_target!(|data: &[u8]| {
    let [hi, lo, line @ ..] = data else {
        return;
    };
    let cut = usize::from(u16::from_be_bytes([*hi, *lo]));
    let prefix = &line[..cut.min(line.len())];
    let whole = peek_id(line);
    let parsed = Envelope::parse(line).ok();
    if let Some(id) = peek_id(prefix) {
        assert_eq!(whole.as_ref(), Some(&id), "a longer prefix changed the id");
    }
    if let Some(id) = &whole
        && let Some(env) = &parsed
    {
        assert_eq!(
            env.id.as_ref(),
            Some(id),
            "peeked an id the message does not have"
        );
    }
    // With no escapes, keys are literal: a valid message's id is always found.
    if let Some(env) = &parsed
        && env.id.is_some()
        && !line.contains(&b'\\')
    {
        assert_eq!(whole, env.id, "missed the id of a valid message");
    }
});
