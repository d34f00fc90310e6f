//! The built-in authorization server's options → its compiled sub-configs (the server's
//! own, its store's) and the signing key the resource side trusts. Validation fails at
//! startup with the flag to fix.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::ConfigError;
use crate::auth::{AuthConfig, LocalIssuerConfig, Secret};
use crate::authz::allow::AllowRules;
use crate::authz::cimd::CimdConfig;
use crate::authz::{AuthzConfig, DcrConfig, UpstreamConfig};
use crate::store::StoreConfig;

/// Which kind of provider users sign in at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoginProvider {
    /// Any OpenID Connect provider (`login_issuer` is its issuer identifier).
    #[default]
    Oidc,
    /// GitHub or a GitHub Enterprise Server (`login_issuer` is its web URL).
    GitHub,
}

/// The sign-in options of `wrap`, as given (secret files already read).
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// The provider: an OpenID issuer, or GitHub's web URL.
    pub login_issuer: Option<String>,
    pub login_provider: LoginProvider,
    /// GitHub's REST API (`https://api.github.com`, or `https://HOST/api/v3`).
    pub github_api_url: Option<String>,
    pub login_client_id: Option<String>,
    pub login_client_secret: Option<Secret>,
    pub login_scopes: Vec<String>,
    pub login_groups_claim: String,
    pub allow_emails: Vec<String>,
    pub allow_email_domains: Vec<String>,
    pub allow_groups: Vec<String>,
    pub allow_any_user: bool,
    pub signing_key_file: Option<PathBuf>,
    pub verification_key_files: Vec<PathBuf>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub refresh_token_idle_ttl: Duration,
    pub authorization_code_ttl: Duration,
    pub consent_ttl: Duration,
    pub state_dir: Option<PathBuf>,
    pub state_url: Option<String>,
    pub no_cimd: bool,
    pub no_dcr: bool,
    pub cimd_allow_hosts: Vec<String>,
    pub cimd_allow_loopback: bool,
    pub cimd_timeout: Duration,
    pub cimd_max_bytes: usize,
    pub cimd_min_ttl: Duration,
    pub cimd_max_ttl: Duration,
    pub dcr_per_hour: u32,
    pub allow_redirect_schemes: Vec<String>,
}

impl Default for LoginOptions {
    /// The command line's defaults: no sign-in server.
    fn default() -> Self {
        LoginOptions {
            login_issuer: None,
            login_provider: LoginProvider::Oidc,
            github_api_url: None,
            login_client_id: None,
            login_client_secret: None,
            login_scopes: vec![],
            login_groups_claim: "groups".into(),
            allow_emails: vec![],
            allow_email_domains: vec![],
            allow_groups: vec![],
            allow_any_user: false,
            signing_key_file: None,
            verification_key_files: vec![],
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            refresh_token_idle_ttl: Duration::from_secs(7 * 86_400),
            authorization_code_ttl: Duration::from_secs(60),
            consent_ttl: Duration::from_secs(90 * 86_400),
            state_dir: None,
            state_url: None,
            no_cimd: false,
            no_dcr: false,
            cimd_allow_hosts: vec![],
            cimd_allow_loopback: false,
            cimd_timeout: Duration::from_secs(5),
            cimd_max_bytes: 5 * 1024,
            cimd_min_ttl: Duration::from_secs(60),
            cimd_max_ttl: Duration::from_secs(86_400),
            dcr_per_hour: 20,
            allow_redirect_schemes: vec![],
        }
    }
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
pub fn compile(
    o: &LoginOptions,
    dev: bool,
    listen_loopback: bool,
    public_url: &Url,
    prefix: &str,
    auth: &mut AuthConfig,
) -> Result<Option<AuthzSetup>, ConfigError> {
    let login = o.login_issuer.is_some();
    if !login {
        let given = [
            ("--login-client-id", o.login_client_id.is_some()),
            ("--state-url", o.state_url.is_some()),
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
    let upstream = match &o.login_issuer {
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
            let (Some(client_id), Some(secret)) = (&o.login_client_id, &o.login_client_secret)
            else {
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
                    let api = o
                        .github_api_url
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
    let store = match (&o.state_url, &o.state_dir) {
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
                per_hour: o.dcr_per_hour,
                burst: o.dcr_per_hour.clamp(1, 5),
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

    fn build(o: super::super::WrapOptions) -> Result<WrapConfig, ConfigError> {
        let env: std::collections::HashMap<String, std::ffi::OsString> = Default::default();
        WrapConfig::from_options(o, &env, "/proc/self/exe".into())
    }

    fn login() -> super::super::WrapOptions {
        let mut o = options();
        o.no_auth = false;
        o.login = LoginOptions {
            login_issuer: Some("https://accounts.example".into()),
            login_client_id: Some("warden".into()),
            login_client_secret: Some(Secret::new("s3cret")),
            allow_email_domains: vec!["Corp.Example".into()],
            state_dir: Some("/var/lib/mcp-warden".into()),
            ..LoginOptions::default()
        };
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
        o.login.login_issuer = Some("https://github.example.com".into());
        o.login.github_api_url = Some("https://github.example.com/api/v3".into());
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
        o.login.github_api_url = None;
        assert!(err(o).contains("--github-api-url"));
    }

    #[test]
    fn sign_in_needs_rules_credentials_state_and_https() {
        let mut o = login();
        o.login.allow_email_domains.clear();
        assert!(err(o).contains("--allow-any-user"));
        let mut o = login();
        o.login.login_client_secret = None;
        assert!(err(o).contains("--login-client-id"));
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
