//! The sign-in server's flags (`wrap --login-issuer …`), and `mcp-warden keygen`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::{parse_bytes, parse_duration, secret_file};
use crate::auth::Secret;
use crate::config::login::{LoginOptions, LoginProvider};

/// Let MCP clients sign in: the built-in authorization server, federating to your identity
/// provider (or, with --dev, a development login page).
#[derive(Debug, Args)]
#[command(
    next_help_heading = "Sign-in server (MCP clients sign in through your identity provider)"
)]
pub(super) struct LoginArgs {
    /// Sign users in at this OpenID Connect provider (its issuer identifier), and be the
    /// authorization server MCP clients use. Register <public origin and prefix>/oauth/callback
    /// as the redirect URI there.
    #[arg(long, env = "MCP_WARDEN_LOGIN_ISSUER", value_name = "URL")]
    pub(super) login_issuer: Option<String>,

    /// The kind of provider: `oidc` (any OpenID Connect provider, --login-issuer) or
    /// `github` (GitHub's OAuth and user API; GitHub Enterprise: --github-url). Register
    /// <public origin and prefix>/oauth/callback as the callback URL there.
    #[arg(
        long,
        env = "MCP_WARDEN_LOGIN_PROVIDER",
        value_name = "KIND",
        value_parser = ["oidc", "github"],
        default_value = "oidc"
    )]
    login_provider: String,

    /// With --login-provider github: where users sign in (a GitHub Enterprise Server's
    /// URL, e.g. https://github.example.com).
    #[arg(
        long,
        env = "MCP_WARDEN_GITHUB_URL",
        value_name = "URL",
        default_value = "https://github.com"
    )]
    github_url: String,

    /// With --login-provider github: its REST API. Default: https://api.github.com for
    /// github.com, <--github-url>/api/v3 for GitHub Enterprise Server.
    #[arg(long, env = "MCP_WARDEN_GITHUB_API_URL", value_name = "URL")]
    github_api_url: Option<String>,

    /// Our client id at the provider.
    #[arg(long, env = "MCP_WARDEN_LOGIN_CLIENT_ID", value_name = "ID")]
    login_client_id: Option<String>,

    /// File holding our client secret at the provider (or set
    /// MCP_WARDEN_LOGIN_CLIENT_SECRET).
    #[arg(long, env = "MCP_WARDEN_LOGIN_CLIENT_SECRET_FILE", value_name = "PATH")]
    pub(super) login_client_secret_file: Option<PathBuf>,

    /// Scopes asked of the provider besides `openid email profile` (e.g. groups).
    #[arg(
        long = "login-scope",
        env = "MCP_WARDEN_LOGIN_SCOPES",
        value_delimiter = ',',
        value_name = "SCOPE"
    )]
    login_scopes: Vec<String>,

    /// The provider's claim that lists the user's groups (Entra ID: groups or roles).
    #[arg(
        long,
        env = "MCP_WARDEN_LOGIN_GROUPS_CLAIM",
        default_value = "groups",
        value_name = "NAME"
    )]
    login_groups_claim: String,

    /// Users with this verified email address may sign in (repeatable).
    #[arg(
        long = "allow-email",
        env = "MCP_WARDEN_ALLOW_EMAILS",
        value_delimiter = ',',
        value_name = "EMAIL"
    )]
    allow_emails: Vec<String>,

    /// Users with a verified email address at this domain may sign in (repeatable; exact
    /// domain, not subdomains).
    #[arg(
        long = "allow-email-domain",
        env = "MCP_WARDEN_ALLOW_EMAIL_DOMAINS",
        value_delimiter = ',',
        value_name = "DOMAIN"
    )]
    allow_email_domains: Vec<String>,

    /// Members of this group (as the provider names it) may sign in (repeatable).
    #[arg(
        long = "allow-group",
        env = "MCP_WARDEN_ALLOW_GROUPS",
        value_delimiter = ',',
        value_name = "GROUP"
    )]
    allow_groups: Vec<String>,

    /// Anyone the provider signs in may sign in here (with no --allow-* rule, sign-in is
    /// refused at startup).
    #[arg(long, env = "MCP_WARDEN_ALLOW_ANY_USER")]
    allow_any_user: bool,

    /// ES256 key (PKCS#8 PEM, mode 0600) our access tokens are signed with; shared by
    /// replicas. Default: <state-dir>/signing-key.pem, created when missing. Make one with
    /// `mcp-warden keygen FILE`.
    #[arg(long, env = "MCP_WARDEN_SIGNING_KEY_FILE", value_name = "PATH")]
    pub(super) signing_key_file: Option<PathBuf>,

    /// A key whose tokens are still accepted and which is published, but never signs
    /// (rotation: the next key before it signs, the previous one after). Repeatable.
    #[arg(
        long = "verification-key-file",
        env = "MCP_WARDEN_VERIFICATION_KEY_FILES",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    pub(super) verification_key_files: Vec<PathBuf>,

    /// Lifetime of our access tokens (they cannot be revoked: keep it short).
    #[arg(long, env = "MCP_WARDEN_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    access_token_ttl: Duration,

    /// Refresh tokens stop working this long after sign-in.
    #[arg(long, env = "MCP_WARDEN_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    refresh_token_ttl: Duration,

    /// A refresh token unused for this long stops working.
    #[arg(long, env = "MCP_WARDEN_REFRESH_TOKEN_IDLE_TTL", default_value = "7d", value_parser = parse_duration)]
    refresh_token_idle_ttl: Duration,

    /// Lifetime of authorization codes (at most 10m).
    #[arg(long, env = "MCP_WARDEN_AUTHORIZATION_CODE_TTL", default_value = "60s", value_parser = parse_duration)]
    authorization_code_ttl: Duration,

    /// How long a user's consent to a client is remembered (0s: ask every time).
    #[arg(long, env = "MCP_WARDEN_CONSENT_TTL", default_value = "90d", value_parser = parse_duration)]
    consent_ttl: Duration,

    /// Keep sign-in state (clients, codes, refresh tokens, consents) in DIR/state.db, so a
    /// restart loses nothing (one replica). Default with --dev: in memory.
    #[arg(long, env = "MCP_WARDEN_STATE_DIR", value_name = "DIR")]
    pub(super) state_dir: Option<PathBuf>,

    /// Keep sign-in state in PostgreSQL, shared by replicas (postgres://user@host/db;
    /// sslmode=require for any host but loopback). Or the URL in a file: --state-url-file.
    #[arg(
        long,
        env = "MCP_WARDEN_STATE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    state_url: Option<String>,

    /// File holding the --state-url (keeps a password out of the process list).
    #[arg(
        long,
        env = "MCP_WARDEN_STATE_URL_FILE",
        value_name = "PATH",
        conflicts_with = "state_url"
    )]
    pub(super) state_url_file: Option<PathBuf>,

    /// Do not accept client metadata documents (client_id URLs).
    #[arg(long, env = "MCP_WARDEN_NO_CIMD")]
    no_cimd: bool,

    /// Do not accept dynamic client registration.
    #[arg(long, env = "MCP_WARDEN_NO_DCR")]
    no_dcr: bool,

    /// Accept client metadata documents only from hosts matching this glob (repeatable).
    #[arg(
        long = "cimd-allow-host",
        env = "MCP_WARDEN_CIMD_ALLOW_HOSTS",
        value_delimiter = ',',
        value_name = "GLOB"
    )]
    cimd_allow_hosts: Vec<String>,

    /// Fetch client metadata documents from loopback addresses too (development; only on a
    /// loopback listener).
    #[arg(long, env = "MCP_WARDEN_CIMD_ALLOW_LOOPBACK")]
    cimd_allow_loopback: bool,

    /// Time a client metadata document gets to arrive.
    #[arg(long, env = "MCP_WARDEN_CIMD_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    cimd_timeout: Duration,

    /// Largest client metadata document.
    #[arg(long, env = "MCP_WARDEN_CIMD_MAX_BYTES", default_value = "5KiB", value_parser = parse_bytes)]
    cimd_max_bytes: usize,

    /// A client metadata document is reused at least this long, whatever its Cache-Control.
    #[arg(long, env = "MCP_WARDEN_CIMD_MIN_TTL", default_value = "60s", value_parser = parse_duration)]
    cimd_min_ttl: Duration,

    /// A client metadata document is fetched again after at most this long.
    #[arg(long, env = "MCP_WARDEN_CIMD_MAX_TTL", default_value = "24h", value_parser = parse_duration)]
    cimd_max_ttl: Duration,

    /// Dynamic registrations per client address per hour.
    #[arg(
        long,
        env = "MCP_WARDEN_DCR_RATE",
        default_value_t = 20,
        value_name = "N"
    )]
    dcr_rate: u32,

    /// A private-use redirect scheme native clients may register (e.g. cursor); the MCP
    /// specification asks for https or localhost only. Repeatable.
    #[arg(
        long = "allow-redirect-scheme",
        env = "MCP_WARDEN_ALLOW_REDIRECT_SCHEMES",
        value_delimiter = ',',
        value_name = "SCHEME"
    )]
    allow_redirect_schemes: Vec<String>,
}

impl LoginArgs {
    pub(super) fn options(&self) -> anyhow::Result<LoginOptions> {
        let login_client_secret = match &self.login_client_secret_file {
            Some(p) => Some(secret_file("login client secret", p)?.trim().to_owned()),
            // Kept out of the flags so it never shows in the process list.
            None => std::env::var("MCP_WARDEN_LOGIN_CLIENT_SECRET").ok(),
        };
        let state_url = match &self.state_url_file {
            Some(p) => Some(secret_file("state URL", p)?.trim().to_owned()),
            None => self.state_url.clone(),
        };
        let github = self.login_provider == "github";
        let login_issuer = if github {
            if self.login_issuer.is_some() {
                anyhow::bail!(
                    "--login-issuer is for OpenID providers; with --login-provider github, give --github-url"
                );
            }
            Some(self.github_url.trim_end_matches('/').to_owned())
        } else {
            self.login_issuer.clone()
        };
        let github_api_url = github.then(|| match &self.github_api_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None if self.github_url.trim_end_matches('/') == "https://github.com" => {
                "https://api.github.com".to_owned()
            }
            None => format!("{}/api/v3", self.github_url.trim_end_matches('/')),
        });
        Ok(LoginOptions {
            login_issuer,
            login_provider: if github {
                LoginProvider::GitHub
            } else {
                LoginProvider::Oidc
            },
            github_api_url,
            login_client_id: self.login_client_id.clone(),
            login_client_secret: login_client_secret
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            login_scopes: self.login_scopes.clone(),
            login_groups_claim: self.login_groups_claim.clone(),
            allow_emails: self.allow_emails.clone(),
            allow_email_domains: self.allow_email_domains.clone(),
            allow_groups: self.allow_groups.clone(),
            allow_any_user: self.allow_any_user,
            signing_key_file: self.signing_key_file.clone(),
            verification_key_files: self.verification_key_files.clone(),
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            refresh_token_idle_ttl: self.refresh_token_idle_ttl,
            authorization_code_ttl: self.authorization_code_ttl,
            consent_ttl: self.consent_ttl,
            state_dir: self.state_dir.clone(),
            state_url,
            no_cimd: self.no_cimd,
            no_dcr: self.no_dcr,
            cimd_allow_hosts: self.cimd_allow_hosts.clone(),
            cimd_allow_loopback: self.cimd_allow_loopback,
            cimd_timeout: self.cimd_timeout,
            cimd_max_bytes: self.cimd_max_bytes,
            cimd_min_ttl: self.cimd_min_ttl,
            cimd_max_ttl: self.cimd_max_ttl,
            dcr_per_hour: self.dcr_rate,
            allow_redirect_schemes: self.allow_redirect_schemes.clone(),
        })
    }
}

/// `mcp-warden keygen FILE`: a new ES256 signing key (mode 0600), for --signing-key-file.
pub(super) fn keygen(path: &std::path::Path) -> anyhow::Result<()> {
    let (key, created) = crate::auth::LocalIssuer::load_or_create("keygen", path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    if !created {
        anyhow::bail!("{} exists; not overwritten", path.display());
    }
    eprintln!(
        "mcp-warden: wrote {} (key id {})",
        path.display(),
        key.kid()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        login: LoginArgs,
    }

    fn options(args: &[&str]) -> anyhow::Result<LoginOptions> {
        let argv = std::iter::once("mcp-warden").chain(args.iter().copied());
        Cli::try_parse_from(argv)?.login.options()
    }

    #[test]
    fn github_urls_default_to_github_com_or_the_enterprise_layout() {
        let o = options(&["--login-provider", "github"]).unwrap();
        assert_eq!(o.login_provider, LoginProvider::GitHub);
        assert_eq!(o.login_issuer.as_deref(), Some("https://github.com"));
        assert_eq!(o.github_api_url.as_deref(), Some("https://api.github.com"));
        let o = options(&[
            "--login-provider",
            "github",
            "--github-url",
            "https://github.example.com/",
        ])
        .unwrap();
        assert_eq!(
            o.login_issuer.as_deref(),
            Some("https://github.example.com")
        );
        assert_eq!(
            o.github_api_url.as_deref(),
            Some("https://github.example.com/api/v3")
        );
        let e = options(&[
            "--login-provider",
            "github",
            "--login-issuer",
            "https://accounts.example",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--github-url"), "{e}");
        let o = options(&["--login-issuer", "https://accounts.example"]).unwrap();
        assert_eq!(o.login_provider, LoginProvider::Oidc);
        assert!(o.github_api_url.is_none());
        assert!(options(&["--login-provider", "saml"]).is_err());
    }
}
