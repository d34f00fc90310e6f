//! `Accept` header lines (one per input line): never a panic, the answer does not depend on
//! the order of ranges or on letter case, and an explicit `q=0` for a media type refuses that
//! type whatever wildcards the client also sent (RFC 9110, 12.5.1: the most specific range
//! decides).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden::transport::http::fuzzing::accepts;

const JSON_REFUSED: &[u8] = b"application/json;q=0";
const SSE_REFUSED: &[u8] = b"text/event-stream;q=0";

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let (json, sse) = accepts(&lines);

    let reversed: Vec<Vec<u8>> = lines
        .iter()
        .rev()
        .map(|l| {
            let mut ranges: Vec<&[u8]> = l.split(|&b| b == b',').collect();
            ranges.reverse();
            ranges.join(&b","[..])
        })
        .collect();
    let reversed: Vec<&[u8]> = reversed.iter().map(Vec::as_slice).collect();
    assert_eq!(accepts(&reversed), (json, sse), "order of ranges");

    let upper: Vec<Vec<u8>> = lines.iter().map(|l| l.to_ascii_uppercase()).collect();
    let upper: Vec<&[u8]> = upper.iter().map(Vec::as_slice).collect();
    assert_eq!(accepts(&upper), (json, sse), "letter case");

    let mut refusing = lines.clone();
    refusing.push(JSON_REFUSED);
    assert_eq!(accepts(&refusing), (false, sse), "explicit json refusal");
    refusing.pop();
    refusing.push(SSE_REFUSED);
    assert_eq!(accepts(&refusing), (json, false), "explicit sse refusal");
});
