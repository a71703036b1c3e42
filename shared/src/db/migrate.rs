//! Forward-only migrations (refinery), embedded in the binaries and run only
//! by the explicit `migrate` subcommand, never implicitly at start.

use super::{DbSettings, pg_config};

refinery::embed_migrations!("../migrations");

/// Advisory lock key that serialises concurrent `migrate` runs.
const MIGRATION_LOCK: i64 = 0x6f72_6465_725f_6d67; // "order_mg"

/// Applies the pending migrations and returns the names of those applied.
pub async fn run(settings: &DbSettings) -> anyhow_like::Result<Vec<String>> {
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
/// against the pinned value), and a line to print.
pub async fn run_from_env() -> anyhow_like::Result<String> {
    let common = crate::config::CommonSettings::from_env(&crate::config::ProcessEnv)?;
    crate::telemetry::init_tracing(common.log_format);
    let applied = run(&common.db).await?;
    let pool = super::build_pool(&common.db)?;
    let client = pool.get().await?;
    super::pinned::check_outbox_shards(&client, common.outbox_shards).await?;
    Ok(if applied.is_empty() {
        "Database schema is up to date.".to_owned()
    } else {
        format!("Applied migrations: {}", applied.join(", "))
    })
}

/// A boxed error is all callers need here: `migrate` prints it and exits.
mod anyhow_like {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}
