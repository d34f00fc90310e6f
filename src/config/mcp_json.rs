//! Import of one STDIO server entry from the `mcpServers` JSON that MCP clients use
//! (Claude Desktop/Code, Cursor, Windsurf; VS Code's `servers` too), for
//! `mcp-warden wrap --from-mcp-json FILE --server NAME`.
//!
//! ```json
//! {"mcpServers": {"files": {"command": "npx", "args": ["-y", "pkg"], "env": {"MODE": "ro"}}}}
//! ```
//!
//! `command` + `args` become the wrapped command, each `env` entry a `--env NAME=VALUE`.
//! Remote entries (`url`, `type: http|sse|…`) are refused: they already speak HTTP. Clients
//! expand `${VAR}` in these files and the spellings differ between clients, so the only form
//! accepted is `"NAME": "${NAME}"` (or `${env:NAME}`), which means "pass the sidecar's NAME
//! through" (`--env-pass NAME`); anything else with `${` is refused rather than guessed.
//! Pure: the caller reads the file and reports the warnings.

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::{Map, Value};

/// Keys of a STDIO entry that are imported; any other key is reported as ignored.
const KNOWN_KEYS: &[&str] = &["type", "command", "args", "env", "cwd"];

/// Substrings of variable names that usually hold credentials.
const SECRET_HINTS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "SESSION",
    "PRIVATE",
];

/// One server entry, as options of `wrap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// `env` entries with literal values (`--env NAME=VALUE`).
    pub env: Vec<(String, String)>,
    /// `env` entries of the form `"NAME": "${NAME}"` (`--env-pass NAME`).
    pub env_pass: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub warnings: Vec<Warning>,
}

/// Something the operator should know, that does not stop the import.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    /// A literal value whose name suggests a credential. The value is never repeated.
    #[error(
        "server {server:?} sets {var} in the file in plain text; secrets belong in a secret store or a mounted file, not in client configuration: \
         give mcp-warden the variable (e.g. from a Kubernetes Secret) and write \"{var}\": \"${{{var}}}\" in the entry (or use --env-pass {var})"
    )]
    LiteralSecret { server: String, var: String },
    #[error("server {server:?}: {key:?} is not used by mcp-warden and is ignored")]
    IgnoredKey { server: String, key: String },
}

/// Why the entry cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpJsonError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("no \"mcpServers\" (or \"servers\") object at the top level")]
    NoServers,
    #[error("no server named {name:?} in the file; {}", available_list(.available))]
    UnknownServer {
        name: String,
        available: Vec<String>,
    },
    #[error(
        "server {name:?} is a remote server ({how}); mcp-warden runs STDIO servers (\"command\" + \"args\"), clients reach a remote server directly"
    )]
    Remote { name: String, how: String },
    #[error(
        "server {name:?} has type {kind:?}; only STDIO entries (\"stdio\" or no type) can be wrapped"
    )]
    UnknownType { name: String, kind: String },
    #[error("server {name:?} has no \"command\"")]
    NoCommand { name: String },
    #[error("server {name:?}: {field} must be {expected}")]
    BadField {
        name: String,
        field: String,
        expected: &'static str,
    },
    #[error(
        "server {name:?}: {field} uses ${{…}} interpolation, which mcp-warden does not expand; \
         only \"NAME\": \"${{NAME}}\" in \"env\" (pass NAME through) is understood"
    )]
    Interpolation { name: String, field: String },
    #[error("server {name:?}: \"envFile\" is not supported; pass the variables with --env-pass")]
    EnvFile { name: String },
}

fn available_list(names: &[String]) -> String {
    if names.is_empty() {
        "the file lists no servers".to_owned()
    } else {
        format!("available: {}", names.join(", "))
    }
}

/// Imports the entry `server` from the JSON text of an `mcpServers` file.
pub fn import(text: &str, server: &str) -> Result<Imported, McpJsonError> {
    let root: Value = serde_json::from_str(text).map_err(|e| McpJsonError::Json(e.to_string()))?;
    let servers = ["mcpServers", "servers"]
        .iter()
        .find_map(|k| root.get(k)?.as_object())
        .ok_or(McpJsonError::NoServers)?;
    let entry = servers
        .get(server)
        .ok_or_else(|| McpJsonError::UnknownServer {
            name: server.to_owned(),
            available: servers.keys().cloned().collect(),
        })?;
    let name = server.to_owned();
    let entry = entry.as_object().ok_or_else(|| McpJsonError::BadField {
        name: name.clone(),
        field: "the entry".into(),
        expected: "an object",
    })?;
    check_kind(&name, entry)?;
    if entry.contains_key("envFile") {
        return Err(McpJsonError::EnvFile { name });
    }

    let command =
        string(&name, entry, "command")?.ok_or(McpJsonError::NoCommand { name: name.clone() })?;
    if command.is_empty() {
        return Err(McpJsonError::NoCommand { name });
    }
    no_interpolation(&name, "\"command\"", &command)?;
    let mut argv = vec![OsString::from(command)];
    match entry.get("args") {
        None | Some(Value::Null) => {}
        Some(Value::Array(args)) => {
            for (i, a) in args.iter().enumerate() {
                let a = a.as_str().ok_or_else(|| McpJsonError::BadField {
                    name: name.clone(),
                    field: format!("\"args\"[{i}]"),
                    expected: "a string",
                })?;
                no_interpolation(&name, &format!("\"args\"[{i}]"), a)?;
                argv.push(a.into());
            }
        }
        Some(_) => {
            return Err(McpJsonError::BadField {
                name,
                field: "\"args\"".into(),
                expected: "an array of strings",
            });
        }
    }

    let mut env = Vec::new();
    let mut env_pass = Vec::new();
    let mut warnings = Vec::new();
    match entry.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (var, value) in vars {
                let field = format!("\"env\".{var}");
                let value = value.as_str().ok_or_else(|| McpJsonError::BadField {
                    name: name.clone(),
                    field: field.clone(),
                    expected: "a string",
                })?;
                if is_passthrough(var, value) {
                    env_pass.push(var.clone());
                    continue;
                }
                no_interpolation(&name, &field, value)?;
                if looks_secret(var) && !value.is_empty() {
                    warnings.push(Warning::LiteralSecret {
                        server: name.clone(),
                        var: var.clone(),
                    });
                }
                env.push((var.clone(), value.to_owned()));
            }
        }
        Some(_) => {
            return Err(McpJsonError::BadField {
                name,
                field: "\"env\"".into(),
                expected: "an object of strings",
            });
        }
    }
    let cwd = string(&name, entry, "cwd")?;
    if let Some(cwd) = &cwd {
        no_interpolation(&name, "\"cwd\"", cwd)?;
    }
    for key in entry.keys() {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            warnings.push(Warning::IgnoredKey {
                server: name.clone(),
                key: key.clone(),
            });
        }
    }
    Ok(Imported {
        command: argv,
        env,
        env_pass,
        cwd: cwd.map(PathBuf::from),
        warnings,
    })
}

/// Refuses remote and unknown entry types.
fn check_kind(name: &str, entry: &Map<String, Value>) -> Result<(), McpJsonError> {
    let kind = entry.get("type").and_then(Value::as_str);
    match kind {
        None | Some("stdio") => {}
        Some(
            k @ ("http" | "sse" | "streamable-http" | "streamable_http" | "streamableHttp" | "ws"),
        ) => {
            return Err(McpJsonError::Remote {
                name: name.to_owned(),
                how: format!("type {k:?}"),
            });
        }
        Some(other) => {
            return Err(McpJsonError::UnknownType {
                name: name.to_owned(),
                kind: other.to_owned(),
            });
        }
    }
    if entry.contains_key("url") || entry.contains_key("serverUrl") {
        return Err(McpJsonError::Remote {
            name: name.to_owned(),
            how: "it has a \"url\"".into(),
        });
    }
    Ok(())
}

fn string(
    name: &str,
    entry: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, McpJsonError> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(McpJsonError::BadField {
            name: name.to_owned(),
            field: format!("{key:?}"),
            expected: "a string",
        }),
    }
}

fn no_interpolation(name: &str, field: &str, value: &str) -> Result<(), McpJsonError> {
    if value.contains("${") {
        return Err(McpJsonError::Interpolation {
            name: name.to_owned(),
            field: field.to_owned(),
        });
    }
    Ok(())
}

/// `"NAME": "${NAME}"` or `"NAME": "${env:NAME}"`.
fn is_passthrough(var: &str, value: &str) -> bool {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .is_some_and(|inner| inner.strip_prefix("env:").unwrap_or(inner) == var)
}

fn looks_secret(var: &str) -> bool {
    let upper = var.to_ascii_uppercase();
    SECRET_HINTS.iter().any(|h| upper.contains(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
      "mcpServers": {
        "files": {
          "command": "npx",
          "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"],
          "env": {"LOG_LEVEL": "debug", "GITHUB_TOKEN": "${GITHUB_TOKEN}", "HOME_DIR": "${env:HOME_DIR}"},
          "cwd": "/srv",
          "disabled": false
        },
        "bare": {"type": "stdio", "command": "/usr/bin/srv"},
        "remote": {"type": "http", "url": "https://mcp.example.com/mcp"},
        "legacy": {"url": "https://mcp.example.com/sse"},
        "secret": {"command": "srv", "env": {"API_KEY": "sk-live-123", "MODE": "x"}},
        "templated": {"command": "srv", "args": ["--token=${TOKEN}"]},
        "renamed": {"command": "srv", "env": {"TOKEN": "${OTHER}"}},
        "weird": {"type": "websocket2", "command": "srv"},
        "badargs": {"command": "srv", "args": "-v"},
        "nocmd": {"args": ["x"]},
        "envfile": {"command": "srv", "envFile": "${workspaceFolder}/.env"}
      }
    }"#;

    #[test]
    fn a_stdio_entry_becomes_command_env_and_cwd() {
        let i = import(FILE, "files").unwrap();
        assert_eq!(
            i.command,
            [
                "npx",
                "-y",
                "@modelcontextprotocol/server-filesystem",
                "/data"
            ]
            .map(OsString::from)
            .to_vec()
        );
        assert_eq!(i.env, vec![("LOG_LEVEL".into(), "debug".into())]);
        assert_eq!(i.env_pass, vec!["GITHUB_TOKEN", "HOME_DIR"]);
        assert_eq!(i.cwd, Some(PathBuf::from("/srv")));
        assert_eq!(
            i.warnings,
            vec![Warning::IgnoredKey {
                server: "files".into(),
                key: "disabled".into()
            }]
        );
        let bare = import(FILE, "bare").unwrap();
        assert_eq!(bare.command, vec![OsString::from("/usr/bin/srv")]);
        assert!(bare.env.is_empty() && bare.warnings.is_empty());
    }

    #[test]
    fn remote_entries_are_refused() {
        for (name, how) in [("remote", "type \"http\""), ("legacy", "it has a \"url\"")] {
            let e = import(FILE, name).unwrap_err();
            assert_eq!(
                e,
                McpJsonError::Remote {
                    name: name.into(),
                    how: how.into()
                }
            );
            assert!(e.to_string().contains("remote server"));
        }
        assert!(matches!(
            import(FILE, "weird"),
            Err(McpJsonError::UnknownType { .. })
        ));
    }

    #[test]
    fn an_unknown_name_lists_the_available_ones() {
        let e = import(FILE, "fles").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("\"fles\""), "{msg}");
        assert!(
            msg.contains("available: badargs, bare, envfile, files"),
            "{msg}"
        );
        let e = import(r#"{"mcpServers": {}}"#, "x").unwrap_err();
        assert!(e.to_string().contains("lists no servers"));
    }

    #[test]
    fn vs_code_servers_key_is_accepted_and_other_shapes_are_not() {
        let i = import(r#"{"servers": {"s": {"command": "srv"}}}"#, "s").unwrap();
        assert_eq!(i.command, vec![OsString::from("srv")]);
        assert_eq!(
            import(r#"{"mcp": {}}"#, "s").unwrap_err(),
            McpJsonError::NoServers
        );
        assert!(matches!(
            import("{not json", "s"),
            Err(McpJsonError::Json(_))
        ));
    }

    #[test]
    fn literal_secrets_are_imported_with_a_warning_that_never_shows_the_value() {
        let i = import(FILE, "secret").unwrap();
        assert!(i.env.contains(&("API_KEY".into(), "sk-live-123".into())));
        assert_eq!(i.warnings.len(), 1);
        let w = i.warnings[0].to_string();
        assert!(
            w.contains("API_KEY") && w.contains("--env-pass API_KEY"),
            "{w}"
        );
        assert!(!w.contains("sk-live-123"));
    }

    #[test]
    fn interpolation_other_than_pass_through_is_refused() {
        for name in ["templated", "renamed"] {
            assert!(
                matches!(import(FILE, name), Err(McpJsonError::Interpolation { .. })),
                "{name}"
            );
        }
        assert!(matches!(
            import(FILE, "envfile"),
            Err(McpJsonError::EnvFile { .. })
        ));
    }

    #[test]
    fn malformed_entries_say_which_field() {
        assert_eq!(
            import(FILE, "badargs").unwrap_err(),
            McpJsonError::BadField {
                name: "badargs".into(),
                field: "\"args\"".into(),
                expected: "an array of strings"
            }
        );
        assert_eq!(
            import(FILE, "nocmd").unwrap_err(),
            McpJsonError::NoCommand {
                name: "nocmd".into()
            }
        );
    }
}
