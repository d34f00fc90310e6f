//! Command line: `mcp-warden wrap [OPTIONS] -- COMMAND [ARGS...]` and the tools beside it.
//! The only place clap parses and anyhow is used; each command runs from its own file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod connections;
mod install;
mod token;
mod wrap;

#[derive(Debug, Parser)]
#[command(
    name = "mcp-warden",
    version,
    about = "Publish a local STDIO MCP server as a protected MCP Streamable HTTP endpoint",
    long_about = None,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve an MCP server that speaks STDIO over MCP Streamable HTTP (and HTTP+SSE), one
    /// server process per session.
    #[command(
        after_help = "Example:\n  mcp-warden wrap --no-auth -- npx -y @modelcontextprotocol/server-everything"
    )]
    Wrap(Box<wrap::WrapArgs>),
    /// Mint an access token from the development issuer's key file (see `wrap --dev`).
    #[command(
        after_help = "Example:\n  mcp-warden token --dev-key-file dev-key.pem --sub alice --scope \"mcp:tools\""
    )]
    Token(Box<token::TokenArgs>),
    /// Copy this (static) binary to DIR/mcp-warden: lets an init container inject mcp-warden
    /// into an unmodified server image through a shared volume, with no shell or cp.
    Install {
        /// Directory to copy the binary into (created if missing).
        dir: PathBuf,
    },
    /// Validate a config file (policy and audit sections) and exit: 0 when valid, 2 with
    /// FILE:LINE:COLUMN errors otherwise.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Users' upstream connections (`[[connection]]`): list them, revoke one.
    #[command(subcommand)]
    Connections(connections::ConnectionsCommand),
    /// Create an ES256 signing key for the sign-in server (--signing-key-file), mode 0600.
    Keygen {
        /// The key file to create (never overwritten).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an audit log: exit 0 when its chain is intact and complete; 1 naming the
    /// first modified, inserted or deleted record, or every gap (records dropped, a run not
    /// closed, a cut tail); 2 when it cannot be read.
    Verify {
        /// The audit log (JSON lines).
        file: PathBuf,
        /// The HMAC key file the log was written with, if any.
        #[arg(long)]
        hmac_key_file: Option<PathBuf>,
        /// The anchor file holding the log's head. Default: FILE.anchor, when it exists.
        #[arg(long, value_name = "PATH")]
        anchor: Option<PathBuf>,
        /// The log is still being written: its last run may be open.
        #[arg(long)]
        live: bool,
    },
}

/// Runs the command line. Errors are printed here; the return value is the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Wrap(args) => report(wrap::wrap(*args)),
        Command::Token(args) => report(token::token(&args)),
        Command::Install { dir } => report(install::install(&dir)),
        Command::Keygen { file } => report(install::keygen(&file)),
        Command::Connections(command) => report(connections::run(command)),
        Command::CheckConfig { file } => audit::check_config(&file),
        Command::Audit(AuditCommand::Verify {
            file,
            hmac_key_file,
            anchor,
            live,
        }) => audit::verify(&file, hmac_key_file.as_deref(), anchor.as_deref(), live),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain, for operators; never a secret (none is in any error message).
            eprintln!("mcp-warden: {e:#}");
            ExitCode::from(2)
        }
    }
}

pub(crate) fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn command_goes_after_the_double_dash() {
        let cli = Cli::try_parse_from([
            "mcp-warden",
            "wrap",
            "--no-auth",
            "--",
            "node",
            "--inspect",
            "s.js",
        ])
        .unwrap();
        let Command::Wrap(args) = cli.command else {
            panic!("wrap expected")
        };
        assert_eq!(
            args.options.command,
            vec![
                std::ffi::OsString::from("node"),
                "--inspect".into(),
                "s.js".into()
            ]
        );
        assert!(Cli::try_parse_from(["mcp-warden", "wrap", "--no-auth"]).is_err());
    }

    #[test]
    fn per_principal_session_limits_parse() {
        let parse = |extra: &[&str]| {
            let argv = ["mcp-warden", "wrap", "--dev"]
                .into_iter()
                .chain(extra.iter().copied())
                .chain(["--", "node"]);
            let Command::Wrap(args) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("wrap expected")
            };
            (
                args.options.max_sessions_per_principal,
                args.options.session_rate_per_principal.0,
            )
        };
        assert_eq!(
            parse(&[]),
            (
                None,
                Some(crate::session::SessionRate::parse("30/min").unwrap())
            )
        );
        assert_eq!(
            parse(&[
                "--max-sessions-per-principal",
                "3",
                "--session-rate-per-principal",
                "off"
            ]),
            (Some(3), None)
        );
        assert_eq!(
            parse(&["--session-rate-per-principal", "2/s"]).1,
            Some(crate::session::SessionRate::parse("2/s").unwrap())
        );
        assert!(
            Cli::try_parse_from([
                "mcp-warden",
                "wrap",
                "--dev",
                "--session-rate-per-principal",
                "lots",
                "--",
                "node"
            ])
            .is_err()
        );
    }

    #[test]
    fn an_mcp_json_entry_replaces_the_command() {
        let cli = Cli::try_parse_from([
            "mcp-warden",
            "wrap",
            "--from-mcp-json",
            "mcp.json",
            "--server",
            "files",
        ])
        .unwrap();
        let Command::Wrap(args) = cli.command else {
            panic!("wrap expected")
        };
        assert_eq!(args.options.server.as_deref(), Some("files"));
        assert!(args.options.command.is_empty());
        // One source of the command only, and the two flags go together.
        for argv in [
            &[
                "wrap",
                "--from-mcp-json",
                "m.json",
                "--server",
                "s",
                "--",
                "node",
            ][..],
            &["wrap", "--from-mcp-json", "m.json"],
            &["wrap", "--server", "s", "--", "node"],
        ] {
            let full = std::iter::once("mcp-warden").chain(argv.iter().copied());
            assert!(Cli::try_parse_from(full).is_err(), "{argv:?}");
        }
    }
}
