//! Parsers of single flag values (durations, sizes, `NAME=VALUE`, `UID[:GID]`, rates), shared
//! by every command's options. Each answers with a message naming the accepted forms.

use std::time::Duration;

use crate::session::SessionRate;

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 5m, 1h)"))
}

pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 65536, 512KiB, 4MiB)"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    n.checked_mul(factor).ok_or_else(|| "size too large".into())
}

pub fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

pub fn parse_user(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?} is not UID[:GID]");
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    Ok((u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?))
}

/// `--session-rate-per-principal`: a rate, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSetting(pub Option<SessionRate>);

pub fn parse_rate_setting(s: &str) -> Result<RateSetting, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(RateSetting(None));
    }
    SessionRate::parse(s).map(|r| RateSetting(Some(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("4 parsecs").is_err());
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }
}
