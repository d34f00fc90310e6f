//! The shared store: PostgreSQL (`--state-url postgres://…`), for several replicas.
//!
//! A small pool of connections; TLS through rustls (which always verifies the server), and
//! required for any host that is not loopback. Migrations run once under an advisory lock,
//! so replicas starting together do not race.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::{ToSql, Type};

use super::{Row, StoreError, Val};

#[derive(Clone)]
pub(super) struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The advisory lock key migrations hold ("mcpw").
const MIGRATION_LOCK: i64 = 0x6d63_7077;

/// Checks a `--state-url` without connecting: PostgreSQL scheme, and TLS required (not
/// `disable`, `prefer` or `allow`) unless every host is loopback. The message never
/// repeats the URL, which may hold a password.
pub fn check_url(url: &str) -> Result<(), StoreError> {
    let config: tokio_postgres::Config = url.parse().map_err(|_| {
        StoreError::Config("--state-url is not a PostgreSQL URL (postgres://user@host/db)".into())
    })?;
    let loopback = !config.get_hosts().is_empty()
        && config.get_hosts().iter().all(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            tokio_postgres::config::Host::Unix(_) => true,
        });
    if !loopback && config.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
        return Err(StoreError::Config(
            "--state-url names a remote PostgreSQL without sslmode=require: add it (mcp-warden verifies the server certificate)".into(),
        ));
    }
    Ok(())
}

impl PgStore {
    pub(super) async fn connect(url: &str, ca_pem: Option<&[u8]>) -> Result<PgStore, StoreError> {
        check_url(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| StoreError::Config("--state-url is not a PostgreSQL URL".into()))?;
        config.application_name("mcp-warden");
        config.options("-c statement_timeout=5000");
        config.connect_timeout(std::time::Duration::from_secs(5));
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(ca_pem)?);
            Manager::from_config(config, tls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(unavailable)?;
        Ok(PgStore { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    pub(super) async fn migrate(
        &self,
        steps: &'static [&'static [&'static str]],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(unavailable)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(unavailable)?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
            &[],
        )
        .await
        .map_err(unavailable)?;
        let found: Option<i64> = tx
            .query_one("SELECT MAX(version) FROM schema_version", &[])
            .await
            .map_err(unavailable)?
            .get(0);
        for (version, step) in super::steps_after(found, steps)? {
            for statement in step {
                tx.execute(*statement, &[]).await.map_err(unavailable)?;
            }
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    pub(super) async fn query(
        &self,
        sql: &'static str,
        params: Vec<Val>,
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(unavailable)?;
        let owned = owned_params(params);
        let refs: Vec<&(dyn ToSql + Sync)> = owned
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&stmt, &refs).await.map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let mut vals = Vec::with_capacity(row.len());
                for (i, column) in row.columns().iter().enumerate() {
                    let v = if *column.type_() == Type::INT8 {
                        row.try_get::<_, Option<i64>>(i)
                            .map_err(unavailable)?
                            .map_or(Val::NullInt, Val::Int)
                    } else if *column.type_() == Type::INT4 {
                        row.try_get::<_, Option<i32>>(i)
                            .map_err(unavailable)?
                            .map_or(Val::NullInt, |v| Val::Int(i64::from(v)))
                    } else {
                        row.try_get::<_, Option<String>>(i)
                            .map_err(unavailable)?
                            .map_or(Val::NullText, Val::Text)
                    };
                    vals.push(v);
                }
                Ok(Row(vals))
            })
            .collect()
    }

    pub(super) async fn execute(
        &self,
        sql: &'static str,
        params: Vec<Val>,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(unavailable)?;
        let owned = owned_params(params);
        let refs: Vec<&(dyn ToSql + Sync)> = owned
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        client.execute(&stmt, &refs).await.map_err(unavailable)
    }
}

fn owned_params(params: Vec<Val>) -> Vec<Box<dyn ToSql + Sync + Send>> {
    params
        .into_iter()
        .map(|v| -> Box<dyn ToSql + Sync + Send> {
            match v {
                Val::Text(s) => Box::new(s),
                Val::Int(i) => Box::new(i),
                Val::NullText => Box::new(None::<String>),
                Val::NullInt => Box::new(None::<i64>),
            }
        })
        .collect()
}

/// rustls with the system roots and `ca_pem`, the same provider as the rest of the binary.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let _ = roots.add_parsable_certificates(native.certs);
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| StoreError::Config(format!("--ca-bundle: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| StoreError::Config(format!("--ca-bundle: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| StoreError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_plaintext_is_refused_without_connecting() {
        for refused in [
            "postgres://warden:pw@db.example/warden",
            "postgres://warden:pw@db.example/warden?sslmode=disable",
            "postgres://warden:pw@db.example/warden?sslmode=prefer",
            "postgres://warden@10.0.0.5/warden",
        ] {
            let e = check_url(refused).unwrap_err().to_string();
            assert!(e.contains("sslmode=require"), "{refused}: {e}");
            assert!(!e.contains("pw"), "the password is never repeated: {e}");
        }
        for allowed in [
            "postgres://warden:pw@db.example/warden?sslmode=require",
            "postgres://warden:pw@127.0.0.1:5432/warden",
            "postgres://warden@localhost/warden?sslmode=disable",
            "postgres://warden@[::1]:5433/warden",
        ] {
            assert!(check_url(allowed).is_ok(), "{allowed}");
        }
        assert!(check_url("mysql://x").is_err());
    }
}
