//! `mcp-warden token`: mints an access token with the development issuer's key file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::signer::{LocalIssuer, TokenRequest};
use crate::config::{self, values::parse_duration};

/// `mcp-warden token`.
#[derive(Debug, Args)]
pub(super) struct TokenArgs {
    /// The development issuer's key file (as given to `wrap --dev --dev-key-file`).
    #[arg(long, env = "MCP_WARDEN_DEV_KEY_FILE", value_name = "PATH")]
    dev_key_file: PathBuf,

    /// Subject of the token.
    #[arg(long, default_value = "dev")]
    sub: String,

    /// Scopes granted (space-separated; repeatable).
    #[arg(long = "scope", value_name = "SCOPES")]
    scopes: Vec<String>,

    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,

    /// `client_id` claim of the token.
    #[arg(long, default_value = "mcp-warden-token")]
    client_id: String,

    /// `aud` of the token: the resource it is for. Default: the Streamable HTTP endpoint's
    /// URL; a legacy HTTP+SSE client needs the /sse URL.
    #[arg(long, value_name = "URL")]
    audience: Option<String>,

    /// The `wrap` instance's --listen (the token's issuer and audience derive from it).
    #[arg(long, env = "MCP_WARDEN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// The `wrap` instance's --path.
    #[arg(long, env = "MCP_WARDEN_PATH", default_value = "/mcp")]
    path: String,

    /// The `wrap` instance's --public-url.
    #[arg(long, env = "MCP_WARDEN_PUBLIC_URL")]
    public_url: Option<String>,

    /// The `wrap` instance's --tls-cert (only whether it is set matters: https URLs).
    #[arg(long, env = "MCP_WARDEN_TLS_CERT", value_name = "PATH")]
    tls_cert: Option<PathBuf>,
}

pub(super) fn token(args: &TokenArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let (url, prefix) = config::endpoint_url(
        args.listen,
        &args.path,
        args.public_url.as_deref(),
        args.tls_cert.is_some(),
    )?;
    let issuer = config::dev_issuer_id(&url, &prefix);
    let dev = LocalIssuer::load(&issuer, &args.dev_key_file)?;
    let scopes: Vec<String> = args
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = scopes
        .iter()
        .find(|s| !crate::auth::scopes::is_scope_token(s))
    {
        anyhow::bail!("{bad:?} is not a valid scope");
    }
    let audience = match &args.audience {
        Some(a) => crate::auth::resource_metadata::canonical_audience(a).into_owned(),
        None => crate::auth::resource_metadata::canonical_resource(&url),
    };
    let token = dev.mint(
        &TokenRequest {
            subject: &args.sub,
            audience: &audience,
            scopes: &scopes,
            client_id: &args.client_id,
            lifetime: args.ttl,
        },
        std::time::SystemTime::now(),
    )?;
    writeln!(std::io::stdout().lock(), "{token}")?;
    Ok(())
}
