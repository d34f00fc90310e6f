//! Warm spares (`--spare N`): servers started ahead of demand, so a new session's first
//! answer does not wait for a package runner and an interpreter to start. Only for servers
//! whose environment does not depend on the caller (no claims, exchanged tokens or users'
//! connections in it): a spare is started before anyone asks, so it can hold nothing of
//! anyone's. Each is started like any session's server (the same sandbox, its own work dir
//! and user), waits with its stdin open, and is given whole to the next session, which
//! sends it the client's own `initialize`. Refilled in the background, one at a time,
//! bounded; a spare that dies is replaced; all are stopped at shutdown.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::store::StoreInner;
use crate::auth::Principal;
use crate::child::{Child, ChildSink, LateSink};
use crate::credentials::{SessionContext, SessionEnv};

/// A started server no session holds yet.
#[derive(Debug)]
pub(super) struct Spare {
    pub(super) child: Child,
    pub(super) sink: Arc<LateSink>,
    pub(super) env: SessionEnv,
}

/// How often dead spares are looked for while nothing else wakes the refiller.
const PRUNE_EVERY: Duration = Duration::from_secs(2);
/// The longest wait between attempts when spares cannot be started.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a replacement waits after a spare was taken while others are still ready:
/// starting an interpreter takes a core for a while, and the session that took the spare is
/// having its first exchange with its server right then.
const SETTLE: Duration = Duration::from_secs(1);

/// The ready spares and their refiller.
#[derive(Debug)]
pub(super) struct Spares {
    want: usize,
    ready: Mutex<VecDeque<Spare>>,
    wake: Notify,
    stop: CancellationToken,
}

impl Spares {
    pub(super) fn new(want: usize) -> Arc<Spares> {
        Arc::new(Spares {
            want,
            ready: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            stop: CancellationToken::new(),
        })
    }

    /// The oldest ready spare whose server still talks; the refiller starts its successor.
    pub(super) fn take(&self) -> Option<Spare> {
        let mut ready = self.ready.lock();
        let taken = loop {
            let spare = ready.pop_front()?;
            if spare.sink.is_closed() {
                spare.child.terminate();
                continue;
            }
            break spare;
        };
        drop(ready);
        self.wake.notify_one();
        Some(taken)
    }

    /// How many are ready now.
    pub(super) fn len(&self) -> usize {
        self.ready.lock().len()
    }

    /// Stops refilling and every ready spare's server; returns them, to wait for their exit.
    pub(super) fn stop(&self) -> Vec<Spare> {
        self.stop.cancel();
        let all: Vec<Spare> = self.ready.lock().drain(..).collect();
        for s in &all {
            s.child.terminate();
        }
        all
    }

    /// The refiller: keeps `want` spares ready until stopped or the store is gone.
    pub(super) async fn run(self: Arc<Self>, store: Weak<StoreInner>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            // Dead spares out.
            self.ready.lock().retain(|s| {
                let dead = s.sink.is_closed();
                if dead {
                    s.child.terminate();
                }
                !dead
            });
            if self.len() < self.want {
                let Some(inner) = store.upgrade() else { return };
                match start(&inner).await {
                    Ok(spare) => {
                        backoff = Duration::from_millis(250);
                        if self.stop.is_cancelled() {
                            spare.child.terminate();
                            return;
                        }
                        self.ready.lock().push_back(spare);
                        let ready = self.len();
                        if ready == self.want {
                            tracing::info!(spares = ready, "warm spares ready");
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "cannot start a warm spare");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.stop.cancelled() => return,
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            let taken = tokio::select! {
                _ = self.wake.notified() => true,
                _ = tokio::time::sleep(PRUNE_EVERY) => false,
                _ = self.stop.cancelled() => return,
            };
            // With none left, the next session would wait for a start anyway: at once.
            if taken && self.len() > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(SETTLE) => {}
                    _ = self.stop.cancelled() => return,
                }
            }
        }
    }
}

/// Starts one spare: the environment no caller changes, the server, a sink held until a
/// session takes it.
async fn start(inner: &StoreInner) -> Result<Spare, String> {
    let config = inner.config();
    let nobody = Principal::anonymous();
    let env = config
        .env
        .resolve(SessionContext {
            principal: &nobody,
            subject_token: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let sink = LateSink::new();
    let span = tracing::info_span!("spare");
    let child = span
        .in_scope(|| {
            Child::spawn(
                &config.child,
                inner.process_table(),
                sink.clone() as Arc<dyn ChildSink>,
                &env,
            )
        })
        .map_err(|e| e.to_string())?;
    span.in_scope(|| tracing::debug!(pid = child.pid(), "warm spare started"));
    Ok(Spare { child, sink, env })
}
