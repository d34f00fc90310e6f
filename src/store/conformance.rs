//! The behaviour every store must have, as one test run against each backend (SQLite in
//! the unit tests, PostgreSQL in the integration suite). Panics on the first difference.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::*;

fn grant(client: &str, user: &str) -> Grant {
    Grant {
        client_id: client.into(),
        user_id: user.into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        resource: "https://tools.example/mcp".into(),
        scopes: vec!["mcp:tools".into()],
        code_challenge: "c".repeat(43),
        may_refresh: true,
        auth_time: 100,
    }
}

/// Runs every check against `store`, which must be empty.
pub async fn run(store: &Store) {
    let now = 1_000_000;

    // Clients.
    let c = ClientRecord {
        client_id: "mcpw_a".into(),
        metadata: json!({"client_name": "A", "redirect_uris": ["http://127.0.0.1/cb"]}),
        secret_hash: None,
        registered_at: now,
    };
    store.put_client(&c).await.unwrap();
    assert_eq!(store.client("mcpw_a").await.unwrap(), Some(c.clone()));
    assert_eq!(store.client("mcpw_b").await.unwrap(), None);
    assert!(store.put_client(&c).await.is_err(), "client ids are unique");
    assert_eq!(store.count_clients().await.unwrap(), 1);

    // CIMD cache keeps the first sighting across refreshes.
    let mut doc = CimdRecord {
        url: "https://app.example/client.json".into(),
        document: json!({"client_id": "https://app.example/client.json"}),
        fingerprint: "f1".into(),
        fetched_at: now,
        fresh_until: now + 60,
        first_seen_at: now,
    };
    store.cimd_put(&doc).await.unwrap();
    doc.fingerprint = "f2".into();
    doc.fetched_at = now + 100;
    doc.first_seen_at = now + 100;
    store.cimd_put(&doc).await.unwrap();
    let got = store.cimd_get(&doc.url).await.unwrap().unwrap();
    assert_eq!((got.fingerprint.as_str(), got.first_seen_at), ("f2", now));

    // Users: one row per (idp, sub), claims follow the last sign-in.
    let mut claims = serde_json::Map::new();
    claims.insert("email".into(), json!("a@corp.example"));
    let u1 = store
        .upsert_user("https://idp", "alice", &claims, now)
        .await
        .unwrap();
    claims.insert("email".into(), json!("alice@corp.example"));
    let u2 = store
        .upsert_user("https://idp", "alice", &claims, now + 1)
        .await
        .unwrap();
    assert_eq!(u1, u2);
    let other = store
        .upsert_user("https://other", "alice", &claims, now)
        .await
        .unwrap();
    assert_ne!(
        u1, other,
        "the same sub at another provider is another user"
    );
    let user = store.user(&u1).await.unwrap().unwrap();
    assert_eq!(user.claims["email"], "alice@corp.example");
    assert_eq!(
        (user.idp.as_str(), user.sub.as_str()),
        ("https://idp", "alice")
    );

    // Flows: compare-and-set steps, single claim by upstream state, expiry.
    let flow = FlowRecord {
        flow_hash: "fh".into(),
        kind: "authorize".into(),
        step: FlowStep::Upstream,
        browser_hash: "bh".into(),
        csrf_hash: None,
        upstream_state_hash: Some("sh".into()),
        upstream_secrets: Some("{}".into()),
        request: json!({"client_id": "mcpw_a"}),
        user_id: None,
        created_at: now,
        expires_at: now + 600,
    };
    store.put_flow(&flow).await.unwrap();
    assert_eq!(store.flow("fh", now).await.unwrap().unwrap(), flow);
    assert_eq!(store.flow("fh", now + 600).await.unwrap(), None, "expired");
    assert!(
        store
            .claim_flow_by_upstream_state("sh", now + 600)
            .await
            .unwrap()
            .is_none()
    );
    let claimed = store
        .claim_flow_by_upstream_state("sh", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        claimed.step,
        FlowStep::Callback,
        "now handled by the callback"
    );
    assert!(
        store
            .claim_flow_by_upstream_state("sh", now)
            .await
            .unwrap()
            .is_none(),
        "a state is claimed once"
    );
    assert_eq!(
        store.flow("fh", now).await.unwrap().unwrap().step,
        FlowStep::Callback
    );
    assert!(
        !store
            .advance_flow(
                "fh",
                FlowStep::Upstream,
                FlowStep::Consent,
                Some(&u1),
                Some("c1"),
                None,
                now
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .advance_flow(
                "fh",
                FlowStep::Callback,
                FlowStep::Consent,
                Some(&u1),
                Some("c1"),
                None,
                now
            )
            .await
            .unwrap()
    );
    let f = store.flow("fh", now).await.unwrap().unwrap();
    assert_eq!(
        (f.user_id.as_deref(), f.csrf_hash.as_deref()),
        (Some(u1.as_str()), Some("c1"))
    );
    assert!(
        store
            .set_flow_csrf("fh", FlowStep::Consent, "c2")
            .await
            .unwrap()
    );
    assert!(!store.finish_flow("fh", FlowStep::Login).await.unwrap());
    assert!(store.finish_flow("fh", FlowStep::Consent).await.unwrap());
    assert!(
        !store.finish_flow("fh", FlowStep::Consent).await.unwrap(),
        "once"
    );

    // Codes: one redemption, then Used with the family bound to it.
    let code = CodeRecord {
        code_hash: "code1".into(),
        grant: grant("mcpw_a", &u1),
        created_at: now,
        expires_at: now + 60,
    };
    store.put_code(&code).await.unwrap();
    assert_eq!(
        store.redeem_code("code1", now + 1).await.unwrap(),
        Redeemed::Fresh {
            grant: code.grant.clone(),
            expired: false
        }
    );
    assert_eq!(
        store.redeem_code("code1", now + 2).await.unwrap(),
        Redeemed::Used { family: None }
    );
    store.bind_code_family("code1", "fam1").await.unwrap();
    assert_eq!(
        store.redeem_code("code1", now + 2).await.unwrap(),
        Redeemed::Used {
            family: Some("fam1".into())
        }
    );
    assert_eq!(
        store.redeem_code("nope", now).await.unwrap(),
        Redeemed::Unknown
    );
    let late = CodeRecord {
        code_hash: "code2".into(),
        ..code.clone()
    };
    store.put_code(&late).await.unwrap();
    assert!(matches!(
        store.redeem_code("code2", now + 60).await.unwrap(),
        Redeemed::Fresh { expired: true, .. }
    ));
    assert!(matches!(
        store.redeem_code("code2", now + 61).await.unwrap(),
        Redeemed::Used { .. }
    ));

    // Concurrent redemptions: exactly one winner.
    let race = CodeRecord {
        code_hash: "code3".into(),
        ..code.clone()
    };
    store.put_code(&race).await.unwrap();
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.redeem_code("code3", now + 1).await.unwrap() })
        })
        .collect();
    let mut fresh = 0;
    for a in attempts {
        if matches!(a.await.unwrap(), Redeemed::Fresh { .. }) {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);

    // Refresh families: rotation, reuse revokes, idle and absolute expiry.
    let fam = FamilyRecord {
        family_id: "fam1".into(),
        grant: grant("mcpw_a", &u1),
        created_at: now,
        expires_at: now + 1000,
        revoked_at: None,
    };
    store.create_family(&fam, "rt1", now + 100).await.unwrap();
    assert!(matches!(
        store.rotate_refresh("rt1", "rt2", now + 10, now + 110).await.unwrap(),
        Rotated::Ok(f) if f.family_id == "fam1"
    ));
    assert_eq!(
        store
            .rotate_refresh("rt1", "rt3", now + 11, now + 111)
            .await
            .unwrap(),
        Rotated::Reused {
            family: "fam1".into()
        }
    );
    assert_eq!(
        store.family_revoke_reason("fam1").await.unwrap().as_deref(),
        Some("reuse")
    );
    assert_eq!(
        store
            .rotate_refresh("rt2", "rt4", now + 12, now + 112)
            .await
            .unwrap(),
        Rotated::Revoked,
        "the successor dies with its family"
    );
    assert_eq!(
        store.rotate_refresh("zz", "rt5", now, now).await.unwrap(),
        Rotated::Unknown
    );
    let fam2 = FamilyRecord {
        family_id: "fam2".into(),
        ..fam.clone()
    };
    store.create_family(&fam2, "rt10", now + 100).await.unwrap();
    assert_eq!(
        store
            .rotate_refresh("rt10", "rt11", now + 100, now + 200)
            .await
            .unwrap(),
        Rotated::Expired,
        "idle too long"
    );
    let fam3 = FamilyRecord {
        family_id: "fam3".into(),
        ..fam.clone()
    };
    store
        .create_family(&fam3, "rt20", now + 5000)
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_refresh("rt20", "rt21", now + 1000, now + 1100)
            .await
            .unwrap(),
        Rotated::Expired,
        "family over"
    );
    assert_eq!(
        store
            .family_of_token("rt20")
            .await
            .unwrap()
            .unwrap()
            .family_id,
        "fam3"
    );
    // Concurrent presentations of one token: one winner, and the family is revoked.
    let fam4 = FamilyRecord {
        family_id: "fam4".into(),
        ..fam.clone()
    };
    store.create_family(&fam4, "rt30", now + 100).await.unwrap();
    let attempts: Vec<_> = (0..16)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.rotate_refresh("rt30", &format!("rt3x{i}"), now + 1, now + 101)
                    .await
                    .unwrap()
            })
        })
        .collect();
    // One presentation rotates the token; every other one is a reuse. The one that
    // rotated may still find its family revoked by a reuse that came first.
    let mut rotated = 0;
    let mut reused = 0;
    for a in attempts {
        match a.await.unwrap() {
            Rotated::Ok(_) | Rotated::Revoked => rotated += 1,
            Rotated::Reused { .. } => reused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((rotated, reused), (1, 15));
    assert!(store.family_revoke_reason("fam4").await.unwrap().is_some());

    // Consents.
    assert!(!store.anyone_consented("mcpw_a").await.unwrap());
    let consent = ConsentRecord {
        user_id: u1.clone(),
        client_id: "mcpw_a".into(),
        resource: "https://tools.example/mcp".into(),
        scopes: vec!["mcp:tools".into()],
        client_fingerprint: "fp".into(),
        granted_at: now,
        expires_at: now + 100,
    };
    store.put_consent(&consent).await.unwrap();
    assert_eq!(
        store
            .consent(&u1, "mcpw_a", "https://tools.example/mcp", now)
            .await
            .unwrap(),
        Some(consent.clone())
    );
    assert!(store.anyone_consented("mcpw_a").await.unwrap());
    assert_eq!(
        store
            .consent(&u1, "mcpw_a", "https://tools.example/mcp", now + 100)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .consent(&other, "mcpw_a", "https://tools.example/mcp", now)
            .await
            .unwrap(),
        None
    );

    // Janitor: expired flows and long-used codes go; live ones stay.
    store
        .put_flow(&FlowRecord {
            flow_hash: "old".into(),
            upstream_state_hash: None,
            ..flow.clone()
        })
        .await
        .unwrap();
    let purged = store.purge_expired(now + 10_000).await.unwrap();
    assert!(purged.flows >= 1 && purged.codes >= 3, "{purged:?}");
    assert_eq!(
        store.redeem_code("code1", now).await.unwrap(),
        Redeemed::Unknown
    );

    // Meta.
    assert_eq!(store.meta("upstream").await.unwrap(), None);
    store.set_meta("upstream", "a").await.unwrap();
    store.set_meta("upstream", "b").await.unwrap();
    assert_eq!(store.meta("upstream").await.unwrap().as_deref(), Some("b"));

    // Connections: one per user and name, replaced by a new consent; a refresh replaces the
    // tokens only when they are still the ones it read; users never see each other's.
    let conn = ConnectionRecord {
        user_id: "u1".into(),
        name: "github".into(),
        sealed: "sealed-1".into(),
        scopes: vec!["repo".into()],
        state: ConnectionState::Active,
        granted_at: now,
        expires_at: Some(now + 3600),
        last_used_at: None,
    };
    store.put_connection(&conn).await.unwrap();
    store
        .put_connection(&ConnectionRecord {
            user_id: "u2".into(),
            ..conn.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        store.connection("u1", "github").await.unwrap(),
        Some(conn.clone())
    );
    assert_eq!(store.connection("u1", "slack").await.unwrap(), None);
    let refreshed = ConnectionRecord {
        sealed: "sealed-2".into(),
        expires_at: Some(now + 7200),
        ..conn.clone()
    };
    assert!(
        store
            .refresh_connection(&refreshed, "sealed-1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .refresh_connection(&refreshed, "sealed-1")
            .await
            .unwrap(),
        "a refresh of tokens already replaced"
    );
    store
        .touch_connection("u1", "github", now + 5)
        .await
        .unwrap();
    assert!(
        !store
            .set_connection_state_if("u1", "github", ConnectionState::NeedsConsent, "sealed-1")
            .await
            .unwrap(),
        "the tokens changed since"
    );
    assert!(
        store
            .set_connection_state("u1", "github", ConnectionState::NeedsConsent)
            .await
            .unwrap()
    );
    let got = store.connection("u1", "github").await.unwrap().unwrap();
    assert_eq!(
        (got.sealed.as_str(), got.last_used_at, got.state),
        ("sealed-2", Some(now + 5), ConnectionState::NeedsConsent)
    );
    assert_eq!(store.connections(Some("u2")).await.unwrap().len(), 1);
    let mut counts = store.connection_counts().await.unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        counts,
        vec![
            (ConnectionState::Active, 1),
            (ConnectionState::NeedsConsent, 1)
        ]
    );
    assert_eq!(store.connections(None).await.unwrap().len(), 2);
    let first = store.connections_first(1).await.unwrap();
    assert_eq!(
        first.iter().map(|c| c.user_id.as_str()).collect::<Vec<_>>(),
        ["u1"]
    );
    let gone = store.delete_connection("u1", "github").await.unwrap();
    assert_eq!(gone.map(|c| c.sealed), Some("sealed-2".into()));
    assert_eq!(store.delete_connection("u1", "github").await.unwrap(), None);
    assert_eq!(
        store.connection("u2", "github").await.unwrap(),
        Some(ConnectionRecord {
            user_id: "u2".into(),
            ..conn
        })
    );

    // Web sessions: the last sign-in of a browser wins, until it expires.
    store
        .put_web_session("b1", "alice", now, now + 60)
        .await
        .unwrap();
    store
        .put_web_session("b1", "bob", now, now + 60)
        .await
        .unwrap();
    assert_eq!(
        store.web_session("b1", now).await.unwrap().as_deref(),
        Some("bob")
    );
    assert_eq!(store.web_session("b2", now).await.unwrap(), None);
    assert_eq!(store.web_session("b1", now + 60).await.unwrap(), None);
}
