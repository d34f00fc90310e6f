//! TLS for the MCP listener: rustls, HTTP/2 and HTTP/1.1 by ALPN, and certificates reloaded
//! from disk when they change, without dropping connections or sessions (new handshakes use
//! the new certificate; established connections keep theirs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Where the certificate and key come from.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
}

/// Why a certificate could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no usable PEM private key")]
    NoKey(PathBuf),
    #[error("the key in {key} does not fit the certificate or is unsupported: {reason}")]
    BadKey { key: PathBuf, reason: String },
}

/// The current certificate, swapped in place on reload.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn load(cfg: &TlsConfig) -> Result<CertifiedKey, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let cert_pem = read(&cfg.cert)?;
    let key_pem = read(&cfg.key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cfg.cert.clone()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(cfg.key.clone()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| TlsError::BadKey {
        key: cfg.key.clone(),
        reason: e.to_string(),
    })
}

/// A TLS acceptor for the listener.
#[derive(Clone)]
pub struct TlsServer(pub(crate) TlsAcceptor);

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsServer")
    }
}

/// Builds the acceptor (ALPN `h2`, `http/1.1`) and the reloadable certificate it serves.
pub fn acceptor(cfg: &TlsConfig) -> Result<(TlsServer, Arc<ReloadingCert>), TlsError> {
    let cert = Arc::new(ReloadingCert {
        current: RwLock::new(Arc::new(load(cfg)?)),
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadKey {
            key: cfg.key.clone(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(cert.clone());
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsServer(TlsAcceptor::from(Arc::new(server))), cert))
}

fn stamp(cfg: &TlsConfig) -> Option<(SystemTime, u64, SystemTime, u64)> {
    let c = std::fs::metadata(&cfg.cert).ok()?;
    let k = std::fs::metadata(&cfg.key).ok()?;
    Some((c.modified().ok()?, c.len(), k.modified().ok()?, k.len()))
}

/// Polls the files and swaps the certificate when they change (Kubernetes updates mounted
/// Secrets by swapping a symlink, which this notices too). A bad new pair is logged and the
/// old certificate stays in use.
pub async fn watch(cert: Arc<ReloadingCert>, cfg: TlsConfig, shutdown: CancellationToken) {
    let mut last = stamp(&cfg);
    let mut tick = tokio::time::interval(cfg.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = stamp(&cfg);
        if now == last {
            continue;
        }
        match load(&cfg) {
            Ok(new) => {
                *cert.current.write() = Arc::new(new);
                last = now;
                tracing::info!(cert = %cfg.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                // Possibly a half-written update: retried on the next tick.
                tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded; keeping the current one");
            }
        }
    }
}
