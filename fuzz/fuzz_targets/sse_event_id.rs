//! `Last-Event-ID` values: only `<stream>-<seq>` in decimal is an event id, and every id the
//! server writes reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden::session::EventId;

// Input: a `Last-Event-ID` value. Its first twelve bytes also make an id to write and read.
fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = data.get(..12) {
        let (s, q) = bytes.split_at(4);
        let written = EventId {
            stream: u32::from_le_bytes(s.try_into().expect("4 bytes")),
            seq: u64::from_le_bytes(q.try_into().expect("8 bytes")),
        };
        assert_eq!(EventId::parse(&written.to_string()), Some(written));
    }
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let Some(id) = EventId::parse(header) else {
        return;
    };
    let (stream, seq) = header
        .trim()
        .split_once('-')
        .expect("an event id has a dash");
    for part in [stream, seq] {
        assert!(
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()),
            "accepted {header:?}"
        );
    }
    assert_eq!(stream.parse::<u128>().ok(), Some(u128::from(id.stream)));
    assert_eq!(seq.parse::<u128>().ok(), Some(u128::from(id.seq)));
    assert_eq!(EventId::parse(&id.to_string()), Some(id));
});
