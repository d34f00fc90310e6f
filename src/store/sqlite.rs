//! The embedded store: one SQLite file under `--state-dir` (or memory), for one replica.
//!
//! One connection behind a mutex, used from blocking tasks: sign-in traffic is light and
//! serializing it makes every statement trivially atomic. WAL with `synchronous=NORMAL`
//! survives a crash of the process; a power loss may lose the last commits. An exclusive
//! lock on `<dir>/lock` refuses a second process on the same directory, since two writers
//! would each believe they alone hold single-use codes.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, params_from_iter};

use super::{Row, StoreError, Val};

#[derive(Clone)]
pub(super) struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Held for the life of the store: the directory's lock (released on close).
    _lock: Option<Arc<std::fs::File>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    pub(super) fn memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(unavailable)?;
        SqliteStore::setup(conn, None)
    }

    pub(super) fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        let shown = dir.display();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::Config(format!("cannot create --state-dir {shown}: {e}")))?;
        let meta = std::fs::metadata(dir)
            .map_err(|e| StoreError::Config(format!("cannot read --state-dir {shown}: {e}")))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(StoreError::Config(format!(
                "--state-dir {shown} is open to other users; run `chmod 700 {shown}` (it holds sign-in state)"
            )));
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join("lock"))
            .map_err(|e| StoreError::Config(format!("cannot open {shown}/lock: {e}")))?;
        lock.try_lock().map_err(|_| {
            StoreError::Config(format!(
                "--state-dir {shown} is in use by another mcp-warden; SQLite state serves one replica (use --state-url for several)"
            ))
        })?;
        let path = dir.join("state.db");
        // Created private before SQLite opens it.
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", path.display())))?;
        let conn = Connection::open(&path).map_err(unavailable)?;
        SqliteStore::setup(conn, Some(Arc::new(lock)))
    }

    fn setup(
        conn: Connection,
        lock: Option<Arc<std::fs::File>>,
    ) -> Result<SqliteStore, StoreError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .map_err(unavailable)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            _lock: lock,
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock()))
            .await
            .map_err(unavailable)?
    }

    pub(super) async fn migrate(
        &self,
        steps: &'static [&'static [&'static str]],
    ) -> Result<(), StoreError> {
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
                [],
            )
            .map_err(unavailable)?;
            let found: Option<i64> = tx
                .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
                .map_err(unavailable)?;
            let todo = super::steps_after(found, steps)?;
            for (version, step) in todo {
                for statement in step {
                    tx.execute(statement, []).map_err(unavailable)?;
                }
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [version],
                )
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    pub(super) async fn query(
        &self,
        sql: &'static str,
        params: Vec<Val>,
    ) -> Result<Vec<Row>, StoreError> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&sqlite_sql(sql)).map_err(unavailable)?;
            let columns = stmt.column_count();
            let mut rows = stmt
                .query(params_from_iter(params.into_iter().map(to_sql)))
                .map_err(unavailable)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(unavailable)? {
                let mut vals = Vec::with_capacity(columns);
                for i in 0..columns {
                    vals.push(match row.get_ref(i).map_err(unavailable)? {
                        ValueRef::Null => Val::NullText,
                        ValueRef::Integer(v) => Val::Int(v),
                        ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                        other => {
                            return Err(StoreError::Corrupt(format!(
                                "unexpected column type {:?}",
                                other.data_type()
                            )));
                        }
                    });
                }
                out.push(Row(vals));
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn execute(
        &self,
        sql: &'static str,
        params: Vec<Val>,
    ) -> Result<u64, StoreError> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(&sqlite_sql(sql)).map_err(unavailable)?;
            let n = stmt
                .execute(params_from_iter(params.into_iter().map(to_sql)))
                .map_err(unavailable)?;
            Ok(n as u64)
        })
        .await
    }
}

/// The store's SQL numbers its parameters `$N` (PostgreSQL); SQLite's spelling is `?N`.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

fn to_sql(v: Val) -> SqlValue {
    match v {
        Val::Text(s) => SqlValue::Text(s),
        Val::Int(i) => SqlValue::Integer(i),
        Val::NullText | Val::NullInt => SqlValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Store, StoreConfig, conformance};

    #[tokio::test]
    async fn memory_store_conforms() {
        let store = Store::open(&StoreConfig::Memory).await.unwrap();
        conformance::run(&store).await;
    }

    #[tokio::test]
    async fn file_store_conforms_survives_reopening_and_is_private_and_locked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "mcp-warden-store-{}-{}",
            std::process::id(),
            line!()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let config = StoreConfig::Sqlite { dir: dir.clone() };
        {
            let store = Store::open(&config).await.unwrap();
            conformance::run(&store).await;
            store.set_meta("kept", "yes").await.unwrap();
            // A second process (here: a second open) is refused while the first holds it.
            let second = Store::open(&config).await;
            assert!(
                matches!(&second, Err(super::StoreError::Config(m)) if m.contains("in use")),
                "{second:?}"
            );
            let mode =
                |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join("state.db")), 0o600);
        }
        // Closed: the directory is free again, and nothing was lost.
        let store = Store::open(&config).await.unwrap();
        assert_eq!(store.meta("kept").await.unwrap().as_deref(), Some("yes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_store_of_an_older_version_is_brought_up_to_date_and_keeps_its_data() {
        let dir = std::env::temp_dir().join(format!(
            "mcp-warden-store-{}-{}",
            std::process::id(),
            line!()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        {
            // A store as version 1 left it.
            let old = super::SqliteStore::open(&dir).unwrap();
            old.migrate(&super::super::MIGRATIONS[..1]).await.unwrap();
            old.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)",
                vec!["kept".into(), "yes".into()],
            )
            .await
            .unwrap();
        }
        let store = Store::open(&StoreConfig::Sqlite { dir: dir.clone() })
            .await
            .unwrap();
        assert_eq!(store.meta("kept").await.unwrap().as_deref(), Some("yes"));
        assert_eq!(store.connections(None).await.unwrap(), vec![]);
        drop(store);
        let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
        let versions: Vec<i64> = conn
            .prepare("SELECT version FROM schema_version ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(versions, vec![1, super::super::SCHEMA_VERSION]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = std::env::temp_dir().join(format!(
            "mcp-warden-store-{}-{}",
            std::process::id(),
            line!()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let conn = {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .unwrap();
                rusqlite::Connection::open(dir.join("state.db")).unwrap()
            };
            conn.execute_batch(
                "CREATE TABLE schema_version (version BIGINT NOT NULL);
                 INSERT INTO schema_version VALUES (999);",
            )
            .unwrap();
        }
        let r = Store::open(&StoreConfig::Sqlite { dir: dir.clone() }).await;
        assert!(
            matches!(r, Err(super::StoreError::SchemaTooNew { found: 999, .. })),
            "{r:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
