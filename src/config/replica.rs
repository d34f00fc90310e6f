//! The default replica id: the pod name or host name, made into a valid session-id prefix.
//!
//! Session ids are `<replica-id>.<random>` so a load balancer can route every follow-up to the
//! replica that holds the session. Without `--replica-id`, a StatefulSet pod (`POD_NAME` from
//! the downward API, or its host name, which Kubernetes sets to the pod name) gets a prefix
//! that matches its stable DNS name, so a router can map prefix → pod with no extra setup.

/// Longest replica id (a DNS label, so it can double as a host name in router configs).
pub const MAX_LEN: usize = 63;

/// Whether `id` is a valid replica id: 1-63 characters of a-z, 0-9 and '-'.
pub fn is_valid(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The replica id derived from a pod name (preferred) or host name, or `None` when neither
/// yields one (then session ids carry no prefix).
pub fn default_id(pod_name: Option<&str>, hostname: Option<&str>) -> Option<String> {
    [pod_name, hostname]
        .into_iter()
        .flatten()
        .find_map(|name| normalize(name.trim()))
}

/// Lower-cases `name`, turns every character outside a-z, 0-9 and '-' into '-', trims '-'
/// at both ends, and shortens names longer than 63 characters to a 54-character head plus
/// a hash of the whole name, so two long names that differ only at the end (a pod's ordinal
/// or random suffix) still get distinct ids. `None` if nothing usable is left.
pub fn normalize(name: &str) -> Option<String> {
    let mapped: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed.is_empty() {
        return None;
    }
    if trimmed.len() <= MAX_LEN {
        return Some(trimmed.to_owned());
    }
    // 54 + '-' + 8 hex digits = 63.
    let head = trimmed[..54].trim_end_matches('-');
    Some(format!("{head}-{:08x}", fnv1a32(name.as_bytes())))
}

/// FNV-1a: a stable, dependency-free hash (not a security property; it only has to differ).
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_kept_as_they_are() {
        assert_eq!(normalize("mcp-warden-0").as_deref(), Some("mcp-warden-0"));
        assert_eq!(
            default_id(Some("mcp-warden-2"), Some("node-a")).as_deref(),
            Some("mcp-warden-2")
        );
    }

    #[test]
    fn host_names_are_lower_cased_and_dots_and_underscores_become_dashes() {
        assert_eq!(
            normalize("Web_01.Example.COM").as_deref(),
            Some("web-01-example-com")
        );
        assert_eq!(
            default_id(None, Some(" build-7\n")).as_deref(),
            Some("build-7")
        );
        assert_eq!(normalize("-.x.-").as_deref(), Some("x"));
    }

    #[test]
    fn unusable_names_fall_back_to_the_next_source_then_to_none() {
        assert_eq!(default_id(Some("..."), Some("h1")).as_deref(), Some("h1"));
        assert_eq!(default_id(Some(""), Some("___")), None);
        assert_eq!(default_id(None, None), None);
        assert_eq!(normalize("ÄÖ"), None);
    }

    #[test]
    fn long_names_keep_a_valid_length_and_stay_distinct() {
        let base = "a".repeat(80);
        let a = normalize(&format!("{base}-0")).unwrap();
        let b = normalize(&format!("{base}-1")).unwrap();
        assert_eq!(a.len(), MAX_LEN);
        assert!(is_valid(&a) && is_valid(&b));
        assert_ne!(a, b);
        assert!(a.starts_with(&"a".repeat(54)));
    }

    #[test]
    fn every_normalized_name_is_valid() {
        for name in ["x", "A-B", "é-1", "p.o.d", &"z".repeat(63), &"-".repeat(70)] {
            if let Some(id) = normalize(name) {
                assert!(is_valid(&id), "{name:?} -> {id:?}");
            }
        }
        assert!(!is_valid("") && !is_valid("Bad_ID") && !is_valid(&"a".repeat(64)));
    }
}
