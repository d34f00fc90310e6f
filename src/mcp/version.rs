//! MCP protocol revisions the bridge knows.

/// A protocol revision of the session-based ("legacy") era, which is what an unmodified
/// STDIO server speaks and what the bridge serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// HTTP+SSE era.
    V2024_11_05,
    /// First Streamable HTTP revision; the only one that allows JSON-RPC batches.
    V2025_03_26,
    V2025_06_18,
    /// Adds SSE priming events and polling.
    V2025_11_25,
}

impl ProtocolVersion {
    /// Every revision the bridge accepts, oldest first.
    pub const ALL: [ProtocolVersion; 4] = [
        ProtocolVersion::V2024_11_05,
        ProtocolVersion::V2025_03_26,
        ProtocolVersion::V2025_06_18,
        ProtocolVersion::V2025_11_25,
    ];

    /// The version assumed when a client sends no `MCP-Protocol-Version` header and the
    /// session has not told us otherwise (Streamable HTTP, "Protocol Version Header").
    pub const ASSUMED: ProtocolVersion = ProtocolVersion::V2025_03_26;

    /// The newest revision of the session era; offered to modern clients that must fall back.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V2025_11_25;

    pub fn parse(s: &str) -> Option<ProtocolVersion> {
        Some(match s {
            "2024-11-05" => ProtocolVersion::V2024_11_05,
            "2025-03-26" => ProtocolVersion::V2025_03_26,
            "2025-06-18" => ProtocolVersion::V2025_06_18,
            "2025-11-25" => ProtocolVersion::V2025_11_25,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V2024_11_05 => "2024-11-05",
            ProtocolVersion::V2025_03_26 => "2025-03-26",
            ProtocolVersion::V2025_06_18 => "2025-06-18",
            ProtocolVersion::V2025_11_25 => "2025-11-25",
        }
    }

    /// JSON-RPC batches were allowed only in 2025-03-26 (removed in 2025-06-18).
    pub fn allows_batches(self) -> bool {
        self <= ProtocolVersion::V2025_03_26
    }

    /// Priming events (an event id with empty data) are understood from 2025-11-25 on;
    /// older clients may try to parse the empty data as JSON.
    pub fn wants_priming_event(self) -> bool {
        self >= ProtocolVersion::V2025_11_25
    }

    /// Whether a version string belongs to the sessionless era (2026-07-28 and later).
    /// Dates compare lexically.
    pub fn is_modern_era(s: &str) -> bool {
        s.len() == 10 && s.as_bytes()[4] == b'-' && s >= "2026-07-28"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_versions_only() {
        for v in ProtocolVersion::ALL {
            assert_eq!(ProtocolVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(ProtocolVersion::parse("2026-07-28"), None);
        assert_eq!(ProtocolVersion::parse("garbage"), None);
    }

    #[test]
    fn batches_and_priming_follow_the_revision() {
        assert!(ProtocolVersion::V2025_03_26.allows_batches());
        assert!(!ProtocolVersion::V2025_06_18.allows_batches());
        assert!(!ProtocolVersion::V2025_06_18.wants_priming_event());
        assert!(ProtocolVersion::V2025_11_25.wants_priming_event());
    }

    #[test]
    fn modern_era_detection() {
        assert!(ProtocolVersion::is_modern_era("2026-07-28"));
        assert!(ProtocolVersion::is_modern_era("2027-01-01"));
        assert!(!ProtocolVersion::is_modern_era("2025-11-25"));
        assert!(!ProtocolVersion::is_modern_era("DRAFT-2026"));
    }
}
