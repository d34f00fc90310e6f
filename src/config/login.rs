//! The built-in authorization server's options → its compiled sub-configs (the server's
//! own, its store's) and the signing key the resource side trusts. Validation fails at
//! startup with the flag to fix.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::values::{parse_bytes, parse_duration};
use super::{ConfigError, VarLookup, read_secret};
use crate::auth::{AuthConfig, LocalIssuerConfig, Secret};
use crate::authz::allow::AllowRules;
use crate::authz::cimd::CimdConfig;
use crate::authz::{AuthzConfig, DcrConfig, UpstreamConfig};
use crate::store::StoreConfig;

/// Which kind of provider users sign in at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LoginProvider {
    // Any OpenID Connect provider (`--login-issuer` is its issuer identifier). Plain
    // comments: the flag's own help describes the values.
    #[default]
    Oidc,
    // GitHub or a GitHub Enterprise Server (`--github-url`).
    #[value(name = "github")]
    GitHub,
}

/// Let MCP clients sign in: the built-in authorization server, federating to your identity
/// provider (or, with --dev, a development login page).
#[derive(Debug, Clone, clap::Args)]
#[command(
    next_help_heading = "Sign-in server (MCP clients sign in through your identity provider)"
)]
pub struct LoginOptions {
    /// Sign users in at this OpenID Connect provider (its issuer identifier), and be the
    /// authorization server MCP clients use. Register <public origin and prefix>/oauth/callback
    /// as the redirect URI there.
    #[arg(long, env = "MCP_WARDEN_LOGIN_ISSUER", value_name = "URL")]
    pub login_issuer: Option<String>,

    /// The kind of provider: `oidc` (any OpenID Connect provider, --login-issuer) or
    /// `github` (GitHub's OAuth and user API; GitHub Enterprise: --github-url). Register
    /// <public origin and prefix>/oauth/callback as the callback URL there.
    #[arg(
        long,
        env = "MCP_WARDEN_LOGIN_PROVIDER",
        value_name = "KIND",
        value_enum,
        default_value = "oidc"
    )]
    pub login_provider: LoginProvider,

    /// With --login-provider github: where users sign in (a GitHub Enterprise Server's
    /// URL, e.g. https://github.example.com).
    #[arg(
        long,
        env = "MCP_WARDEN_GITHUB_URL",
        value_name = "URL",
        default_value = "https://github.com"
    )]
    pub github_url: String,

    /// With --login-provider github: its REST API. Default: https://api.github.com for
    /// github.com, <--github-url>/api/v3 for GitHub Enterprise Server.
    #[arg(long, env = "MCP_WARDEN_GITHUB_API_URL", value_name = "URL")]
    pub github_api_url: Option<String>,

    /// Our client id at the provider.
    #[arg(long, env = "MCP_WARDEN_LOGIN_CLIENT_ID", value_name = "ID")]
    pub login_client_id: Option<String>,

    /// File holding our client secret at the provider (or set
    /// MCP_WARDEN_LOGIN_CLIENT_SECRET).
    #[arg(long, env = "MCP_WARDEN_LOGIN_CLIENT_SECRET_FILE", value_name = "PATH")]
    pub login_client_secret_file: Option<PathBuf>,

    /// Scopes asked of the provider besides `openid email profile` (e.g. groups).
    #[arg(
        long = "login-scope",
        env = "MCP_WARDEN_LOGIN_SCOPES",
        value_delimiter = ',',
        value_name = "SCOPE"
    )]
    pub login_scopes: Vec<String>,

    /// The provider's claim that lists the user's groups (Entra ID: groups or roles).
    #[arg(
        long,
        env = "MCP_WARDEN_LOGIN_GROUPS_CLAIM",
        default_value = "groups",
        value_name = "NAME"
    )]
    pub login_groups_claim: String,

    /// Users with this verified email address may sign in (repeatable).
    #[arg(
        long = "allow-email",
        env = "MCP_WARDEN_ALLOW_EMAILS",
        value_delimiter = ',',
        value_name = "EMAIL"
    )]
    pub allow_emails: Vec<String>,

    /// Users with a verified email address at this domain may sign in (repeatable; exact
    /// domain, not subdomains).
    #[arg(
        long = "allow-email-domain",
        env = "MCP_WARDEN_ALLOW_EMAIL_DOMAINS",
        value_delimiter = ',',
        value_name = "DOMAIN"
    )]
    pub allow_email_domains: Vec<String>,

    /// Members of this group (as the provider names it) may sign in (repeatable).
    #[arg(
        long = "allow-group",
        env = "MCP_WARDEN_ALLOW_GROUPS",
        value_delimiter = ',',
        value_name = "GROUP"
    )]
    pub allow_groups: Vec<String>,

    /// Anyone the provider signs in may sign in here (with no --allow-* rule, sign-in is
    /// refused at startup).
    #[arg(long, env = "MCP_WARDEN_ALLOW_ANY_USER")]
    pub allow_any_user: bool,

    /// ES256 key (PKCS#8 PEM, mode 0600) our access tokens are signed with; shared by
    /// replicas. Default: <state-dir>/signing-key.pem, created when missing. Make one with
    /// `mcp-warden keygen FILE`.
    #[arg(long, env = "MCP_WARDEN_SIGNING_KEY_FILE", value_name = "PATH")]
    pub signing_key_file: Option<PathBuf>,

    /// Key that seals users' upstream connection tokens in the state store (AES-256-GCM):
    /// 32 bytes as hex or base64 (`openssl rand -base64 32`), shared by replicas. Needed by
    /// `[[connection]]` entries, except with --dev and no state store (nothing outlives the
    /// process then).
    #[arg(long, env = "MCP_WARDEN_STATE_KEY_FILE", value_name = "PATH")]
    pub state_key_file: Option<PathBuf>,

    /// A key whose tokens are still accepted and which is published, but never signs
    /// (rotation: the next key before it signs, the previous one after). Repeatable.
    #[arg(
        long = "verification-key-file",
        env = "MCP_WARDEN_VERIFICATION_KEY_FILES",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    pub verification_key_files: Vec<PathBuf>,

    /// Lifetime of our access tokens (they cannot be revoked: keep it short).
    #[arg(long, env = "MCP_WARDEN_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,

    /// Refresh tokens stop working this long after sign-in.
    #[arg(long, env = "MCP_WARDEN_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,

    /// A refresh token unused for this long stops working.
    #[arg(long, env = "MCP_WARDEN_REFRESH_TOKEN_IDLE_TTL", default_value = "7d", value_parser = parse_duration)]
    pub refresh_token_idle_ttl: Duration,

    /// Lifetime of authorization codes (at most 10m).
    #[arg(long, env = "MCP_WARDEN_AUTHORIZATION_CODE_TTL", default_value = "60s", value_parser = parse_duration)]
    pub authorization_code_ttl: Duration,

    /// How long a user's consent to a client is remembered (0s: ask every time).
    #[arg(long, env = "MCP_WARDEN_CONSENT_TTL", default_value = "90d", value_parser = parse_duration)]
    pub consent_ttl: Duration,

    /// Keep sign-in state (clients, codes, refresh tokens, consents) in DIR/state.db, so a
    /// restart loses nothing (one replica). Default with --dev: in memory.
    #[arg(long, env = "MCP_WARDEN_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Keep sign-in state in PostgreSQL, shared by replicas (postgres://user@host/db;
    /// sslmode=require for any host but loopback). Or the URL in a file: --state-url-file.
    #[arg(
        long,
        env = "MCP_WARDEN_STATE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub state_url: Option<String>,

    /// File holding the --state-url (keeps a password out of the process list).
    #[arg(
        long,
        env = "MCP_WARDEN_STATE_URL_FILE",
        value_name = "PATH",
        conflicts_with = "state_url"
    )]
    pub state_url_file: Option<PathBuf>,

    /// Do not accept client metadata documents (client_id URLs).
    #[arg(long, env = "MCP_WARDEN_NO_CIMD")]
    pub no_cimd: bool,

    /// Do not accept dynamic client registration.
    #[arg(long, env = "MCP_WARDEN_NO_DCR")]
    pub no_dcr: bool,

    /// Accept client metadata documents only from hosts matching this glob (repeatable).
    #[arg(
        long = "cimd-allow-host",
        env = "MCP_WARDEN_CIMD_ALLOW_HOSTS",
        value_delimiter = ',',
        value_name = "GLOB"
    )]
    pub cimd_allow_hosts: Vec<String>,

    /// Fetch client metadata documents from loopback addresses too (development; only on a
    /// loopback listener).
    #[arg(long, env = "MCP_WARDEN_CIMD_ALLOW_LOOPBACK")]
    pub cimd_allow_loopback: bool,

    /// Time a client metadata document gets to arrive.
    #[arg(long, env = "MCP_WARDEN_CIMD_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub cimd_timeout: Duration,

    /// Largest client metadata document.
    #[arg(long, env = "MCP_WARDEN_CIMD_MAX_BYTES", default_value = "5KiB", value_parser = parse_bytes)]
    pub cimd_max_bytes: usize,

    /// A client metadata document is reused at least this long, whatever its Cache-Control.
    #[arg(long, env = "MCP_WARDEN_CIMD_MIN_TTL", default_value = "60s", value_parser = parse_duration)]
    pub cimd_min_ttl: Duration,

    /// A client metadata document is fetched again after at most this long.
    #[arg(long, env = "MCP_WARDEN_CIMD_MAX_TTL", default_value = "24h", value_parser = parse_duration)]
    pub cimd_max_ttl: Duration,

    /// Dynamic registrations per client address per hour.
    #[arg(
        long,
        env = "MCP_WARDEN_DCR_RATE",
        default_value_t = 20,
        value_name = "N"
    )]
    pub dcr_rate: u32,

    /// A private-use redirect scheme native clients may register (e.g. cursor); the MCP
    /// specification asks for https or localhost only. Repeatable.
    #[arg(
        long = "allow-redirect-scheme",
        env = "MCP_WARDEN_ALLOW_REDIRECT_SCHEMES",
        value_delimiter = ',',
        value_name = "SCHEME"
    )]
    pub allow_redirect_schemes: Vec<String>,
}

/// What the sign-in server runs with.
#[derive(Debug, Clone)]
pub struct AuthzSetup {
    pub config: AuthzConfig,
    pub store: StoreConfig,
    /// Trusted for outbound TLS (the provider, documents, PostgreSQL).
    pub ca_pem: Option<Vec<u8>>,
}

fn login_error(message: impl Into<String>) -> ConfigError {
    ConfigError::Login(message.into())
}

fn in_range(flag: &str, v: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(login_error(format!(
            "{flag} must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(())
}

/// Compiles the sign-in server, when `--login-issuer` or `--dev` asks for one, and makes
/// its signing key the one `auth` trusts as our issuer.
#[allow(clippy::too_many_arguments)]
pub fn compile(
    o: &LoginOptions,
    env: &dyn VarLookup,
    dev: bool,
    listen_loopback: bool,
    public_url: &Url,
    prefix: &str,
    auth: &mut AuthConfig,
) -> Result<Option<AuthzSetup>, ConfigError> {
    let github = o.login_provider == LoginProvider::GitHub;
    let github_url = o.github_url.trim_end_matches('/');
    let login_issuer = if github {
        if o.login_issuer.is_some() {
            return Err(login_error(
                "--login-issuer is for OpenID providers; with --login-provider github, give --github-url",
            ));
        }
        Some(github_url.to_owned())
    } else {
        o.login_issuer.clone()
    };
    let github_api_url = github.then(|| match &o.github_api_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None if github_url == "https://github.com" => "https://api.github.com".to_owned(),
        None => format!("{github_url}/api/v3"),
    });
    let login_client_secret = read_secret(
        "login client secret",
        o.login_client_secret_file.as_deref(),
        "MCP_WARDEN_LOGIN_CLIENT_SECRET",
        env,
    )?
    .filter(|s| !s.is_empty())
    .map(Secret::new);
    let state_url = match &o.state_url_file {
        Some(p) => Some(super::read_text("state URL", p)?.trim().to_owned()),
        None => o.state_url.clone(),
    };
    let login = login_issuer.is_some();
    if !login {
        let given = [
            ("--login-client-id", o.login_client_id.is_some()),
            ("--state-url", state_url.is_some()),
            ("--signing-key-file", o.signing_key_file.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set)
            && !dev
        {
            return Err(login_error(format!("{flag} needs --login-issuer")));
        }
    }
    if login && dev {
        return Err(login_error(
            "--dev and --login-issuer exclude each other: --dev signs anyone in without a password",
        ));
    }
    if !login && !dev {
        return Ok(None);
    }
    if dev && !listen_loopback {
        // Anyone reaching the port could sign in under any name.
        tracing::warn!(
            "--dev on a non-loopback listener: the development sign-in page is off (the printed token still works)"
        );
        return Ok(None);
    }
    let issuer = super::dev_issuer_id(public_url, prefix);
    if !crate::auth::fetch::is_secure_endpoint(public_url) {
        return Err(login_error(format!(
            "the sign-in server would be {issuer}, which is neither https nor loopback: give an https --public-url"
        )));
    }
    for (flag, v, min, max) in [
        (
            "--access-token-ttl",
            o.access_token_ttl,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        ),
        (
            "--authorization-code-ttl",
            o.authorization_code_ttl,
            Duration::from_secs(1),
            Duration::from_secs(600),
        ),
        (
            "--refresh-token-ttl",
            o.refresh_token_ttl,
            Duration::from_secs(60),
            Duration::from_secs(365 * 86_400),
        ),
        (
            "--refresh-token-idle-ttl",
            o.refresh_token_idle_ttl,
            Duration::from_secs(60),
            Duration::from_secs(365 * 86_400),
        ),
        (
            "--cimd-timeout",
            o.cimd_timeout,
            Duration::from_millis(100),
            Duration::from_secs(30),
        ),
    ] {
        in_range(flag, v, min, max)?;
    }
    if o.cimd_max_bytes == 0 || o.cimd_max_bytes > 64 * 1024 {
        return Err(login_error("--cimd-max-bytes must be between 1 and 64KiB"));
    }
    if o.no_cimd && o.no_dcr {
        return Err(login_error(
            "--no-cimd and --no-dcr together leave clients no way to identify themselves",
        ));
    }
    if o.cimd_allow_loopback && !listen_loopback {
        return Err(login_error(
            "--cimd-allow-loopback is only for a server that itself listens on loopback",
        ));
    }
    let upstream = match &login_issuer {
        None => UpstreamConfig::Dev,
        Some(issuer_url) => {
            let u =
                Url::parse(issuer_url).map_err(|_| login_error("--login-issuer is not a URL"))?;
            if !crate::auth::fetch::is_secure_endpoint(&u)
                || u.query().is_some()
                || u.fragment().is_some()
            {
                return Err(login_error(
                    "--login-issuer must be an https URL (http only for loopback) without query or fragment",
                ));
            }
            let (Some(client_id), Some(secret)) = (&o.login_client_id, &login_client_secret) else {
                return Err(login_error(
                    "the sign-in provider needs --login-client-id and a client secret (--login-client-secret-file or MCP_WARDEN_LOGIN_CLIENT_SECRET)",
                ));
            };
            let extra_scopes = o
                .login_scopes
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_owned);
            match o.login_provider {
                LoginProvider::Oidc => UpstreamConfig::Oidc {
                    issuer: issuer_url.clone(),
                    client_id: client_id.clone(),
                    client_secret: secret.clone(),
                    extra_scopes: extra_scopes.collect(),
                    groups_claim: o.login_groups_claim.clone(),
                },
                LoginProvider::GitHub => {
                    let api = github_api_url
                        .as_deref()
                        .ok_or_else(|| login_error("--login-provider github needs --github-api-url"))
                        .and_then(|a| {
                            Url::parse(a)
                                .ok()
                                .filter(|u| {
                                    crate::auth::fetch::is_secure_endpoint(u)
                                        && u.query().is_none()
                                        && u.fragment().is_none()
                                })
                                .ok_or_else(|| {
                                    login_error(
                                        "--github-api-url must be an https URL (http only for loopback) without query or fragment",
                                    )
                                })
                        })?;
                    let mut scopes = vec!["read:user".to_owned(), "user:email".to_owned()];
                    // Groups (organizations and teams) need read:org.
                    if !o.allow_groups.is_empty() {
                        scopes.push("read:org".into());
                    }
                    for s in extra_scopes {
                        if !scopes.contains(&s) {
                            scopes.push(s);
                        }
                    }
                    UpstreamConfig::GitHub {
                        web_url: u,
                        api_url: api,
                        client_id: client_id.clone(),
                        client_secret: secret.clone(),
                        scopes,
                    }
                }
            }
        }
    };
    let allow = if dev {
        AllowRules::any()
    } else {
        let rules = AllowRules {
            any_user: o.allow_any_user,
            emails: o
                .allow_emails
                .iter()
                .map(|e| e.trim().to_ascii_lowercase())
                .collect(),
            email_domains: o
                .allow_email_domains
                .iter()
                .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            groups: o.allow_groups.clone(),
        };
        if rules.is_empty() {
            return Err(login_error(
                "say who may sign in: --allow-email-domain, --allow-email or --allow-group (or --allow-any-user for everyone your provider signs in)",
            ));
        }
        rules
    };
    let store = match (&state_url, &o.state_dir) {
        (Some(_), Some(_)) => {
            return Err(login_error(
                "--state-url and --state-dir exclude each other",
            ));
        }
        (Some(url), None) => {
            crate::store::check_postgres_url(url).map_err(|e| login_error(e.to_string()))?;
            if o.signing_key_file.is_none() && !dev {
                return Err(login_error(
                    "--state-url needs --signing-key-file: every replica must sign with the same key (create one with `mcp-warden keygen FILE`)",
                ));
            }
            StoreConfig::Postgres {
                url: url.clone(),
                ca_pem: auth.extra_ca_pem.clone(),
            }
        }
        (None, Some(dir)) => StoreConfig::Sqlite { dir: dir.clone() },
        (None, None) if dev => StoreConfig::Memory,
        (None, None) => {
            return Err(login_error(
                "the sign-in server keeps its state in --state-dir DIR (one replica) or --state-url postgres://… (several)",
            ));
        }
    };
    if dev {
        if let Some(local) = &mut auth.local {
            local.verification_key_files = o.verification_key_files.clone();
        }
    } else {
        let (key_file, create_key) = match (&o.signing_key_file, &o.state_dir) {
            (Some(f), _) => (f.clone(), false),
            (None, Some(dir)) => (dir.join("signing-key.pem"), true),
            (None, None) => return Err(login_error("--signing-key-file is required")),
        };
        auth.local = Some(LocalIssuerConfig {
            issuer: issuer.clone(),
            key_file: Some(key_file),
            create_key,
            verification_key_files: o.verification_key_files.clone(),
            dev: false,
        });
    }
    let origin = public_url.origin().ascii_serialization();
    let resources: Vec<String> = auth.resources.all().map(|r| r.id.clone()).collect();
    Ok(Some(AuthzSetup {
        config: AuthzConfig {
            issuer,
            origin,
            resources,
            resource_name: auth.resource_name.clone(),
            scopes_supported: auth.scopes_supported.clone(),
            default_scopes: auth.required_scopes.clone(),
            upstream,
            allow,
            access_token_ttl: o.access_token_ttl,
            refresh_token_ttl: o.refresh_token_ttl,
            refresh_idle_ttl: o.refresh_token_idle_ttl,
            code_ttl: o.authorization_code_ttl,
            consent_ttl: o.consent_ttl,
            cimd: (!o.no_cimd).then(|| CimdConfig {
                timeout: o.cimd_timeout,
                max_bytes: o.cimd_max_bytes,
                min_ttl: o.cimd_min_ttl,
                max_ttl: o.cimd_max_ttl,
                allow_loopback: o.cimd_allow_loopback,
                allow_hosts: o.cimd_allow_hosts.clone(),
                redirect_schemes: o.allow_redirect_schemes.clone(),
                ca_pem: auth.extra_ca_pem.clone(),
            }),
            dcr: (!o.no_dcr).then(|| DcrConfig {
                per_hour: o.dcr_rate,
                burst: o.dcr_rate.clamp(1, 5),
                ..DcrConfig::default()
            }),
            redirect_schemes: o.allow_redirect_schemes.clone(),
            secure_cookies: public_url.scheme() == "https",
            leeway: auth.leeway,
        },
        store,
        ca_pem: auth.extra_ca_pem.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::options;
    use super::super::{ConfigError, WrapConfig};
    use super::*;

    /// With the client secret in the environment, as `MCP_WARDEN_LOGIN_CLIENT_SECRET`.
    fn build(o: super::super::WrapOptions) -> Result<WrapConfig, ConfigError> {
        let env: std::collections::HashMap<String, std::ffi::OsString> =
            [("MCP_WARDEN_LOGIN_CLIENT_SECRET".to_owned(), "s3cret".into())].into();
        WrapConfig::from_options(o, &env, "/proc/self/exe".into())
    }

    fn build_without_secret(o: super::super::WrapOptions) -> Result<WrapConfig, ConfigError> {
        let env: std::collections::HashMap<String, std::ffi::OsString> = Default::default();
        WrapConfig::from_options(o, &env, "/proc/self/exe".into())
    }

    fn login() -> super::super::WrapOptions {
        let mut o = options();
        o.no_auth = false;
        o.login.login_issuer = Some("https://accounts.example".into());
        o.login.login_client_id = Some("warden".into());
        o.login.allow_email_domains = vec!["Corp.Example".into()];
        o.login.state_dir = Some("/var/lib/mcp-warden".into());
        o
    }

    fn err(o: super::super::WrapOptions) -> String {
        match build(o) {
            Err(ConfigError::Login(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_login_issuer_starts_the_sign_in_server() {
        let c = build(login()).unwrap();
        let a = c.authz.unwrap();
        assert_eq!(a.config.issuer, "http://127.0.0.1:8080");
        assert_eq!(a.config.allow.email_domains, vec!["corp.example"]);
        assert!(matches!(a.store, StoreConfig::Sqlite { .. }));
        let local = c.auth.unwrap().local.unwrap();
        assert_eq!(
            local.key_file.unwrap(),
            PathBuf::from("/var/lib/mcp-warden/signing-key.pem")
        );
        assert!(local.create_key && !local.dev);
        assert!(!format!("{:?}", login()).contains("s3cret"));
    }

    #[test]
    fn github_asks_for_organizations_only_for_group_rules() {
        let mut o = login();
        o.login.login_provider = LoginProvider::GitHub;
        o.login.login_issuer = None;
        o.login.github_url = "https://github.example.com/".into();
        let scopes =
            |o: super::super::WrapOptions| match build(o).unwrap().authz.unwrap().config.upstream {
                UpstreamConfig::GitHub {
                    scopes, api_url, ..
                } => {
                    assert_eq!(api_url.as_str(), "https://github.example.com/api/v3");
                    scopes
                }
                other => panic!("{other:?}"),
            };
        assert_eq!(scopes(o.clone()), ["read:user", "user:email"]);
        let mut g = o.clone();
        g.login.allow_groups = vec!["acme/platform".into()];
        assert_eq!(scopes(g), ["read:user", "user:email", "read:org"]);
        let mut plain = o.clone();
        plain.login.github_api_url = Some("http://api.github.example.com".into());
        assert!(err(plain).contains("--github-api-url"));
        // The provider is named by --github-url, not --login-issuer.
        o.login.login_issuer = Some("https://accounts.example".into());
        assert!(err(o).contains("--github-url"));
    }

    #[test]
    fn github_urls_default_to_github_com_or_the_enterprise_layout() {
        let github = |url: &str| {
            let mut o = login();
            o.login.login_provider = LoginProvider::GitHub;
            o.login.login_issuer = None;
            o.login.github_url = url.into();
            match build(o).unwrap().authz.unwrap().config.upstream {
                UpstreamConfig::GitHub { api_url, .. } => api_url.to_string(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(github("https://github.com"), "https://api.github.com/");
        assert_eq!(
            github("https://github.example.com/"),
            "https://github.example.com/api/v3"
        );
        let mut saml = vec!["wrap", "--login-provider", "saml", "--", "node"];
        assert!(<Wrap as clap::Parser>::try_parse_from(&saml).is_err());
        saml[2] = "github";
        let o = <Wrap as clap::Parser>::try_parse_from(&saml)
            .unwrap()
            .options;
        assert_eq!(o.login.login_provider, LoginProvider::GitHub);
    }

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        options: super::super::WrapOptions,
    }

    #[test]
    fn sign_in_needs_rules_credentials_state_and_https() {
        let mut o = login();
        o.login.allow_email_domains.clear();
        assert!(err(o).contains("--allow-any-user"));
        let r = build_without_secret(login());
        assert!(
            matches!(&r, Err(ConfigError::Login(m)) if m.contains("--login-client-id")),
            "{r:?}"
        );
        let mut o = login();
        o.login.state_dir = None;
        assert!(err(o).contains("--state-dir"));
        let mut o = login();
        o.login.state_dir = None;
        o.login.state_url = Some("postgres://w@127.0.0.1/w".into());
        assert!(err(o.clone()).contains("--signing-key-file"));
        o.login.signing_key_file = Some("/k.pem".into());
        assert!(matches!(
            build(o).unwrap().authz.unwrap().store,
            StoreConfig::Postgres { .. }
        ));
        let mut o = login();
        o.login.state_dir = None;
        o.login.signing_key_file = Some("/k.pem".into());
        o.login.state_url = Some("postgres://w:pw@db.example/w".into());
        assert!(err(o).contains("sslmode=require"));
        let mut o = login();
        o.listen = "0.0.0.0:8080".parse().unwrap();
        o.public_url = Some("http://tools.example/mcp".into());
        assert!(err(o.clone()).contains("https"));
        o.public_url = Some("https://tools.example/mcp".into());
        assert!(
            build(o.clone())
                .unwrap()
                .authz
                .unwrap()
                .config
                .secure_cookies
        );
        o.login.cimd_allow_loopback = true;
        assert!(err(o).contains("--cimd-allow-loopback"));
        let mut o = login();
        o.login.login_issuer = Some("http://accounts.example".into());
        assert!(err(o).contains("https"));
        let mut o = login();
        o.login.no_cimd = true;
        o.login.no_dcr = true;
        assert!(err(o).contains("--no-dcr"));
        let mut o = login();
        o.auth.dev = true;
        assert!(err(o).contains("exclude"));
        let mut o = options();
        o.no_auth = false;
        o.auth.issuers = vec!["https://as.example".into()];
        o.login.login_client_id = Some("x".into());
        assert!(err(o).contains("--login-issuer"));
    }

    #[test]
    fn dev_signs_in_on_loopback_only() {
        let mut o = options();
        o.no_auth = false;
        o.auth.dev = true;
        let c = build(o.clone()).unwrap();
        let a = c.authz.unwrap();
        assert!(matches!(a.config.upstream, UpstreamConfig::Dev));
        assert!(matches!(a.store, StoreConfig::Memory));
        assert!(a.config.allow.any_user);
        assert!(c.auth.unwrap().local.unwrap().dev);
        o.listen = "0.0.0.0:8080".parse().unwrap();
        o.public_url = Some("https://tools.example/mcp".into());
        let c = build(o).unwrap();
        assert!(
            c.authz.is_none(),
            "no password-less sign-in on a public listener"
        );
        assert!(
            c.auth.unwrap().local.is_some(),
            "the printed token still works"
        );
    }
}
