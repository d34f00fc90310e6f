//! `mcp-warden wrap`: options → configuration (built once) → hardened sidecar → runtime →
//! listeners → [`App`] served until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::app::App;
use crate::auth::signer::{LocalIssuer, TokenRequest};
use crate::config::{ProcessEnv, WrapConfig, WrapOptions};
use crate::telemetry::{self, LogFormat};

/// `wrap`'s options, and the few that only concern this process (logs, threads, where
/// to report the bound ports).
#[derive(Debug, Args)]
pub(super) struct WrapArgs {
    #[command(flatten)]
    pub(super) options: WrapOptions,

    /// Once serving, write the bound addresses to this file, one a line: `listen=ADDR`, and
    /// `admin=ADDR` with --admin-listen. How a supervisor (or a test) learns the port of
    /// `--listen …:0`. Replaced whole, never seen half-written.
    #[arg(long, value_name = "FILE", help_heading = "Logs and process")]
    port_file: Option<PathBuf>,

    /// Log format: plain or json.
    #[arg(
        long,
        env = "MCP_WARDEN_LOG_FORMAT",
        default_value = "plain",
        help_heading = "Logs and process"
    )]
    log_format: LogFormat,

    /// Log filter (tracing directives, e.g. info or mcp_warden=debug).
    #[arg(
        long,
        env = "MCP_WARDEN_LOG",
        default_value = "info",
        help_heading = "Logs and process"
    )]
    log_level: String,

    /// Runtime worker threads. Default: the CPUs this process may run on.
    #[arg(
        long,
        env = "MCP_WARDEN_WORKER_THREADS",
        help_heading = "Logs and process"
    )]
    worker_threads: Option<usize>,

    /// Export traces and metrics by OTLP to this collector: its base URL, as
    /// OTEL_EXPORTER_OTLP_ENDPOINT (for HTTP, /v1/traces and /v1/metrics are appended).
    /// Off by default. OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
    /// OTEL_RESOURCE_ATTRIBUTES and OTEL_METRIC_EXPORT_INTERVAL are honoured.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL",
        help_heading = "Logs and process"
    )]
    otlp_endpoint: Option<url::Url>,

    /// OTLP transport: grpc or http/protobuf.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        default_value = "http/protobuf",
        help_heading = "Logs and process"
    )]
    otlp_protocol: crate::telemetry::otel::OtlpProtocol,

    /// Spans waiting for export at most; beyond, new spans are dropped (never waited for).
    #[arg(
        long,
        env = "MCP_WARDEN_OTLP_QUEUE",
        default_value_t = crate::telemetry::otel::DEFAULT_QUEUE,
        help_heading = "Logs and process"
    )]
    otlp_queue: usize,
}

pub(super) fn wrap(args: WrapArgs) -> anyhow::Result<()> {
    let WrapArgs {
        mut options,
        port_file,
        log_format,
        log_level,
        worker_threads,
        otlp_endpoint,
        otlp_protocol,
        otlp_queue,
    } = args;
    telemetry::init(log_format, &log_level).map_err(anyhow::Error::msg)?;
    let default_work_root = options.sandbox.work_root.is_none();
    if default_work_root {
        let removed = crate::child::sweep_stale_work_roots(&std::env::temp_dir());
        if removed > 0 {
            tracing::info!(
                removed,
                "removed work dirs of sidecars that did not exit cleanly"
            );
        }
    }
    // `--env` values are not secret, but nothing forces them to stay in the process list.
    let argv_values: Vec<String> = options.sandbox.env.iter().map(|(_, v)| v.clone()).collect();
    let dev_token_ttl = options.auth.dev_token_ttl;
    // With port 0, URLs (and with them resource identifiers) name the port we get: bind
    // before the configuration is built, so it is built once, with the real address.
    let early_listener = if options.listen.port() == 0 {
        let listener = std::net::TcpListener::bind(options.listen)
            .with_context(|| format!("cannot listen on {}", options.listen))?;
        options.listen = listener.local_addr()?;
        Some(listener)
    } else {
        None
    };
    let config = WrapConfig::from_options(options, &ProcessEnv, PathBuf::from("/proc/self/exe"))?;
    let sidecar = crate::sandbox::harden_sidecar(&argv_values)
        .context("cannot harden the sidecar process")?;
    let _sandbox_status =
        crate::child::check_sandbox(&config.sessions.child, sidecar, config.own_files.clone())?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let work_root = config.sessions.child.work_root.clone();
    // OTEL_SDK_DISABLED=true turns export off whatever else is set, as in every SDK.
    let otlp_disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let otlp = match otlp_endpoint.filter(|_| !otlp_disabled) {
        Some(endpoint) => {
            if !matches!(endpoint.scheme(), "http" | "https") {
                anyhow::bail!("--otlp-endpoint must be an http(s) URL");
            }
            if endpoint.scheme() == "https"
                && otlp_protocol == crate::telemetry::otel::OtlpProtocol::Grpc
            {
                anyhow::bail!(
                    "--otlp-endpoint https://… needs --otlp-protocol http/protobuf: OTLP over gRPC is plaintext here (send it to a collector beside the sidecar)"
                );
            }
            // The replica id (the pod or host name by default).
            let instance = config
                .sessions
                .replica_id
                .clone()
                .unwrap_or_else(|| format!("mcp-warden-{}", std::process::id()));
            let ca = config.auth.as_ref().and_then(|a| a.extra_ca_pem.clone());
            Some((
                crate::telemetry::otel::OtlpSettings {
                    endpoint,
                    protocol: otlp_protocol,
                    instance,
                    queue: otlp_queue,
                },
                ca,
            ))
        }
        None => None,
    };
    let served = runtime.block_on(async move {
        if let Some((settings, ca)) = &otlp {
            let tls = crate::auth::fetch::client_tls_config(ca.as_deref())
                .map_err(anyhow::Error::msg)?;
            crate::telemetry::otel::init(settings, tls)?;
            // Credentials in the URL stay out of the log.
            let mut shown = settings.endpoint.clone();
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
            shown.set_query(None);
            tracing::info!(endpoint = %shown, protocol = ?settings.protocol, "exporting traces and metrics by OTLP");
        }
        let listener = match early_listener {
            Some(l) => {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)?
            }
            None => tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?,
        };
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
        let required_scopes = config
            .auth
            .as_ref()
            .map(|a| a.required_scopes.clone())
            .unwrap_or_default();
        // "(none)" cannot be a replica id, so it is unambiguous in the logs.
        let replica = config.sessions.replica_id.clone().unwrap_or("(none)".into());
        // BuildError's message already spells out its causes: no chain to print after it.
        let app = App::build(config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot start: {e}"))?;
        if let Some(a) = admin_addr {
            if app.activity_page() {
                tracing::info!(admin = %a, "admin endpoints (/healthz, /readyz, /metrics, the activity page at /ui) are serving");
            } else {
                tracing::info!(admin = %a, "admin endpoints (/healthz, /readyz, /metrics) are serving");
            }
        }
        if let Some(dev) = app.auth().dev_issuer() {
            dev_banner(dev, &public_url, &required_scopes, dev_token_ttl)?;
        }
        if let Some(path) = &port_file {
            write_port_file(path, local, admin_addr)
                .with_context(|| format!("cannot write --port-file {}", path.display()))?;
        }
        tracing::info!(listen = %local, url = %public_url, replica = %replica, version = env!("CARGO_PKG_VERSION"), "mcp-warden is serving");
        app.serve(listener, admin, async move {
            let signal = shutdown.await;
            tracing::info!(signal, "shutting down");
        })
        .await;
        // What is still queued goes out before the process ends, if the collector takes it
        // soon: an unreachable collector does not hold the exit up.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::task::spawn_blocking(crate::telemetry::otel::shutdown),
        )
        .await;
        tracing::info!("stopped");
        Ok(())
    });
    // Every session's dir is gone with its server; the root is ours only when defaulted.
    if default_work_root {
        let _ = std::fs::remove_dir_all(&work_root);
    }
    served
}

fn write_port_file(
    path: &std::path::Path,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
) -> std::io::Result<()> {
    let mut text = format!("listen={listen}\n");
    if let Some(admin) = admin {
        text.push_str(&format!("admin={admin}\n"));
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

/// Prints (stdout, not the logs) a token of the development issuer and a client
/// configuration carrying it.
fn dev_banner(
    dev: &LocalIssuer,
    url: &url::Url,
    scopes: &[String],
    ttl: Duration,
) -> anyhow::Result<()> {
    use std::io::Write;
    let audience = crate::auth::resource_metadata::canonical_resource(url);
    let token = dev.mint(
        &TokenRequest {
            subject: "dev",
            audience: &audience,
            scopes,
            client_id: "mcp-warden-dev",
            lifetime: ttl,
        },
        std::time::SystemTime::now(),
    )?;
    let client = serde_json::json!({
        "mcpServers": {
            "mcp-warden": {
                "type": "http",
                "url": url.as_str(),
                "headers": { "Authorization": format!("Bearer {token}") },
            }
        }
    });
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Development issuer {} (not for production). Bearer token for {audience}, subject \"dev\", valid {}:\n\n{token}\n\nClient configuration:\n\n{}\n\nMore tokens: mcp-warden token --dev-key-file FILE --sub NAME --scope \"SCOPES\" (with --dev-key-file here too)\n",
        dev.issuer(),
        humantime::format_duration(ttl),
        serde_json::to_string_pretty(&client)?,
    )?;
    out.flush()?;
    Ok(())
}
