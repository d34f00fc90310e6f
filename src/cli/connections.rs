//! `mcp-warden connections list|revoke`: users' upstream connections, for an operator, read
//! from the state store directly. Tokens are never printed; revoking forgets the connection,
//! tells the provider (RFC 7009) where it can, and running sidecars end the sessions given
//! it within seconds. A SQLite store (`--state-dir`) is held by its running sidecar: stop it
//! first, or let the user revoke on the connections page.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::say;
use crate::store::{Store, StoreConfig};

#[derive(Debug, Subcommand)]
pub(super) enum ConnectionsCommand {
    /// List connections (user, connection, state, scopes, when granted and last used).
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this user's (their subject).
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke one user's connection.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The user (their subject).
        #[arg(long)]
        user: String,
        /// The connection's name.
        #[arg(long)]
        connection: String,
        /// The key the tokens are sealed with (to tell the provider which grant to forget).
        #[arg(long, env = "MCP_WARDEN_STATE_KEY_FILE", value_name = "PATH")]
        state_key_file: PathBuf,
        /// The config file with the `[[connection]]` entries (the provider's endpoints).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// Where the state is.
#[derive(Debug, Args)]
pub(super) struct StoreArgs {
    /// The sidecar's --state-dir (SQLite).
    #[arg(
        long,
        env = "MCP_WARDEN_STATE_DIR",
        value_name = "DIR",
        conflicts_with = "state_url_file"
    )]
    state_dir: Option<PathBuf>,
    /// A file holding the sidecar's --state-url (PostgreSQL).
    #[arg(long, env = "MCP_WARDEN_STATE_URL_FILE", value_name = "PATH")]
    state_url_file: Option<PathBuf>,
}

impl StoreArgs {
    async fn open(&self) -> anyhow::Result<Store> {
        let config = match (&self.state_dir, &self.state_url_file) {
            (Some(dir), None) => StoreConfig::Sqlite { dir: dir.clone() },
            (None, Some(file)) => {
                let url = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                StoreConfig::Postgres {
                    url: url.trim().to_owned(),
                    ca_pem: None,
                }
            }
            _ => anyhow::bail!("give --state-dir DIR or --state-url-file FILE"),
        };
        Ok(Store::open(&config).await?)
    }
}

pub(super) fn run(command: ConnectionsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match command {
            ConnectionsCommand::List { store, user } => list(&store.open().await?, user).await,
            ConnectionsCommand::Revoke {
                store,
                user,
                connection,
                state_key_file,
                config,
            } => {
                let store = store.open().await?;
                revoke(store, &user, &connection, &state_key_file, &config).await
            }
        }
    })
}

async fn list(store: &Store, user: Option<String>) -> anyhow::Result<()> {
    let rows = store.connections(user.as_deref()).await?;
    let now = crate::authz::unix_now();
    say("USER\tCONNECTION\tSTATE\tSCOPES\tGRANTED\tLAST USED");
    for r in rows {
        say(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            printable(&r.user_id),
            r.name,
            r.state.as_str(),
            printable(&r.scopes.join(" ")),
            crate::authz::web::age(now - r.granted_at),
            r.last_used_at
                .map_or("never".to_owned(), |t| crate::authz::web::age(now - t)),
        ));
    }
    Ok(())
}

async fn revoke(
    store: Store,
    user: &str,
    connection: &str,
    key_file: &std::path::Path,
    config: &std::path::Path,
) -> anyhow::Result<()> {
    let file = crate::config::file::load(config)?;
    let key = crate::secret::Secret::new(
        std::fs::read(key_file).with_context(|| format!("cannot read {}", key_file.display()))?,
    );
    let vault = crate::connections::Vault::from_key_text(&key)?;
    let http = crate::auth::fetch::HttpClient::new(None, std::time::Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    if store.connection(user, connection).await?.is_none() {
        anyhow::bail!("{} has no connection {connection}", printable(user));
    }
    let connections =
        crate::connections::Connections::new(file.connections, store, vault, String::new(), http);
    if connections.revoke(user, connection).await?.is_none() {
        // Deleted here; the provider could not be told (the key did not open it).
        eprintln!(
            "mcp-warden: the stored tokens did not open with this key: the provider was not told"
        );
    }
    say(&format!("revoked {connection} of {}", printable(user)));
    Ok(())
}

/// Text from the store (a provider's scopes, a user's subject) without control characters,
/// which could drive the operator's terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
