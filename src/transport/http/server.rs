//! The accept loop: HTTP/1.1 and HTTP/2 on one listener, bounded reads, graceful drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::tls::TlsServer;
use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Connection-level limits against slow or oversized clients.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A client must finish sending request headers within this time (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head (request line + headers) accepted.
    pub max_header_bytes: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// After shutdown starts, in-flight requests get this long to finish.
    pub drain_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_concurrent_streams: 128,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The address a request's connection came from (what a rate limit per client can key on;
/// behind a proxy, the proxy's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub std::net::SocketAddr);

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting and lets
/// open connections finish (at most `drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<TlsServer>,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let app = app.clone();
        // The handshake and the first request's head must both arrive by this instant.
        let deadline = tokio::time::Instant::now() + limits.header_read_timeout;
        tokio::spawn(async move {
            let result = match tls {
                None => serve_connection(&builder, stream, app, watcher, deadline, peer).await,
                Some(tls) => {
                    // The handshake runs in the connection's task, bounded, so slow or hostile
                    // handshakes never hold up the accept loop.
                    let stream = match tokio::time::timeout_at(deadline, tls.0.accept(stream)).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    serve_connection(&builder, stream, app, watcher, deadline, peer).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the drain timeout");
    }
}

/// Serves one connection until it ends, or until `first_request_by` if no request has
/// arrived by then. hyper's header read timeout starts only once the HTTP version has been
/// detected from the first bytes, so without this a client that connects and sends nothing
/// (or a few bytes of the HTTP/2 preface) would hold its connection, and a descriptor,
/// forever. Later requests are bounded by hyper (HTTP/1.1) or belong to a live connection
/// (HTTP/2).
async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    app: Router,
    watcher: Watcher,
    first_request_by: tokio::time::Instant,
    peer: std::net::SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let requested = Arc::new(AtomicBool::new(false));
    let seen = requested.clone();
    let service = TowerToHyperService::new(app.map_request(move |mut r: Request<Incoming>| {
        seen.store(true, Ordering::Release);
        r.extensions_mut().insert(PeerAddr(peer));
        r
    }));
    let connection = watcher.watch(
        builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned(),
    );
    let silent = async {
        tokio::time::sleep_until(first_request_by).await;
        if requested.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = connection => result,
        () = silent => Err("no request within the header read timeout".into()),
    }
}
