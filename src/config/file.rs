//! The config file (`--config warden.toml`): TOML, unknown keys refused, every value checked
//! when it loads, errors as `FILE:LINE:COLUMN: what is wrong`.
//!
//! Sections: `[policy]`, `[[rule]]`, `[[argument]]`, `[[redact]]`, `[[mark]]`,
//! `[[rate_limit]]` (see [`crate::policy::config`]), `[audit]` and `[[connection]]` (users'
//! upstream connections, see [`crate::connections`]). The annotated reference is
//! `examples/warden.toml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::audit::{AuditConfig, OnFull, Output};
use crate::connections::{ConnectionConfig, Provider};
use crate::policy::config::{
    ArgumentSpec, MarkSpec, PolicyOptions, RateLimitSpec, RedactSpec, RuleSpec, line_col,
};
use crate::policy::{self, Policy, PolicySpec};
use crate::secret::Secret;

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
    #[serde(default)]
    connection: Vec<ConnectionSpec>,
}

/// `[[connection]]`: one upstream provider users connect their own accounts at.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionSpec {
    name: Spanned<String>,
    /// `github`; or leave it out and give `issuer`, or the endpoints.
    provider: Option<Spanned<String>>,
    issuer: Option<Spanned<String>>,
    authorization_endpoint: Option<Spanned<String>>,
    token_endpoint: Option<Spanned<String>>,
    revocation_endpoint: Option<Spanned<String>>,
    client_id: Spanned<String>,
    client_secret_file: Option<Spanned<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    /// More parameters of the authorization request (`access_type = "offline"` at Google).
    #[serde(default)]
    authorization_params: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    env: Spanned<String>,
    file: Option<Spanned<String>>,
    #[serde(default)]
    required: bool,
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
    pub connections: Vec<ConnectionConfig>,
    /// The files it names that no server may read (the audit log and its key, connections'
    /// client secrets), each with the setting that names it.
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
    let mut connections: Vec<ConnectionConfig> = Vec::new();
    for c in file.connection {
        if let Some(secret) = &c.client_secret_file {
            files.push((
                format!("[[connection]] {} client_secret_file", c.name.get_ref()),
                resolve_in(base, secret.get_ref()),
            ));
        }
        let compiled = connection_config(c, text, path, base, read)?;
        if let Some(file) = &compiled.file
            && connections.iter().any(|o| o.file.as_ref() == Some(file))
        {
            return Err(FileError(format!(
                "{}: [[connection]] {:?}: another connection writes the file {file:?}",
                path.display(),
                compiled.name
            )));
        }
        if connections.iter().any(|o| o.name == compiled.name) {
            return Err(FileError(format!(
                "{}: [[connection]] {:?} is given twice",
                path.display(),
                compiled.name
            )));
        }
        connections.push(compiled);
    }
    Ok(FileConfig {
        policy: Arc::new(policy),
        audit,
        connections,
        files,
    })
}

fn resolve_in(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() { p } else { base.join(p) }
}

/// Whether a provider endpoint may be used: https, or http to a loopback address (a
/// provider on the same machine).
fn endpoint_ok(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" => u.host().is_some(),
        Ok(u) if u.scheme() == "http" => match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

fn connection_config(
    c: ConnectionSpec,
    text: &str,
    path: &Path,
    base: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<ConnectionConfig, FileError> {
    let name = c.name.get_ref().clone();
    let at = |span: std::ops::Range<usize>, message: &str| {
        FileError::at(
            path,
            text,
            Some(span),
            &format!("[[connection]] {name}: {message}"),
        )
    };
    if !crate::connections::valid_name(&name) {
        return Err(at(
            c.name.span(),
            "name: 1 to 32 of a-z, 0-9, - and _ (it appears in URLs and commands)",
        ));
    }
    let endpoint = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<String>, FileError> {
        match v {
            None => Ok(None),
            // As written: an issuer identifier is compared exactly (RFC 8414 §3.3).
            Some(u) if endpoint_ok(u.get_ref()) => Ok(Some(u.get_ref().clone())),
            Some(u) => Err(at(
                u.span(),
                &format!("{key}: an https URL (http only to this machine)"),
            )),
        }
    };
    let issuer = endpoint(&c.issuer, "issuer")?;
    let authorization = endpoint(&c.authorization_endpoint, "authorization_endpoint")?;
    let token = endpoint(&c.token_endpoint, "token_endpoint")?;
    let revocation = endpoint(&c.revocation_endpoint, "revocation_endpoint")?;
    let provider = match (&c.provider, issuer, authorization, token) {
        (Some(p), None, None, None) if p.get_ref() == "github" => Provider::GitHub,
        (Some(p), ..) if p.get_ref() != "github" => {
            return Err(at(
                p.span(),
                "provider: `github`, or leave it out and give issuer or the endpoints",
            ));
        }
        (None, Some(issuer), None, None) => Provider::Issuer(issuer),
        (None, None, Some(authorization), Some(token)) => Provider::Endpoints {
            authorization,
            token,
            revocation: revocation.clone(),
        },
        _ => {
            return Err(at(
                c.name.span(),
                "give exactly one of provider = \"github\", issuer, or authorization_endpoint with token_endpoint",
            ));
        }
    };
    if revocation.is_some() && !matches!(provider, Provider::Endpoints { .. }) {
        return Err(at(
            c.name.span(),
            "revocation_endpoint goes with the endpoints (an issuer's is discovered)",
        ));
    }
    if c.client_id.get_ref().trim().is_empty() {
        return Err(at(c.client_id.span(), "client_id is empty"));
    }
    let client_secret = match &c.client_secret_file {
        None => {
            return Err(at(
                c.name.span(),
                "client_secret_file is required (the client secret the provider issued)",
            ));
        }
        Some(f) => {
            let bytes = read(&resolve_in(base, f.get_ref()))
                .map_err(|e| at(f.span(), &format!("client_secret_file: cannot read: {e}")))?;
            let trimmed = bytes.trim_ascii();
            if trimmed.is_empty() {
                return Err(at(f.span(), "client_secret_file is empty"));
            }
            Secret::new(trimmed)
        }
    };
    if let Some(s) = c.scopes.iter().find(|s| {
        s.is_empty()
            || !s
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    }) {
        return Err(at(
            c.name.span(),
            &format!("scope {s:?} is not a valid OAuth scope"),
        ));
    }
    let mut authorization_params = Vec::new();
    if let Some(params) = &c.authorization_params {
        for (k, v) in params.get_ref() {
            let reserved = [
                "response_type",
                "client_id",
                "redirect_uri",
                "state",
                "code_challenge",
                "code_challenge_method",
            ];
            if reserved.contains(&k.as_str()) || (k == "scope" && !c.scopes.is_empty()) {
                return Err(at(
                    params.span(),
                    &format!(
                        "authorization_params: {k} is set by mcp-warden (scopes: give them in scopes)"
                    ),
                ));
            }
            authorization_params.push((k.clone(), v.clone()));
        }
    }
    let env = c.env.get_ref().clone();
    if env.is_empty()
        || env.as_bytes()[0].is_ascii_digit()
        || !env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(at(c.env.span(), "env: a variable name (A-Z, a-z, 0-9, _)"));
    }
    let file = match &c.file {
        None => None,
        Some(f) => {
            let name = f.get_ref();
            if name.is_empty()
                || name.len() > 128
                || name.starts_with('.')
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            {
                return Err(at(
                    f.span(),
                    "file: a plain file name in the session's work dir (no directories, not hidden)",
                ));
            }
            Some(name.clone())
        }
    };
    Ok(ConnectionConfig {
        name,
        provider,
        client_id: c.client_id.get_ref().trim().to_owned(),
        client_secret,
        scopes: c.scopes,
        authorization_params,
        env,
        file,
        required: c.required,
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

    #[test]
    fn connections_load_with_their_secret_and_name_the_secret_file() {
        let cfg = parse_text(
            r#"
[[connection]]
name = "github"
provider = "github"
client_id = "Iv1.abc"
client_secret_file = "github/key"
scopes = ["repo", "read:org"]
env = "GITHUB_PERSONAL_ACCESS_TOKEN"
required = true

[[connection]]
name = "corp"
issuer = "https://login.corp.example/"
client_id = "warden"
client_secret_file = "corp/key"
env = "CORP_TOKEN"
file = "corp-token.json"

[[connection]]
name = "local"
authorization_params = { access_type = "offline", prompt = "consent" }
authorization_endpoint = "http://127.0.0.1:9000/auth"
token_endpoint = "http://127.0.0.1:9000/token"
revocation_endpoint = "http://127.0.0.1:9000/revoke"
client_id = "x"
client_secret_file = "local/key"
env = "LOCAL_TOKEN"
"#,
        )
        .unwrap();
        let c = &cfg.connections;
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].provider, Provider::GitHub);
        assert_eq!(c[0].client_secret.expose(), b"0123456789abcdef0123");
        assert!(c[0].required && !c[1].required);
        assert_eq!(
            c[1].provider,
            Provider::Issuer("https://login.corp.example/".into())
        );
        assert_eq!(c[1].file.as_deref(), Some("corp-token.json"));
        assert!(matches!(
            &c[2].provider,
            Provider::Endpoints {
                revocation: Some(_),
                ..
            }
        ));
        assert!(
            cfg.files.iter().any(
                |(what, p)| what.contains("github") && p == Path::new("/etc/warden/github/key")
            ),
            "{:?}",
            cfg.files
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
    }

    #[test]
    fn each_connection_mistake_is_named_where_it_is() {
        let base = "client_id = \"x\"\nenv = \"T\"\n";
        let secret = "\nclient_secret_file = \"s/key\"";
        for (entry, wanted) in [
            (
                "name = \"GitHub\"\nprovider = \"github\"",
                "w.toml:3:8: [[connection]] GitHub: name",
            ),
            ("name = \"a\"\nprovider = \"gitlab\"", "provider: `github`"),
            ("name = \"a\"", "give exactly one of"),
            (
                "name = \"a\"\nprovider = \"github\"\nissuer = \"https://i.example\"",
                "give exactly one of",
            ),
            (
                "name = \"a\"\nissuer = \"http://i.example\"",
                "issuer: an https URL",
            ),
            (
                "name = \"a\"\nauthorization_endpoint = \"https://a.example/a\"",
                "give exactly one of",
            ),
            (
                "name = \"a\"\nprovider = \"github\"\nclient_secret_file = \"nope\"",
                "client_secret_file: cannot read",
            ),
            (
                "name = \"a\"\nprovider = \"github\"\nfile = \"../x\"",
                "file: a plain file name",
            ),
            (
                "name = \"a\"\nprovider = \"github\"\nscopes = [\"a b\"]",
                "not a valid OAuth scope",
            ),
        ] {
            let secret = if entry.contains("client_secret_file") {
                ""
            } else {
                secret
            };
            let text = format!("\n[[connection]]\n{entry}{secret}\n{base}");
            let e = parse_text(&text).err().unwrap_or_default();
            assert!(e.contains(wanted), "{entry}: {e}");
        }
        let bad_env = "\n[[connection]]\nname = \"a\"\nprovider = \"github\"\nclient_id = \"x\"\nclient_secret_file = \"s/key\"\nenv = \"1X\"\n";
        let no_secret = "\n[[connection]]\nname = \"a\"\nprovider = \"github\"\nclient_id = \"x\"\nenv = \"X\"\n";
        assert!(
            parse_text(no_secret)
                .unwrap_err()
                .contains("client_secret_file is required")
        );
        assert!(
            parse_text(bad_env)
                .unwrap_err()
                .contains("env: a variable name")
        );
        let twice = "[[connection]]\nname = \"a\"\nprovider = \"github\"\nclient_id = \"x\"\nclient_secret_file = \"s/key\"\nenv = \"T\"\n";
        assert!(
            parse_text(&format!("{twice}{twice}"))
                .unwrap_err()
                .contains("given twice")
        );
    }
}
