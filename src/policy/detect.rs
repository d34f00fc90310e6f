//! Built-in detectors for credentials and personal data, and the scanner that runs them
//! together with configured patterns over one string.
//!
//! Detectors are tuned for few false positives: each matches a documented token format (a
//! fixed prefix, a length, a checksum) rather than "anything that looks random", because a
//! redaction that fires on ordinary output breaks tools (presigned URLs, hashes, ids).

use std::ops::Range;

use regex::{Regex, RegexSet};

/// A built-in detector. The snake_case name is what configs select and audit records count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// PEM private key blocks (RSA, EC, DSA, OpenSSH, PKCS#8, encrypted, PGP).
    PrivateKey,
    /// AWS access key ids (`AKIA…`, `ASIA…`).
    AwsAccessKey,
    /// Google Cloud API keys (`AIza…`).
    GcpApiKey,
    /// Azure storage account keys in connection strings (`AccountKey=…`).
    AzureStorageKey,
    /// GitHub personal, OAuth, app and refresh tokens (`ghp_…`, `github_pat_…`).
    GithubToken,
    /// GitLab personal access tokens (`glpat-…`).
    GitlabToken,
    /// Slack tokens (`xoxb-…`, `xoxp-…`).
    SlackToken,
    /// Stripe secret and restricted keys (`sk_live_…`, `rk_live_…`).
    StripeKey,
    /// JSON Web Tokens (three base64url parts, header and payload objects).
    Jwt,
    /// Payment card numbers (13–19 digits, optionally grouped) that pass the Luhn check.
    CreditCard,
    /// US social security numbers (`AAA-GG-SSSS`, excluding never-issued ranges).
    UsSsn,
    /// E-mail addresses.
    Email,
}

impl Detector {
    pub const ALL: [Detector; 12] = [
        Detector::PrivateKey,
        Detector::AwsAccessKey,
        Detector::GcpApiKey,
        Detector::AzureStorageKey,
        Detector::GithubToken,
        Detector::GitlabToken,
        Detector::SlackToken,
        Detector::StripeKey,
        Detector::Jwt,
        Detector::CreditCard,
        Detector::UsSsn,
        Detector::Email,
    ];

    /// The credential detectors (the `secrets` group).
    pub const SECRETS: [Detector; 9] = [
        Detector::PrivateKey,
        Detector::AwsAccessKey,
        Detector::GcpApiKey,
        Detector::AzureStorageKey,
        Detector::GithubToken,
        Detector::GitlabToken,
        Detector::SlackToken,
        Detector::StripeKey,
        Detector::Jwt,
    ];

    /// The personal-data detectors (the `pii` group).
    pub const PII: [Detector; 3] = [Detector::CreditCard, Detector::UsSsn, Detector::Email];

    pub fn name(self) -> &'static str {
        match self {
            Detector::PrivateKey => "private_key",
            Detector::AwsAccessKey => "aws_access_key",
            Detector::GcpApiKey => "gcp_api_key",
            Detector::AzureStorageKey => "azure_storage_key",
            Detector::GithubToken => "github_token",
            Detector::GitlabToken => "gitlab_token",
            Detector::SlackToken => "slack_token",
            Detector::StripeKey => "stripe_key",
            Detector::Jwt => "jwt",
            Detector::CreditCard => "credit_card",
            Detector::UsSsn => "us_ssn",
            Detector::Email => "email",
        }
    }

    /// Resolves a detector or group name (`secrets`, `pii`, `all`).
    pub fn resolve(name: &str) -> Option<Vec<Detector>> {
        match name {
            "all" => Some(Detector::ALL.to_vec()),
            "secrets" => Some(Detector::SECRETS.to_vec()),
            "pii" => Some(Detector::PII.to_vec()),
            _ => Detector::ALL
                .iter()
                .find(|d| d.name() == name)
                .map(|d| vec![*d]),
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            // The whole block, so a redaction removes the key material, not just the header.
            Detector::PrivateKey => {
                r"-----BEGIN[A-Z0-9 ]{0,24} PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z0-9 ]{0,24} PRIVATE KEY(?: BLOCK)?-----|\z)"
            }
            Detector::AwsAccessKey => r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
            Detector::GcpApiKey => r"\bAIza[0-9A-Za-z_\-]{35}",
            Detector::AzureStorageKey => r"AccountKey=[A-Za-z0-9+/]{86}==",
            Detector::GithubToken => {
                r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"
            }
            Detector::GitlabToken => r"\bglpat-[A-Za-z0-9_\-]{20,}",
            Detector::SlackToken => r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
            Detector::StripeKey => r"\b[sr]k_live_[A-Za-z0-9]{16,}\b",
            Detector::Jwt => r"\beyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*",
            Detector::CreditCard => r"\b\d(?:[ \-]?\d){12,18}\b",
            Detector::UsSsn => r"\b\d{3}-\d{2}-\d{4}\b",
            Detector::Email => {
                r"\b[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b"
            }
        }
    }

    /// Checks a candidate the regular expression cannot judge alone.
    fn accepts(self, m: &str) -> bool {
        match self {
            Detector::CreditCard => luhn(m),
            Detector::UsSsn => ssn_issuable(m),
            _ => true,
        }
    }
}

/// The Luhn checksum over the digits of `s` (separators ignored), for 13–19 digits.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|d| *d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// SSA never issues area 000, 666 or 900–999, group 00 or serial 0000.
fn ssn_issuable(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(area), Some(group), Some(serial)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// What a match is: a built-in detector or a configured pattern (by its index in the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Finding {
    Detector(Detector),
    Pattern(u16),
}

impl Finding {
    /// The label counted in audit records (`pattern` for configured patterns, which are
    /// counted under their rule).
    pub fn label(self) -> &'static str {
        match self {
            Finding::Detector(d) => d.name(),
            Finding::Pattern(_) => "pattern",
        }
    }
}

/// A compiled set of detectors and patterns; one pass of a combined automaton tells whether
/// anything can match before any individual expression runs.
#[derive(Debug, Clone)]
pub struct Scanner {
    set: RegexSet,
    each: Vec<(Finding, Regex)>,
}

impl Scanner {
    /// Compiles detectors and patterns. Errors name the offending pattern.
    pub fn new(detectors: &[Detector], patterns: &[String]) -> Result<Scanner, String> {
        let mut each = Vec::with_capacity(detectors.len() + patterns.len());
        for d in detectors {
            let re = Regex::new(d.pattern()).map_err(|e| e.to_string())?;
            each.push((Finding::Detector(*d), re));
        }
        for (i, p) in patterns.iter().enumerate() {
            let re = regex::RegexBuilder::new(p)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("pattern {p:?}: {e}"))?;
            let idx = u16::try_from(i).map_err(|_| "too many patterns".to_owned())?;
            each.push((Finding::Pattern(idx), re));
        }
        let set = RegexSet::new(each.iter().map(|(_, r)| r.as_str())).map_err(|e| e.to_string())?;
        Ok(Scanner { set, each })
    }

    pub fn is_empty(&self) -> bool {
        self.each.is_empty()
    }

    /// The first finding in `s`, if any.
    pub fn first(&self, s: &str) -> Option<Finding> {
        // The combined automaton answers "anything at all?" in one pass, using the
        // detectors' literal prefixes; asking it *which* patterns match would run every
        // pattern to the end, an order of magnitude slower. Matches are rare, so only then
        // does each expression run on its own.
        if self.each.is_empty() || !self.set.is_match(s) {
            return None;
        }
        self.each.iter().find_map(|(finding, re)| {
            let ok = match finding {
                Finding::Detector(d) => re.find_iter(s).any(|m| d.accepts(m.as_str())),
                Finding::Pattern(_) => re.is_match(s),
            };
            ok.then_some(*finding)
        })
    }

    /// Every finding in `s`, as byte ranges (they may overlap).
    pub fn find_all(&self, s: &str, out: &mut Vec<(Range<usize>, Finding)>) {
        if self.each.is_empty() || !self.set.is_match(s) {
            return;
        }
        for (finding, re) in &self.each {
            for m in re.find_iter(s) {
                let ok = match finding {
                    Finding::Detector(d) => d.accepts(m.as_str()),
                    Finding::Pattern(_) => !m.is_empty(),
                };
                if ok {
                    out.push((m.range(), *finding));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(d: Detector, s: &str) -> bool {
        Scanner::new(&[d], &[]).unwrap().first(s).is_some()
    }

    #[test]
    fn every_detector_finds_its_format_and_not_lookalikes() {
        let cases: &[(Detector, &str, &str)] = &[
            (
                Detector::PrivateKey,
                "x -----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
                "-----BEGIN PUBLIC KEY-----",
            ),
            (
                Detector::AwsAccessKey,
                "key=AKIAIOSFODNN7EXAMPLE;",
                "AKIAIOSFODNN7EXAMPL",
            ),
            (
                Detector::GcpApiKey,
                "AIzaSyA1234567890abcdefghijklmnopqrstuv",
                "AIza-short",
            ),
            (
                Detector::AzureStorageKey,
                &format!("AccountKey={}==;", "a".repeat(86)),
                "AccountKey=short==",
            ),
            (
                Detector::GithubToken,
                "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
                "ghp_short",
            ),
            (
                Detector::GitlabToken,
                "glpat-abcdefghij0123456789",
                "glpat-x",
            ),
            (
                Detector::SlackToken,
                "xoxb-1234567890-abcdef",
                "xoxz-1234567890",
            ),
            (
                Detector::StripeKey,
                "sk_live_abcdefghijklmnop1234",
                "sk_test_abcdefghijklmnop1234",
            ),
            (
                Detector::Jwt,
                "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
                "eyJhbGciOiJIUzI1NiJ9",
            ),
            (
                Detector::CreditCard,
                "card 4111 1111 1111 1111 ok",
                "card 4111 1111 1111 1112",
            ),
            (Detector::UsSsn, "ssn 123-45-6789", "ssn 666-45-6789"),
            (
                Detector::Email,
                "mail alice@example.com now",
                "alice@localhost",
            ),
        ];
        for (d, yes, no) in cases {
            assert!(hit(*d, yes), "{} missed {yes:?}", d.name());
            assert!(!hit(*d, no), "{} matched {no:?}", d.name());
        }
        assert_eq!(cases.len(), Detector::ALL.len());
    }

    #[test]
    fn luhn_and_ssn_validation() {
        assert!(luhn("4111111111111111"));
        assert!(luhn("5500-0000-0000-0004"));
        assert!(!luhn("4111111111111112"));
        assert!(
            !luhn("0000000000000000"),
            "repeated digits are not card numbers"
        );
        assert!(!luhn("4111"));
        assert!(ssn_issuable("123-45-6789"));
        for bad in ["000-12-3456", "900-12-3456", "123-00-4567", "123-45-0000"] {
            assert!(!ssn_issuable(bad), "{bad}");
        }
    }

    #[test]
    fn groups_and_names_resolve() {
        assert_eq!(Detector::resolve("pii").unwrap().len(), 3);
        assert_eq!(Detector::resolve("secrets").unwrap().len(), 9);
        assert_eq!(Detector::resolve("jwt"), Some(vec![Detector::Jwt]));
        assert_eq!(Detector::resolve("nope"), None);
        for d in Detector::ALL {
            assert_eq!(Detector::resolve(d.name()), Some(vec![d]));
        }
    }

    #[test]
    fn find_all_reports_ranges_and_patterns() {
        let s = Scanner::new(&[Detector::Email], &["(?i)password=\\S+".into()]).unwrap();
        let text = "to bob@example.org, password=hunter2";
        let mut out = Vec::new();
        s.find_all(text, &mut out);
        out.sort_by_key(|(r, _)| r.start);
        assert_eq!(&text[out[0].0.clone()], "bob@example.org");
        assert_eq!(out[1], (20..36, Finding::Pattern(0)));
        assert!(Scanner::new(&[], &["(".into()]).is_err());
        assert_eq!(s.first("nothing here"), None);
    }
}
