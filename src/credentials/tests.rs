//! Environments built from plans: names, sources, files, claims, exchanges, secrets.

use super::*;
use crate::auth::Principal;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

fn principal(sub: &str) -> Principal {
    let mut p = Principal::new("https://as.example", sub);
    p.client_id = Some("app".into());
    p.scopes = BTreeSet::from(["mcp".to_owned(), "read".to_owned()]);
    p.claims = std::sync::Arc::new(
        serde_json::json!({
            "iss": "https://as.example",
            "sub": sub,
            "email": format!("{sub}@example.com"),
            "groups": ["dev", "ops"],
            "scope": "mcp read",
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    );
    p
}

fn sidecar_env(name: &str) -> Option<OsString> {
    match name {
        "PATH" => Some("/usr/bin".into()),
        "LANG" => Some("C.UTF-8".into()),
        "SIDECAR_SECRET" => Some("hunter2".into()),
        "EXTRA" => Some("x".into()),
        _ => None,
    }
}

async fn resolve(plan: &EnvPlan, p: &Principal) -> Result<SessionEnv, EnvError> {
    plan.resolve(SessionContext {
        principal: p,
        subject_token: None,
    })
    .await
}

#[tokio::test]
async fn only_the_allow_list_passes() {
    let plan = EnvPlan::new(&["EXTRA".into()], &sidecar_env, vec![], None).unwrap();
    let env = resolve(&plan, &principal("a")).await.unwrap();
    let names: Vec<_> = env.vars().map(|(k, _)| k.to_owned()).collect();
    assert_eq!(names, ["PATH", "LANG", "EXTRA"]);
    assert!(env.get("SIDECAR_SECRET").is_none());
    assert!(env.secrets().is_empty());
}

#[tokio::test]
async fn files_are_secret_and_read_at_each_resolve() {
    let dir = std::env::temp_dir().join(format!("mcpw-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("key");
    std::fs::write(&path, "first\n").unwrap();
    let plan = EnvPlan::new(
        &[],
        &sidecar_env,
        vec![
            EnvSource::File {
                name: "API_KEY".into(),
                path: path.clone(),
            },
            EnvSource::Value {
                name: "MODE".into(),
                value: "prod".into(),
            },
        ],
        None,
    )
    .unwrap();
    let env = resolve(&plan, &principal("a")).await.unwrap();
    assert_eq!(env.get("API_KEY").unwrap(), "first");
    assert_eq!(env.get("MODE").unwrap(), "prod");
    assert!(env.secrets().found_in(b"xx first yy"));
    assert!(!env.secrets().found_in(b"prod"));
    assert!(!format!("{env:?}").contains("first"));
    std::fs::write(&path, "second").unwrap();
    let env = resolve(&plan, &principal("a")).await.unwrap();
    assert_eq!(env.get("API_KEY").unwrap(), "second");
    std::fs::remove_file(&path).unwrap();
    let e = resolve(&plan, &principal("a")).await.unwrap_err();
    assert!(matches!(e, EnvError::ReadFile { .. }));
    assert!(!e.to_string().contains("second"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn claims_follow_the_principal() {
    let plan = EnvPlan::new(
        &[],
        &sidecar_env,
        vec![
            EnvSource::Claim {
                name: "USER_ID".into(),
                claim: "sub".into(),
            },
            EnvSource::Claim {
                name: "SCOPES".into(),
                claim: "scope".into(),
            },
            EnvSource::Claim {
                name: "EMAIL".into(),
                claim: "email".into(),
            },
            EnvSource::Claim {
                name: "GROUPS".into(),
                claim: "groups".into(),
            },
        ],
        None,
    )
    .unwrap();
    let a = resolve(&plan, &principal("alice")).await.unwrap();
    let b = resolve(&plan, &principal("bob")).await.unwrap();
    assert_eq!(a.get("USER_ID").unwrap(), "alice");
    assert_eq!(b.get("USER_ID").unwrap(), "bob");
    assert_eq!(a.get("SCOPES").unwrap(), "mcp read");
    assert_eq!(a.get("EMAIL").unwrap(), "alice@example.com");
    assert_eq!(b.get("EMAIL").unwrap(), "bob@example.com");
    assert_eq!(a.get("GROUPS").unwrap(), "dev,ops");
    // Claims are not secrets (they describe the caller), so nothing is registered.
    assert!(a.secrets().is_empty());
    let plan = EnvPlan::new(
        &[],
        &sidecar_env,
        vec![EnvSource::Claim {
            name: "X".into(),
            claim: "no_such_claim".into(),
        }],
        None,
    )
    .unwrap();
    assert!(matches!(
        resolve(&plan, &principal("a")).await,
        Err(EnvError::MissingClaim { .. })
    ));
}

#[test]
fn invalid_plans_are_refused() {
    let one = |s: EnvSource| EnvPlan::new(&[], &sidecar_env, vec![s], None).map(|_| ());
    let value = |n: &str| EnvSource::Value {
        name: n.into(),
        value: "v".into(),
    };
    assert!(matches!(one(value("1X")), Err(EnvError::BadName(_))));
    assert!(matches!(one(value("HOME")), Err(EnvError::Reserved(_))));
    assert!(matches!(one(value("TMPDIR")), Err(EnvError::Reserved(_))));
    assert!(matches!(
        EnvPlan::new(&[], &sidecar_env, vec![value("A"), value("A")], None),
        Err(EnvError::Duplicate(_))
    ));
    let exchange = EnvSource::parse_exchange("TOKEN", "https://api.example,scope=a b").unwrap();
    assert_eq!(
        exchange,
        EnvSource::Exchange {
            name: "TOKEN".into(),
            audience: "https://api.example".into(),
            scopes: vec!["a".into(), "b".into()]
        }
    );
    assert!(matches!(
        one(exchange),
        Err(EnvError::ExchangeUnavailable(_))
    ));
    assert!(EnvSource::parse_exchange("T", "").is_err());
    assert!(EnvSource::parse_exchange("T", "aud,scpe=x").is_err());
    assert!(matches!(
        EnvPlan::new(&["HOME".into()], &sidecar_env, vec![], None),
        Err(EnvError::Reserved(_))
    ));
}

#[test]
fn loader_variables_need_an_explicit_allowance() {
    let value = |n: &str| EnvSource::Value {
        name: n.into(),
        value: "/tmp/x.so".into(),
    };
    for name in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
    ] {
        let e = EnvPlan::new(&[], &sidecar_env, vec![value(name)], None).unwrap_err();
        assert!(
            matches!(&e, EnvError::LoaderVariable(n) if n == name),
            "{e}"
        );
        assert!(e.to_string().contains("--env-allow-loader"), "{e}");
        assert!(
            !e.to_string().contains("/tmp/x.so"),
            "no value in errors: {e}"
        );
        assert!(matches!(
            EnvPlan::new(&[name.into()], &sidecar_env, vec![], None),
            Err(EnvError::LoaderVariable(_))
        ));
    }
    let allowed = ["LD_LIBRARY_PATH".to_owned()];
    assert!(
        EnvPlan::allowing_loader(
            &[],
            &allowed,
            &sidecar_env,
            vec![value("LD_LIBRARY_PATH")],
            false
        )
        .is_ok()
    );
    // Allowing one does not allow the others.
    assert!(
        EnvPlan::allowing_loader(
            &[],
            &allowed,
            &sidecar_env,
            vec![value("LD_PRELOAD")],
            false
        )
        .is_err()
    );
    assert!(matches!(
        EnvPlan::allowing_loader(&[], &["PATH".into()], &sidecar_env, vec![], false),
        Err(EnvError::NotLoaderVariable(_))
    ));
    // Look-alikes are ordinary variables.
    assert!(!is_loader_variable("OLD_PRELOAD") && !is_loader_variable("LANG"));
}

#[test]
fn claim_values_become_text() {
    use serde_json::json;
    assert_eq!(claim_text(&json!("a@b.example")).unwrap(), "a@b.example");
    assert_eq!(claim_text(&json!(["admins", "dev"])).unwrap(), "admins,dev");
    assert_eq!(claim_text(&json!(42)).unwrap(), "42");
    assert_eq!(claim_text(&json!({"k": 1})).unwrap(), "{\"k\":1}");
    assert_eq!(claim_text(&json!(null)), None);
}

#[derive(Debug)]
struct FakeExchanger;

impl TokenExchanger for FakeExchanger {
    fn exchange<'a>(&'a self, r: ExchangeRequest<'a>) -> ExchangeFuture<'a> {
        Box::pin(async move {
            if r.audience == "echo" {
                return Ok(ExchangedToken {
                    access_token: r.subject_token.clone(),
                    expires_in: None,
                });
            }
            Ok(ExchangedToken {
                access_token: Secret::new(format!("for-{}", r.audience)),
                expires_in: Some(Duration::from_secs(60)),
            })
        })
    }
}

#[tokio::test]
async fn exchanged_tokens_are_secret_and_expire() {
    let plan = EnvPlan::new(
        &[],
        &sidecar_env,
        vec![EnvSource::parse_exchange("API_TOKEN", "api").unwrap()],
        Some(Arc::new(FakeExchanger)),
    )
    .unwrap();
    let caller = Secret::new("caller-token");
    let p = principal("a");
    let ctx = SessionContext {
        principal: &p,
        subject_token: Some(&caller),
    };
    let env = plan.resolve(ctx).await.unwrap();
    assert_eq!(env.get("API_TOKEN").unwrap(), "for-api");
    assert!(env.secrets().found_in(b"for-api"));
    assert!(env.expires_at().is_some());
    assert!(env.vars().all(|(_, v)| v.as_bytes() != b"caller-token"));
    // Without the caller's token there is nothing to exchange.
    assert!(resolve(&plan, &p).await.is_err());
    // An issuer echoing the caller's token back is refused.
    let echo = EnvPlan::new(
        &[],
        &sidecar_env,
        vec![EnvSource::parse_exchange("T", "echo").unwrap()],
        Some(Arc::new(FakeExchanger)),
    )
    .unwrap();
    assert!(echo.resolve(ctx).await.is_err());
}

/// Connection tokens of two users at one issuer.
#[derive(Debug)]
struct TwoUsers;

impl ConnectionTokens for TwoUsers {
    fn serves(&self, issuer: &str) -> bool {
        issuer == "https://as.example"
    }
    fn access_token<'a>(&'a self, user: &'a str, name: &'a str) -> ConnectionFuture<'a> {
        Box::pin(async move {
            let token = match (user, name) {
                ("alice", "github") => "gho_alice",
                ("bob", "github") => "gho_bob",
                _ => return Ok(None),
            };
            Ok(Some(ConnectionToken {
                token: Secret::new(token),
                expires_at: (user == "bob").then_some(4_000_000_000),
                granted_at: 7,
            }))
        })
    }
    fn still_granted<'a>(&'a self, _given: &'a ConnectionRef) -> GrantedFuture<'a> {
        Box::pin(async { true })
    }
}

fn connection(name: &str, required: bool) -> EnvSource {
    EnvSource::Connection {
        name: name.into(),
        connection: "github".into(),
        required,
        file: required.then(|| "gh-token".into()),
    }
}

#[tokio::test]
async fn each_user_gets_their_own_connection_token_as_a_secret() {
    let mut plan = EnvPlan::new(&[], &sidecar_env, vec![connection("GH", true)], None).unwrap();
    assert!(plan.injects_secrets());
    // Without the connections attached nothing is known: a required one refuses.
    assert!(matches!(
        resolve(&plan, &principal("alice")).await,
        Err(EnvError::ConnectionNeeded { connection }) if connection == "github"
    ));
    plan.attach_connections(Arc::new(TwoUsers));
    for (user, token) in [("alice", "gho_alice"), ("bob", "gho_bob")] {
        let env = resolve(&plan, &principal(user)).await.unwrap();
        assert_eq!(env.get("GH").unwrap().as_bytes(), token.as_bytes());
        assert!(env.secrets().found_in(format!("x{token}x").as_bytes()));
        // The session knows which grant it was given, and ends when the token expires.
        assert_eq!(
            env.connections(),
            [ConnectionRef {
                user: user.into(),
                name: "github".into(),
                granted_at: 7
            }]
        );
        assert_eq!(
            env.expires_at(),
            (user == "bob").then(|| std::time::UNIX_EPOCH + Duration::from_secs(4_000_000_000))
        );
    }
    assert!(matches!(
        resolve(&plan, &principal("carol")).await,
        Err(EnvError::ConnectionNeeded { .. })
    ));
    // Principals of another issuer are not our users, whatever their subject: no link could
    // connect them, so they are not sent to one.
    let mut foreign = principal("alice");
    foreign.issuer = "https://other.example".into();
    assert!(matches!(
        resolve(&plan, &foreign).await,
        Err(EnvError::Connection { .. })
    ));
    // Optional: the variable is left out.
    let mut optional =
        EnvPlan::new(&[], &sidecar_env, vec![connection("GH", false)], None).unwrap();
    optional.attach_connections(Arc::new(TwoUsers));
    let env = resolve(&optional, &principal("carol")).await.unwrap();
    assert!(env.get("GH").is_none());
}
