//! The config file (`--config warden.toml`): TOML, unknown keys refused, every value checked
//! when it loads, errors as `FILE:LINE:COLUMN: what is wrong`.
//!
//! Sections: `[policy]`, `[[rule]]`, `[[argument]]`, `[[redact]]`, `[[mark]]`,
//! `[[rate_limit]]` (see [`crate::policy::config`]) and `[audit]`. The annotated reference
//! is `examples/warden.toml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::audit::{AuditConfig, OnFull, Output};
use crate::policy::config::{
    ArgumentSpec, MarkSpec, PolicyOptions, RateLimitSpec, RedactSpec, RuleSpec, line_col,
};
use crate::policy::{self, Policy, PolicySpec};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WardenFile {
    #[serde(default)]
    policy: PolicyOptions,
    #[serde(default)]
    rule: Vec<RuleSpec>,
    #[serde(default)]
    argument: Vec<ArgumentSpec>,
    #[serde(default)]
    redact: Vec<RedactSpec>,
    #[serde(default)]
    mark: Vec<MarkSpec>,
    #[serde(default)]
    rate_limit: Vec<RateLimitSpec>,
    audit: Option<AuditSpec>,
}

/// `[audit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSpec {
    /// `stdout`, or a file path (relative to the config file) that is appended to.
    output: Spanned<String>,
    /// A file holding the HMAC key for record and argument hashes.
    hmac_key_file: Option<Spanned<String>>,
    #[serde(default)]
    capture_arguments: bool,
    #[serde(default = "buffer")]
    buffer: Spanned<usize>,
    /// What a record does when the queue is full: `drop` (default), `block` or `refuse`.
    #[serde(default)]
    on_full: OnFull,
    /// Where a file output's head is kept (relative to the config file). Default: the
    /// output's path with `.anchor` appended.
    anchor: Option<Spanned<String>>,
}

fn buffer() -> Spanned<usize> {
    Spanned::new(0..0, 4096)
}

/// What the file configures.
#[derive(Debug, Clone)]
pub struct FileConfig {
    pub policy: Arc<Policy>,
    pub audit: Option<AuditConfig>,
    /// The files it names that no server may read (the audit log and its key), each with
    /// the setting that names it.
    pub files: Vec<(String, PathBuf)>,
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FileError(String);

impl FileError {
    fn at(
        path: &Path,
        source: &str,
        span: Option<std::ops::Range<usize>>,
        message: &str,
    ) -> FileError {
        match span {
            Some(span) => {
                let (line, col) = line_col(source, span.start);
                FileError(format!("{}:{line}:{col}: {message}", path.display()))
            }
            None => FileError(format!("{}: {message}", path.display())),
        }
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<FileConfig, FileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FileError(format!("{}: cannot read: {e}", path.display())))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, path, &base, &|p| std::fs::read(p))
}

/// Validates config text. `read` reads referenced files (the HMAC key), so tests need no
/// files; relative paths are resolved against `base`.
pub fn parse(
    text: &str,
    path: &Path,
    base: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<FileConfig, FileError> {
    let file: WardenFile = toml::from_str(text).map_err(|e| {
        // toml's message is one line plus a snippet; the first line is what matters here.
        let message = e.message().trim().to_owned();
        FileError::at(path, text, e.span(), &message)
    })?;
    let spec = PolicySpec {
        options: file.policy,
        rules: file.rule,
        arguments: file.argument,
        redact: file.redact,
        marks: file.mark,
        rate_limits: file.rate_limit,
    };
    let policy =
        policy::compile(&spec).map_err(|e| FileError::at(path, text, e.span, &e.message))?;
    let mut files = Vec::new();
    if let Some(a) = &file.audit {
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base.join(p) }
        };
        if !matches!(a.output.get_ref().as_str(), "" | "stdout" | "-") {
            files.push(("[audit] output".to_owned(), resolve(a.output.get_ref())));
        }
        if let Some(k) = &a.hmac_key_file {
            files.push(("[audit] hmac_key_file".to_owned(), resolve(k.get_ref())));
        }
    }
    let audit = file
        .audit
        .map(|a| audit_config(a, text, path, base, read))
        .transpose()?;
    Ok(FileConfig {
        policy: Arc::new(policy),
        audit,
        files,
    })
}

fn audit_config(
    a: AuditSpec,
    text: &str,
    path: &Path,
    base: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<AuditConfig, FileError> {
    let resolve = |p: &str| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { base.join(p) }
    };
    let output = match a.output.get_ref().as_str() {
        "" => {
            return Err(FileError::at(
                path,
                text,
                Some(a.output.span()),
                "[audit] output: give `stdout` or a file path",
            ));
        }
        "stdout" | "-" => Output::Stdout,
        p => Output::File(resolve(p)),
    };
    let key = match &a.hmac_key_file {
        None => None,
        Some(k) => {
            let bytes = read(&resolve(k.get_ref())).map_err(|e| {
                FileError::at(
                    path,
                    text,
                    Some(k.span()),
                    &format!("[audit] hmac_key_file: cannot read: {e}"),
                )
            })?;
            let trimmed = bytes.trim_ascii().to_vec();
            if trimmed.len() < 16 {
                return Err(FileError::at(
                    path,
                    text,
                    Some(k.span()),
                    "[audit] hmac_key_file: the key must be at least 16 bytes",
                ));
            }
            Some(trimmed)
        }
    };
    if !(1..=1_000_000).contains(a.buffer.get_ref()) {
        return Err(FileError::at(
            path,
            text,
            Some(a.buffer.span()),
            "[audit] buffer must be between 1 and 1000000",
        ));
    }
    let anchor = match (&output, &a.anchor) {
        (Output::File(path), None) => Some(default_anchor(path)),
        (Output::File(_), Some(p)) if !p.get_ref().is_empty() => Some(resolve(p.get_ref())),
        (_, Some(p)) => {
            return Err(FileError::at(
                path,
                text,
                Some(p.span()),
                "[audit] anchor: give a file path, and only with a file output (a stream to stdout is anchored by whoever keeps it)",
            ));
        }
        (Output::Stdout, None) => None,
    };
    if let (Output::File(out), Some(anchor)) = (&output, &anchor)
        && out == anchor
    {
        return Err(FileError::at(
            path,
            text,
            a.anchor.as_ref().map(Spanned::span),
            "[audit] anchor must not be the output itself",
        ));
    }
    Ok(AuditConfig {
        output,
        key,
        capture_arguments: a.capture_arguments,
        buffer: *a.buffer.get_ref(),
        on_full: a.on_full,
        anchor,
    })
}

/// Where the head of the audit log at `output` is kept unless configured: beside it, as
/// `<output>.anchor`.
pub fn default_anchor(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".anchor");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<FileConfig, String> {
        let read = |p: &Path| -> std::io::Result<Vec<u8>> {
            if p.ends_with("key") {
                Ok(b"0123456789abcdef0123\n".to_vec())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        };
        parse(text, Path::new("w.toml"), Path::new("/etc/warden"), &read).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_file_loads() {
        let cfg = parse_text(
            r#"
[policy]
default = "deny"

[[rule]]
name = "echo"
tools = ["echo", "get-*"]
scopes = ["mcp:tools"]
when = 'claims.dept == "eng"'

[[rule]]
name = "no-env"
effect = "deny"
tools = ["get-env"]

[[argument]]
name = "no-keys"
tools = ["*"]
detectors = ["secrets"]

[[redact]]
name = "pii"
tools = ["*"]
detectors = ["pii"]
in = ["text"]

[[mark]]
name = "touched-secrets"
tools = ["echo"]
when = 'args.message.startsWith("/secrets")'
set = "secrets"

[[rate_limit]]
name = "per-user"
per = "principal"
rate = "60/min"

[audit]
output = "audit.jsonl"
hmac_key_file = "key"
"#,
        )
        .unwrap();
        // Both files are named for the sidecar's check that no server can read them.
        assert_eq!(
            cfg.files,
            [
                (
                    "[audit] output".to_owned(),
                    "/etc/warden/audit.jsonl".into()
                ),
                ("[audit] hmac_key_file".to_owned(), "/etc/warden/key".into()),
            ]
        );
        let audit = cfg.audit.unwrap();
        assert_eq!(audit.output, Output::File("/etc/warden/audit.jsonl".into()));
        assert_eq!(audit.key.as_deref(), Some(&b"0123456789abcdef0123"[..]));
        assert_eq!(audit.buffer, 4096);
        assert_eq!(audit.on_full, OnFull::Drop);
        assert_eq!(
            audit.anchor.as_deref(),
            Some(Path::new("/etc/warden/audit.jsonl.anchor"))
        );
    }

    #[test]
    fn errors_say_where_and_what() {
        let cases: &[(&str, &str)] = &[
            (
                "[policy]\ndefualt = \"deny\"\n",
                "w.toml:2:1: unknown field `defualt`",
            ),
            (
                "[[rule]]\nname = \"a\"\ntools = [\"x\"]\nwhen = \"nmae == 'x'\"\n",
                "w.toml:4:8: [[rule]] \"a\": when: unknown variable `nmae`",
            ),
            (
                "[[rule]]\nname = \"a\"\n",
                "w.toml:2:8: [[rule]] \"a\": name at least one of tools",
            ),
            (
                "[[rule]]\nname = \"a\"\ntools=[\"x\"]\n[[rule]]\nname = \"a\"\ntools=[\"y\"]\n",
                "w.toml:5:8: [[rule]] name \"a\" is used twice",
            ),
            (
                "[[argument]]\nname = \"a\"\ntools = [\"*\"]\ndetectors = [\"jwtt\"]\n",
                "w.toml:4:14: [[argument]] \"a\": unknown detector \"jwtt\"",
            ),
            (
                "[[redact]]\nname = \"a\"\ntools = [\"*\"]\npatterns = [\"(\"]\n",
                "w.toml:4:13: [[redact]] \"a\": pattern:",
            ),
            (
                "[[redact]]\nname = \"a\"\ntools = [\"*\"]\npointers = [\"x\"]\n",
                "w.toml:4:13: [[redact]] \"a\": JSON pointer \"x\" must start with '/'",
            ),
            (
                "[[rate_limit]]\nname = \"a\"\nper = \"principal\"\nrate = \"10/week\"\n",
                "w.toml:4:8: [[rate_limit]] \"a\": rate \"10/week\"",
            ),
            (
                "[[rate_limit]]\nname = \"a\"\nper = \"everyone\"\nrate = \"1/s\"\n",
                "w.toml:3:7: unknown variant `everyone`",
            ),
            (
                "[[rule]]\nname = \"a\"\ntools = [\"[x\"]\n",
                "w.toml:3:10: [[rule]] \"a\": tool pattern:",
            ),
            (
                "[[rule]]\nname = \"a\"\neffect = \"deny\"\ntools = [\"x\"]\nscopes = [\"s\"]\n",
                "w.toml:5:11: [[rule]] \"a\": scopes apply to allow rules",
            ),
            (
                "[audit]\noutput = \"stdout\"\nhmac_key_file = \"missing\"\n",
                "w.toml:3:17: [audit] hmac_key_file: cannot read",
            ),
            (
                "[audit]\noutput = \"stdout\"\nbuffer = 0\n",
                "w.toml:3:10: [audit] buffer",
            ),
            ("[audit]\nfile = \"x\"\n", "unknown field `file`"),
            (
                "[audit]\noutput = \"a.jsonl\"\non_full = \"wait\"\n",
                "w.toml:3:11: unknown variant `wait`, expected one of `drop`, `block`, `refuse`",
            ),
            (
                "[audit]\noutput = \"stdout\"\nanchor = \"head\"\n",
                "w.toml:3:10: [audit] anchor: give a file path, and only with a file output",
            ),
            (
                "[audit]\noutput = \"a.jsonl\"\nanchor = \"a.jsonl\"\n",
                "w.toml:3:10: [audit] anchor must not be the output itself",
            ),
            ("whatever = 1\n", "w.toml:1:1: unknown field `whatever`"),
        ];
        for (text, want) in cases {
            let got = parse_text(text).unwrap_err();
            assert!(
                got.starts_with(want) || got.contains(want),
                "for {text:?}\n got: {got}\nwant: {want}"
            );
        }
    }

    #[test]
    fn the_audit_overflow_mode_and_anchor_are_read() {
        for (mode, want) in [
            ("drop", OnFull::Drop),
            ("block", OnFull::Block),
            ("refuse", OnFull::Refuse),
        ] {
            let cfg = parse_text(&format!(
                "[audit]\noutput = \"log/a.jsonl\"\non_full = \"{mode}\"\nanchor = \"/var/lib/warden/head\"\n"
            ))
            .unwrap();
            let audit = cfg.audit.unwrap();
            assert_eq!(audit.on_full, want);
            assert_eq!(
                audit.anchor.as_deref(),
                Some(Path::new("/var/lib/warden/head"))
            );
        }
        let cfg = parse_text("[audit]\noutput = \"stdout\"\non_full = \"refuse\"\n").unwrap();
        let audit = cfg.audit.unwrap();
        assert_eq!((audit.on_full, audit.anchor), (OnFull::Refuse, None));
    }

    #[test]
    fn an_empty_file_denies_nothing_it_does_not_name() {
        let cfg = parse_text("").unwrap();
        assert!(cfg.audit.is_none());
        // Default deny with no rules: governed calls are refused.
        assert!(!cfg.policy.default_allow);
    }

    #[test]
    fn the_shipped_example_loads() {
        let text = include_str!("../../examples/warden.toml");
        let cfg = parse_text(text).unwrap();
        let summary = cfg.policy.summary();
        assert!(
            summary.starts_with("default deny; 5 allow and 2 deny rules"),
            "{summary}"
        );
        assert!(cfg.audit.is_some());
    }
}
