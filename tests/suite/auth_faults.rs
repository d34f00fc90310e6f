//! Authentication under faults: the issuer's key set slow or unreachable while clients keep
//! calling, and tokens at the edges of `exp`, `nbf` and `iat`. Tokens are signed by a key
//! the test holds and published by a key set server the test controls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::auth::{mcp_with, post_init, www_authenticate};
use crate::support::http::text;
use crate::support::issuer::{JwksServer, Key, Mode, now};
use crate::support::{Warden, fixture};

/// A sidecar trusting `jwks`'s issuer (keys from its `jwks_uri`), with `extra` flags.
fn protected(jwks: &JwksServer, extra: &[&str]) -> Warden {
    Warden::builder(fixture())
        .with_auth()
        .args(["--issuer", &jwks.issuer, "--jwks-uri", &jwks.jwks_uri()])
        .args(extra.iter().copied())
        .start()
}

/// Claims of a token for `w`, valid for five minutes, with `extra` claims set.
fn claims(jwks: &JwksServer, w: &Warden, sub: &str, extra: Value) -> Value {
    let t = now().floor();
    let mut c = json!({"iss": jwks.issuer, "sub": sub, "aud": w.mcp_url(),
        "iat": t, "exp": t + 300.0, "jti": format!("{sub}-{}", now())});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

async fn status(w: &Warden, token: &str) -> (u16, String) {
    let r = post_init(
        &w.mcp_url(),
        &[("authorization", format!("Bearer {token}"))],
    )
    .await;
    (r.status().as_u16(), www_authenticate(&r))
}

/// How long a call with a known key may take while the key set is slow or down. Shorter
/// than the stall below: a call that waited for the key set would miss it.
const KNOWN_KEY_BOUND: Duration = Duration::from_secs(2);
/// How long the key set server makes each answer wait while it is slow.
const STALL: Duration = Duration::from_secs(4);

/// Sessions calling `echo` with tokens of a known key until stopped; every call must be
/// answered within [`KNOWN_KEY_BOUND`]. Returns the calls made and the slowest one.
fn load(
    w: &Warden,
    jwks: &JwksServer,
    key: &Arc<Key>,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(usize, Duration)>> {
    (0..clients)
        .map(|c| {
            let token = key.sign(&claims(jwks, w, &format!("load-{c}"), json!({})));
            let url = w.mcp_url();
            let key = key.clone();
            let stop = stop.clone();
            let (iss, aud) = (jwks.issuer.clone(), w.mcp_url());
            tokio::spawn(async move {
                let mut m = mcp_with(url.clone(), &token);
                m.initialize().await;
                let (mut calls, mut slowest) = (0usize, Duration::ZERO);
                while !stop.load(Ordering::Relaxed) {
                    // A new token each time (with the token cache off, each one is verified
                    // against the key set cache).
                    let t = now().floor();
                    let fresh = key.sign(&json!({"iss": iss, "sub": format!("load-{c}"),
                        "aud": aud, "iat": t, "exp": t + 300.0, "jti": format!("{c}-{calls}")}));
                    let mut m2 = mcp_with(url.clone(), &fresh);
                    m2.session = m.session.clone();
                    let started = Instant::now();
                    let r = tokio::time::timeout(
                        KNOWN_KEY_BOUND,
                        m2.call_tool(json!(calls), "echo", json!({"text": "known"})),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        panic!("a known key's call waited over {KNOWN_KEY_BOUND:?}")
                    });
                    assert_eq!(text(&r), "known", "{r}");
                    slowest = slowest.max(started.elapsed());
                    calls += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (calls, slowest)
            })
        })
        .collect()
}

#[tokio::test]
async fn a_slow_or_unreachable_key_set_never_delays_known_keys_and_fails_closed_on_new_ones() {
    let known = Arc::new(Key::new("known"));
    let rotated = Key::new("rotated");
    let jwks = JwksServer::start(&[&known]).await;
    // Keys go stale every second, so refreshes run all through the test.
    let w = protected(
        &jwks,
        &[
            "--jwks-refetch-interval",
            "1s",
            "--jwks-min-ttl",
            "1s",
            "--jwks-max-ttl",
            "1s",
            "--token-cache-size",
            "0",
        ],
    );
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&w, &jwks, &known, 6, &stop);

    // Up: made-up key ids are refused, and cannot make the sidecar hammer the issuer.
    let before = jwks.fetches();
    for i in 0..100 {
        let forged = Key::new(&format!("made-up-{i}"));
        let token = forged.sign(&claims(&jwks, &w, "mallory", json!({})));
        assert_eq!(status(&w, &token).await.0, 401);
    }
    let flood_fetches = jwks.fetches() - before;
    assert!(
        flood_fetches <= 3,
        "100 unknown key ids caused {flood_fetches} key set fetches"
    );

    // Slow: a token of a key the sidecar has not seen waits for the fetch and is refused
    // (the set still lacks it); known keys are not held up meanwhile.
    jwks.set_mode(Mode::Slow(STALL));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let unknown = rotated.sign(&claims(&jwks, &w, "bob", json!({})));
    let waited = Instant::now();
    let (code, challenge) = status(&w, &unknown).await;
    assert_eq!(code, 401, "{challenge}");
    assert!(challenge.contains("invalid_token"), "{challenge}");
    eprintln!(
        "unknown key refused after {:?} of slow key set",
        waited.elapsed()
    );

    // Down: the unknown key cannot be looked up: 503 (try again), never accepted, and not
    // 401 either (the token may well be good), for as long as the issuer is unreachable.
    jwks.down();
    jwks.set_mode(Mode::Up);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for attempt in 0..3 {
        let r = post_init(
            &w.mcp_url(),
            &[("authorization", format!("Bearer {unknown}"))],
        )
        .await;
        assert_eq!(r.status(), 503, "attempt {attempt}");
        assert!(r.headers().get("retry-after").is_some());
    }
    // Failing (503 from the issuer): the same.
    jwks.up().await;
    jwks.set_mode(Mode::Failing);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for attempt in 0..3 {
        assert_eq!(status(&w, &unknown).await.0, 503, "attempt {attempt}");
    }

    // Back, with the new key published: picked up without a restart.
    jwks.publish(&[&known, &rotated]);
    jwks.set_mode(Mode::Up);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status(&w, &unknown).await.0, 200);

    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for worker in workers {
        let (calls, slowest) = worker.await.unwrap();
        assert!(calls > 0);
        total += calls;
        eprintln!("known-key client: {calls} calls, slowest {slowest:?}");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{total} known-key calls in {elapsed:?}; {} key set fetches",
        jwks.fetches()
    );
    // At most one fetch per refetch interval, whatever the traffic.
    assert!(
        jwks.fetches() as u64 <= elapsed.as_secs() + 3,
        "{} fetches in {elapsed:?}",
        jwks.fetches()
    );
}

#[tokio::test]
async fn tokens_at_the_edges_of_the_clock_skew() {
    // The default skew is 60 s: a token is refused from exp + 60 s on, and while nbf or iat
    // is more than 60 s ahead (docs/auth.md).
    let key = Key::new("k");
    let jwks = JwksServer::start(&[&key]).await;
    let w = protected(&jwks, &[]);
    let t = now();
    for (what, extra, want) in [
        ("expired 50 s ago", json!({"exp": t - 50.0}), 200),
        ("expired 70 s ago", json!({"exp": t - 70.0}), 401),
        ("valid from 50 s ahead", json!({"nbf": t + 50.0}), 200),
        ("valid from 70 s ahead", json!({"nbf": t + 70.0}), 401),
        ("issued 50 s ahead", json!({"iat": t + 50.0}), 200),
        ("issued 70 s ahead", json!({"iat": t + 70.0}), 401),
    ] {
        let token = key.sign(&claims(&jwks, &w, "alice", extra));
        let (code, challenge) = status(&w, &token).await;
        assert_eq!(code, want, "{what}: {challenge}");
        if want == 401 {
            let reason = if what.starts_with("expired") {
                "The access token expired"
            } else {
                "The access token is not yet valid"
            };
            assert!(challenge.contains(reason), "{what}: {challenge}");
        }
    }
    // Crossing the edge while the sidecar holds the token: a token accepted (and remembered)
    // 3 s before exp + 60 s is refused after it, and one refused 3 s before nbf - 60 s is
    // accepted after it. Fractional NumericDates are honoured.
    let t = now();
    let expiring = key.sign(&claims(&jwks, &w, "alice", json!({"exp": t - 57.5})));
    let maturing = key.sign(&claims(&jwks, &w, "alice", json!({"nbf": t + 63.5})));
    assert_eq!(status(&w, &expiring).await.0, 200);
    assert_eq!(status(&w, &maturing).await.0, 401);
    let crossed = (t + 4.0 - now()).max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(crossed)).await;
    let (code, challenge) = status(&w, &expiring).await;
    assert_eq!(code, 401, "accepted after exp + skew");
    assert!(
        challenge.contains("The access token expired"),
        "{challenge}"
    );
    assert_eq!(
        status(&w, &maturing).await.0,
        200,
        "refused after nbf - skew"
    );
}
