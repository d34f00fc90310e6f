//! Validation of `wrap`'s options, from values (no process environment, no clap).

use super::*;
use crate::credentials::EnvSource;
use crate::session::SessionRate;
use std::collections::HashMap;

/// `wrap --no-auth -- node server.js`, on the command line's own defaults.
pub(crate) fn options() -> WrapOptions {
    options_from(&["--no-auth", "--", "node", "server.js"])
}

/// `wrap ARGS`, parsed as the command line parses it.
pub(crate) fn options_from(args: &[&str]) -> WrapOptions {
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        options: WrapOptions,
    }
    let argv = std::iter::once("wrap").chain(args.iter().copied());
    <Wrap as clap::Parser>::try_parse_from(argv)
        .unwrap()
        .options
}

/// A file holding `content`, under a directory of this test process.
pub(crate) fn file_with(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-warden-config-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn build(o: WrapOptions) -> Result<WrapConfig, ConfigError> {
    let env: HashMap<String, OsString> = [
        ("PATH".to_owned(), OsString::from("/usr/bin")),
        ("SECRET".to_owned(), OsString::from("s3cr3t")),
    ]
    .into();
    WrapConfig::from_options(o, &env, "/proc/self/exe".into())
}

#[test]
fn defaults_make_a_working_config() {
    let c = build(options()).unwrap();
    assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8080/mcp");
    assert!(c.http.allow_loopback_origins);
    assert_eq!(c.http.public_prefix, "");
}

#[tokio::test]
async fn the_server_inherits_only_the_allow_list() {
    async fn resolve(c: WrapConfig) -> crate::credentials::SessionEnv {
        let principal = crate::auth::Principal::anonymous();
        let ctx = crate::credentials::SessionContext {
            principal: &principal,
            subject_token: None,
        };
        c.sessions.env.resolve(ctx).await.unwrap()
    }
    let env = resolve(build(options()).unwrap()).await;
    let names: Vec<_> = env.vars().map(|(k, _)| k.to_owned()).collect();
    assert_eq!(names, vec!["PATH".to_owned()]);
    let mut o = options();
    o.sandbox.env_pass = vec!["SECRET".into()];
    o.sandbox.env = vec![("MODE".into(), "x".into())];
    let env = resolve(build(o).unwrap()).await;
    assert_eq!(env.get("SECRET").unwrap(), "s3cr3t");
    assert_eq!(env.get("MODE").unwrap(), "x");
}

#[test]
fn sandbox_and_environment_flags_reach_the_server() {
    let o = options_from(&[
        "--no-auth",
        "--sandbox",
        "nonet",
        "--sandbox-user",
        "1000",
        "--env-file",
        "API_KEY=/run/secrets/key",
        "--env-pass",
        "LC_ALL",
        "--",
        "node",
    ]);
    let c = build(o).unwrap();
    assert_eq!(c.sessions.child.sandbox.name, "nonet");
    assert!(matches!(
        &c.sessions.env.sources()[0],
        EnvSource::File { name, .. } if name == "API_KEY"
    ));
    assert!(c.sessions.child.injects_secrets);
}

#[test]
fn sandbox_and_env_errors_are_reported() {
    let mut o = options();
    o.sandbox.sandbox = "paranoid".into();
    assert!(matches!(build(o), Err(ConfigError::Sandbox(_))));
    let mut o = options();
    o.sandbox.env = vec![("HOME".into(), "/".into())];
    assert!(matches!(build(o), Err(ConfigError::Env(_))));
    let mut o = options();
    o.sandbox.env_claim = vec![("USER".into(), "sub".into())];
    assert!(matches!(build(o), Err(ConfigError::Env(_))));
    let c = build(options()).unwrap();
    assert_eq!(c.sessions.child.sandbox.name, "default");
}

#[test]
fn no_auth_is_loopback_only_and_explicit() {
    let mut o = options();
    o.listen = "0.0.0.0:8080".parse().unwrap();
    assert!(matches!(
        build(o),
        Err(ConfigError::NoAuthOnPublicAddress(_))
    ));
    let mut o = options();
    o.no_auth = false;
    assert_eq!(build(o).unwrap_err(), ConfigError::NoAuth);
}

fn with_issuer(issuer: &str) -> WrapOptions {
    let mut o = options();
    o.no_auth = false;
    o.auth.issuers = vec![issuer.into()];
    o
}

#[test]
fn an_issuer_protects_the_endpoint_and_its_legacy_twin() {
    let c = build(with_issuer("https://as.example.com")).unwrap();
    let a = c.auth.unwrap();
    assert_eq!(a.resources.streamable.id, "http://127.0.0.1:8080/mcp");
    assert_eq!(a.resources.legacy.unwrap().id, "http://127.0.0.1:8080/sse");
    // The origin is an audience only on request.
    assert!(a.resources.origin.is_none());
    assert_eq!(a.issuers[0].issuer, "https://as.example.com");
    assert!(a.issuers[0].jwks_uri.is_none());
    assert_eq!(a.resource_name, "MCP server (node)");
}

#[test]
fn behind_a_path_prefix_the_origin_is_not_claimed() {
    let mut o = with_issuer("https://as.example.com");
    o.public_url = Some("https://tools.example.com/team/mcp".into());
    let a = build(o).unwrap().auth.unwrap();
    assert_eq!(
        a.resources.streamable.id,
        "https://tools.example.com/team/mcp"
    );
    assert_eq!(
        a.resources.legacy.unwrap().id,
        "https://tools.example.com/team/sse"
    );
    assert!(a.resources.origin.is_none());
}

#[test]
fn principals_hold_part_of_the_sessions_when_there_are_principals() {
    let mut o = with_issuer("https://as.example.com");
    o.max_sessions = 64;
    o.session_rate_per_principal = values::RateSetting(Some(SessionRate::parse("30/min").unwrap()));
    let limits = build(o.clone()).unwrap().sessions.per_principal.unwrap();
    assert_eq!(limits.max_sessions, 16);
    assert_eq!(limits.rate, Some(SessionRate::parse("30/min").unwrap()));
    for (max, per) in [(4, 2), (5, 3), (2, 1), (1, 1), (1000, 16)] {
        o.max_sessions = max;
        let got = build(o.clone()).unwrap().sessions.per_principal.unwrap();
        assert_eq!(got.max_sessions, per, "--max-sessions {max}");
    }
    o.max_sessions_per_principal = Some(40);
    o.session_rate_per_principal = values::RateSetting(None);
    let limits = build(o).unwrap().sessions.per_principal.unwrap();
    assert_eq!((limits.max_sessions, limits.rate), (40, None));
    // Without authentication every caller is the one anonymous principal.
    let mut anonymous = options();
    anonymous.max_sessions_per_principal = Some(2);
    assert_eq!(build(anonymous).unwrap().sessions.per_principal, None);
}

#[test]
fn the_origin_audience_is_opt_in_and_refused_behind_a_prefix() {
    let mut o = with_issuer("https://as.example.com");
    o.auth.accept_origin_audience = true;
    let a = build(o.clone()).unwrap().auth.unwrap();
    assert_eq!(a.resources.origin.unwrap().id, "http://127.0.0.1:8080");
    o.public_url = Some("https://tools.example.com/team/mcp".into());
    assert_eq!(
        build(o).unwrap_err(),
        ConfigError::OriginAudienceBehindPrefix
    );
}

#[test]
fn token_exchange_needs_an_issuer_and_client_credentials() {
    let exchange = ("API_TOKEN".to_owned(), "https://api.example/mcp".to_owned());
    let mut o = with_issuer("http://127.0.0.1:9000");
    o.sandbox.env_exchange = vec![exchange.clone()];
    let Err(ConfigError::Env(e)) = build(o.clone()) else {
        panic!("accepted without credentials")
    };
    assert!(e.contains("--exchange-client-id"), "{e}");
    o.sandbox.exchange_client_id = Some("sidecar".into());
    o.sandbox.exchange_client_secret_file = Some(file_with("exchange-secret", "s3cret-client\n"));
    let c = build(o.clone()).unwrap();
    assert!(c.sessions.env.injects_secrets());
    assert_eq!(
        c.exchange.as_ref().unwrap().client_secret.expose(),
        b"s3cret-client"
    );
    // The client secret never shows in a Debug rendering of the configuration.
    assert!(!format!("{c:?}").contains("s3cret-client"));
    // One explicit token endpoint cannot stand for several issuers.
    let mut several = o.clone();
    several.auth.issuers.push("http://127.0.0.1:9001".into());
    assert!(build(several.clone()).is_ok());
    several.sandbox.exchange_token_endpoint = Some("http://127.0.0.1:9000/token".into());
    let r = build(several);
    assert!(
        matches!(&r, Err(ConfigError::Env(e)) if e.contains("exactly one --issuer")),
        "{r:?}"
    );
    // The development issuer has no token endpoint to exchange at.
    let mut o = options();
    o.no_auth = false;
    o.auth.dev = true;
    o.sandbox.env_exchange = vec![exchange];
    o.sandbox.exchange_client_id = Some("sidecar".into());
    o.sandbox.exchange_client_secret_file = Some(file_with("exchange-secret-x", "x"));
    let r = build(o);
    assert!(
        matches!(&r, Err(ConfigError::Env(e)) if e.contains("--issuer")),
        "{r:?}"
    );
}

#[test]
fn issuers_need_https_except_on_loopback() {
    assert!(build(with_issuer("http://127.0.0.1:9000")).is_ok());
    assert!(build(with_issuer("http://localhost:9000/realms/x")).is_ok());
    assert!(matches!(
        build(with_issuer("http://as.example.com")),
        Err(ConfigError::InsecureUrl {
            flag: "--issuer",
            ..
        })
    ));
    assert!(matches!(
        build(with_issuer("as.example.com")),
        Err(ConfigError::BadUrl { .. })
    ));
    let mut o = with_issuer("https://as.example.com");
    o.auth.jwks_uri = Some("http://keys.example.com/jwks".into());
    assert!(matches!(
        build(o),
        Err(ConfigError::InsecureUrl {
            flag: "--jwks-uri",
            ..
        })
    ));
}

#[test]
fn jwks_uri_belongs_to_exactly_one_issuer() {
    let mut o = with_issuer("https://as.example.com");
    o.auth.jwks_uri = Some("https://as.example.com/keys".into());
    let a = build(o).unwrap().auth.unwrap();
    assert_eq!(
        a.issuers[0].jwks_uri.as_ref().unwrap().as_str(),
        "https://as.example.com/keys"
    );
    let mut o = options();
    o.no_auth = false;
    o.auth.jwks_uri = Some("https://as.example.com/keys".into());
    assert_eq!(build(o).unwrap_err(), ConfigError::JwksUriNeedsOneIssuer);
    let mut o = with_issuer("https://a.example");
    o.auth.issuers.push("https://b.example".into());
    o.auth.jwks_uri = Some("https://a.example/keys".into());
    assert_eq!(build(o).unwrap_err(), ConfigError::JwksUriNeedsOneIssuer);
}

#[test]
fn no_auth_excludes_authentication_flags() {
    let mut o = with_issuer("https://as.example.com");
    o.no_auth = true;
    assert_eq!(
        build(o).unwrap_err(),
        ConfigError::NoAuthWithAuth("--issuer")
    );
    let mut o = options();
    o.auth.dev = true;
    assert_eq!(build(o).unwrap_err(), ConfigError::NoAuthWithAuth("--dev"));
    // Real authentication may listen anywhere.
    let mut o = with_issuer("https://as.example.com");
    o.listen = "0.0.0.0:8080".parse().unwrap();
    o.public_url = Some("https://tools.example.com/mcp".into());
    assert!(build(o).is_ok());
}

#[test]
fn dev_issuer_is_our_base_url_and_loopback_or_https_only() {
    let mut o = options();
    o.no_auth = false;
    o.auth.dev = true;
    let a = build(o.clone()).unwrap().auth.unwrap();
    assert_eq!(a.local.unwrap().issuer, "http://127.0.0.1:8080");
    o.listen = "0.0.0.0:8080".parse().unwrap();
    assert!(matches!(
        build(o.clone()),
        Err(ConfigError::LocalIssuerInsecure(_))
    ));
    o.public_url = Some("https://tools.example.com/team/mcp".into());
    let a = build(o).unwrap().auth.unwrap();
    assert_eq!(a.local.unwrap().issuer, "https://tools.example.com/team");
    let mut o = with_issuer("https://as.example.com");
    o.auth.dev_key_file = Some("/tmp/k".into());
    assert_eq!(build(o).unwrap_err(), ConfigError::DevKeyWithoutDev);
}

#[test]
fn scopes_are_validated_and_advertised() {
    let mut o = with_issuer("https://as.example.com");
    o.auth.required_scopes = vec!["mcp:tools".into()];
    o.auth.scope_implies = vec!["mcp:admin=mcp:tools mcp:read".into()];
    let a = build(o.clone()).unwrap().auth.unwrap();
    assert_eq!(a.required_scopes, vec!["mcp:tools"]);
    assert_eq!(
        a.scopes_supported,
        vec!["mcp:tools", "mcp:admin", "mcp:read"]
    );
    assert!(
        a.scope_rules
            .expand(["mcp:admin".to_owned()])
            .contains("mcp:read")
    );
    o.auth.scopes_supported = vec!["a b".into()];
    assert_eq!(
        build(o.clone()).unwrap().auth.unwrap().scopes_supported,
        vec!["a", "b"]
    );
    o.auth.required_scopes = vec!["offline_access".into()];
    assert_eq!(
        build(o.clone()).unwrap_err(),
        ConfigError::OfflineAccess("--required-scope")
    );
    o.auth.required_scopes = vec!["bad\"scope".into()];
    assert!(matches!(
        build(o.clone()),
        Err(ConfigError::BadScope { .. })
    ));
    o.auth.required_scopes = vec![];
    o.auth.scope_implies = vec!["nothing".into()];
    assert!(matches!(build(o), Err(ConfigError::BadImplication(_))));
}

#[test]
fn introspection_needs_credentials_and_an_issuer() {
    let mut o = with_issuer("https://as.example.com");
    o.auth.introspection_client_id = Some("rs".into());
    assert_eq!(
        build(o.clone()).unwrap_err(),
        ConfigError::IntrospectionCredentials
    );
    o.auth.introspection_client_secret_file = Some(file_with("introspection-secret", "s\n"));
    let a = build(o.clone()).unwrap().auth.unwrap();
    let i = a.introspection.unwrap();
    assert_eq!(i.client_secret.expose(), b"s");
    assert!(
        !format!("{i:?}").contains("\"s\""),
        "secrets are not printed"
    );
    o.auth.introspection_endpoint = Some("http://as.example.com/introspect".into());
    assert!(matches!(build(o), Err(ConfigError::InsecureUrl { .. })));
}

#[test]
fn hmac_secrets_must_be_long() {
    let mut o = with_issuer("https://as.example.com");
    o.auth.hmac_secret_file = Some(file_with("hmac-short", "short\n"));
    assert_eq!(
        build(o.clone()).unwrap_err(),
        ConfigError::HmacSecretTooShort
    );
    o.auth.hmac_secret_file = Some(file_with("hmac-long", &format!("{}\n", "k".repeat(32))));
    let a = build(o).unwrap().auth.unwrap();
    assert_eq!(a.hmac_secret.unwrap().expose(), "k".repeat(32).as_bytes());
}

#[test]
fn invalid_values_are_refused_precisely() {
    let mut o = options();
    o.path = "mcp".into();
    assert!(matches!(
        build(o),
        Err(ConfigError::BadPath { flag: "--path", .. })
    ));
    let mut o = options();
    o.public_url = Some("ftp://x/mcp".into());
    assert!(matches!(build(o), Err(ConfigError::BadPublicUrl(_))));
    let mut o = options();
    o.allowed_origins = vec!["https://ok.example/path".into()];
    assert!(matches!(build(o), Err(ConfigError::BadOrigin(_))));
    let mut o = options();
    o.replica_id = Some("Bad_ID".into());
    assert!(matches!(build(o), Err(ConfigError::BadReplicaId(_))));
    let mut o = options();
    o.max_sessions = 0;
    assert_eq!(build(o).unwrap_err(), ConfigError::Zero("--max-sessions"));
    let mut o = options();
    o.max_sessions_per_principal = Some(0);
    assert_eq!(
        build(o).unwrap_err(),
        ConfigError::Zero("--max-sessions-per-principal")
    );
    let mut o = options();
    o.sse_path = "/mcp".into();
    assert!(matches!(build(o), Err(ConfigError::PathClash(..))));
    let mut o = options();
    o.admin_listen = Some(o.listen);
    assert!(matches!(build(o), Err(ConfigError::AdminOnMcpPort(_))));
    let mut o = options();
    o.command = vec![];
    assert_eq!(build(o).unwrap_err(), ConfigError::NoCommand);
}

#[test]
fn an_empty_replica_id_means_no_prefix() {
    let mut o = options();
    o.replica_id = Some(String::new());
    assert_eq!(build(o).unwrap().sessions.replica_id, None);
    let mut o = options();
    o.replica_id = Some("mcp-warden-1".into());
    assert_eq!(
        build(o).unwrap().sessions.replica_id.as_deref(),
        Some("mcp-warden-1")
    );
}

#[test]
fn public_url_sets_the_legacy_prefix_and_an_allowed_origin() {
    let mut o = options();
    o.public_url = Some("https://tools.example.com/team/mcp".into());
    let c = build(o).unwrap();
    assert_eq!(c.http.public_prefix, "/team");
    assert!(
        c.http
            .allowed_origins
            .contains(&"https://tools.example.com".to_owned())
    );
}

#[test]
fn spares_need_an_environment_no_caller_changes_and_room() {
    let mut o = options();
    o.spare = 2;
    assert_eq!(build(o).unwrap().sessions.spares, 2);
    let mut o = options_from(&["--dev", "--", "node", "server.js"]);
    o.spare = 1;
    o.sandbox.env_claim = vec![("USER".into(), "sub".into())];
    assert_eq!(
        build(o).unwrap_err(),
        ConfigError::SpareWithCallerEnv("--env-claim")
    );
    let mut o = options();
    o.spare = 5;
    o.max_sessions = 4;
    assert_eq!(
        build(o).unwrap_err(),
        ConfigError::TooManySpares { spare: 5, max: 4 }
    );
}
