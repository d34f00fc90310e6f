//! Command line: `mcp-warden wrap [OPTIONS] -- COMMAND [ARGS...]`. The only place clap and
//! anyhow are used.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::app::App;
use crate::config::{ProcessEnv, WrapConfig, WrapOptions};
use crate::telemetry::{self, LogFormat};

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
    Wrap(Box<WrapArgs>),
}

#[derive(Debug, Args)]
struct WrapArgs {
    /// Address to listen on.
    #[arg(long, env = "MCP_WARDEN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Address of the admin listener (/healthz, /readyz, /metrics; no authentication). Must
    /// differ from --listen. Off by default.
    #[arg(long, env = "MCP_WARDEN_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,

    /// PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1). Reloaded when it changes.
    #[arg(long, env = "MCP_WARDEN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "MCP_WARDEN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// How often the certificate files are checked for changes.
    #[arg(long, env = "MCP_WARDEN_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    tls_reload_interval: Duration,

    /// Path of the Streamable HTTP endpoint.
    #[arg(long, env = "MCP_WARDEN_PATH", default_value = "/mcp")]
    path: String,

    /// Public URL of the MCP endpoint as clients see it (e.g. https://tools.example.com/mcp),
    /// when behind a proxy. Default: http://<listen><path>.
    #[arg(long, env = "MCP_WARDEN_PUBLIC_URL")]
    public_url: Option<String>,

    /// Browser origin allowed to call the endpoint (scheme://host[:port], or *). Repeatable;
    /// comma-separated in the environment. Requests with any other Origin get 403. Loopback
    /// origins are allowed when listening on loopback.
    #[arg(
        long = "allowed-origin",
        env = "MCP_WARDEN_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,

    /// Host name clients may use to reach a loopback listener, besides localhost, 127.0.0.1,
    /// [::1] and the public URL's host (repeatable). Other Host headers get 403.
    #[arg(
        long = "allowed-host",
        env = "MCP_WARDEN_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,

    /// Maximum number of concurrent sessions (each runs one server process); more get 503.
    #[arg(long, env = "MCP_WARDEN_MAX_SESSIONS", default_value_t = 64)]
    max_sessions: usize,

    /// End a session (and stop its server) after this long without requests or open streams.
    #[arg(long, env = "MCP_WARDEN_SESSION_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    session_idle_timeout: Duration,

    /// Largest JSON-RPC message accepted from a client (413 beyond) or from the server
    /// (dropped beyond). Accepts suffixes: KiB, MiB.
    #[arg(long, env = "MCP_WARDEN_MAX_MESSAGE_BYTES", default_value = "4MiB", value_parser = parse_bytes)]
    max_message_bytes: usize,

    /// Cancel a request at the server and answer with an error after this long.
    #[arg(long, env = "MCP_WARDEN_REQUEST_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    request_timeout: Duration,

    /// Time a server's process tree gets to exit after SIGTERM before SIGKILL.
    #[arg(long, env = "MCP_WARDEN_KILL_GRACE", default_value = "5s", value_parser = parse_duration)]
    kill_grace: Duration,

    /// On SIGTERM/SIGINT, time requests in flight get to finish before servers are stopped.
    #[arg(long, env = "MCP_WARDEN_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,

    /// Interval of keep-alive comments on idle SSE streams.
    #[arg(long, env = "MCP_WARDEN_SSE_KEEPALIVE", default_value = "15s", value_parser = parse_duration)]
    sse_keepalive: Duration,

    /// Do not serve the legacy HTTP+SSE transport (protocol 2024-11-05).
    #[arg(long, env = "MCP_WARDEN_NO_LEGACY_SSE")]
    no_legacy_sse: bool,

    /// Path of the legacy SSE endpoint.
    #[arg(long, env = "MCP_WARDEN_SSE_PATH", default_value = "/sse")]
    sse_path: String,

    /// Path of the legacy message endpoint.
    #[arg(long, env = "MCP_WARDEN_MESSAGE_PATH", default_value = "/message")]
    message_path: String,

    /// Prefix of session ids (<replica-id>.<random>) so a load balancer can route follow-ups
    /// to this replica. a-z, 0-9 and '-'.
    #[arg(long, env = "MCP_WARDEN_REPLICA_ID")]
    replica_id: Option<String>,

    /// Serve without authentication. Only allowed on a loopback address.
    #[arg(long, env = "MCP_WARDEN_NO_AUTH")]
    no_auth: bool,

    /// Pass this variable of the sidecar's environment to the server (repeatable). The server
    /// otherwise gets only PATH, HOME, LANG, LC_ALL and TZ.
    #[arg(
        long = "env-pass",
        env = "MCP_WARDEN_ENV_PASS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    env_pass: Vec<String>,

    /// Set a (non-secret) variable in the server's environment (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,

    /// Working directory of the server.
    #[arg(long, env = "MCP_WARDEN_CWD")]
    cwd: Option<PathBuf>,

    /// Log format: plain or json.
    #[arg(long, env = "MCP_WARDEN_LOG_FORMAT", default_value = "plain")]
    log_format: LogFormat,

    /// Log filter (tracing directives, e.g. info or mcp_warden=debug).
    #[arg(long, env = "MCP_WARDEN_LOG", default_value = "info")]
    log_level: String,

    /// Runtime worker threads. Default: the CPUs this process may run on.
    #[arg(long, env = "MCP_WARDEN_WORKER_THREADS")]
    worker_threads: Option<usize>,

    /// The MCP server to run for each session, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 5m, 1h)"))
}

fn parse_bytes(s: &str) -> Result<usize, String> {
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

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

/// Runs the command line. Errors are printed here; the return value is the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Wrap(args) => match wrap(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // The chain, for operators; never a secret (none is in any error message).
                eprintln!("mcp-warden: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn wrap(args: WrapArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, &args.log_level).map_err(anyhow::Error::msg)?;
    let options = WrapOptions {
        listen: args.listen,
        admin_listen: args.admin_listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_reload_interval: args.tls_reload_interval,
        path: args.path,
        public_url: args.public_url,
        allowed_origins: args.allowed_origins,
        allowed_hosts: args.allowed_hosts,
        max_sessions: args.max_sessions,
        session_idle_timeout: args.session_idle_timeout,
        max_message_bytes: args.max_message_bytes,
        request_timeout: args.request_timeout,
        kill_grace: args.kill_grace,
        drain_timeout: args.drain_timeout,
        sse_keepalive: args.sse_keepalive,
        legacy_sse: !args.no_legacy_sse,
        sse_path: args.sse_path,
        message_path: args.message_path,
        replica_id: args.replica_id,
        no_auth: args.no_auth,
        env_pass: args.env_pass,
        env: args.env,
        cwd: args.cwd,
        command: args.command,
    };
    let config = WrapConfig::from_options(options, &ProcessEnv, PathBuf::from("/proc/self/exe"))?;
    crate::sandbox::harden_sidecar().context("cannot harden the sidecar process")?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
                let local = listener.local_addr()?;
        let admin = match config.admin_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (admin)"))?,
            ),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
        let shutdown = crate::signal::shutdown().context("cannot install signal handlers")?;
        let public_url = config.public_url.clone();
        let app = App::build(config).context("cannot start")?;
        if let Some(a) = admin_addr {
            tracing::info!(admin = %a, "admin endpoints (/healthz, /readyz, /metrics) are serving");
        }
        tracing::info!(listen = %local, url = %public_url, version = env!("CARGO_PKG_VERSION"), "mcp-warden is serving");
        app.serve(listener, admin, async move {
            let signal = shutdown.await;
            tracing::info!(signal, "shutting down");
        })
        .await;
        tracing::info!("stopped");
        Ok(())
    })
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
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("4 parsecs").is_err());
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
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
        let Command::Wrap(args) = cli.command;
        assert_eq!(
            args.command,
            vec![OsString::from("node"), "--inspect".into(), "s.js".into()]
        );
        assert!(Cli::try_parse_from(["mcp-warden", "wrap", "--no-auth"]).is_err());
    }
}
