//! Forward-only migrations (refinery), embedded in the binaries and run only
//! by the explicit `migrate` subcommand, never implicitly at start.

use super::{BadDatabaseUrl, DbSettings, pg_config};
use crate::StoreError;
use crate::config::ConfigError;
use crate::db::pinned::PinError;

/// The SQL files of `migrations/`, embedded at build time.
#[allow(missing_docs)] // The macro generates undocumented items.
mod embedded {
    refinery::embed_migrations!("../migrations");
}
use embedded::migrations;

/// Advisory lock key that serialises concurrent `migrate` runs.
const MIGRATION_LOCK: i64 = 0x6f72_6465_725f_6d67; // "order_mg"

/// Why `migrate` failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A variable is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `DATABASE_URL` cannot be parsed.
    #[error(transparent)]
    Url(#[from] BadDatabaseUrl),
    /// The database cannot be reached, or a statement failed.
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// A migration failed (refinery says which).
    #[error("refinery: {0}")]
    Migration(#[from] refinery::Error),
    /// The pool or a query of the pinned settings failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `OUTBOX_SHARDS` differs from the pinned value.
    #[error(transparent)]
    Pinned(#[from] PinError),
}

/// Applies the pending migrations and returns the names of those applied.
pub async fn run(settings: &DbSettings) -> Result<Vec<String>, MigrateError> {
    let (mut client, connection) = pg_config(settings)?.connect(tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = migrations::runner().run_async(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    drop(client);
    task.abort();
    let applied = report?
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    Ok(applied)
}

/// The `migrate` subcommand of both binaries: settings from the
/// environment, migrations applied, `OUTBOX_SHARDS` pinned (or checked
/// against the pinned value), and a line printed to say what was done.
pub async fn command() -> Result<(), MigrateError> {
    println!("{}", run_from_env().await?);
    Ok(())
}

async fn run_from_env() -> Result<String, MigrateError> {
    let common = crate::config::CommonSettings::from_env(&crate::config::ProcessEnv)?;
    crate::telemetry::init_tracing(common.log_format);
    let applied = run(&common.db).await?;
    let pool = super::build_pool(&common.db)?;
    let client = pool.get().await.map_err(StoreError::from)?;
    super::pinned::check_outbox_shards(&client, common.outbox_shards).await?;
    Ok(if applied.is_empty() {
        "Database schema is up to date.".to_owned()
    } else {
        format!("Applied migrations: {}", applied.join(", "))
    })
}
