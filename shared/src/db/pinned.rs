//! Settings pinned in the database at install (`pinned_settings`): today
//! `OUTBOX_SHARDS`, which must be the same in every api and relay replica.

use crate::StoreError;
use crate::db::GenericClient;
use std::time::Duration;

const OUTBOX_SHARDS: &str = "outbox_shards";

/// How long a binary's start-up waits for the database to check
/// `OUTBOX_SHARDS`.
pub const STARTUP_DATABASE_WAIT: Duration = Duration::from_secs(30);

/// Why the configured shard count cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The configured count differs from the pinned one.
    #[error(
        "OUTBOX_SHARDS is {configured} but this database was installed with {pinned}; \
         set OUTBOX_SHARDS={pinned} (changing it needs an empty outbox and a manual \
         UPDATE pinned_settings)"
    )]
    #[allow(missing_docs)]
    Mismatch { configured: u32, pinned: u32 },
    /// The database could not be asked.
    #[error("cannot check OUTBOX_SHARDS against the database (DATABASE_URL): {0}")]
    Store(#[from] StoreError),
}

/// Pins `shards` unless a value is pinned already, and returns the pinned
/// value. `migrate` pins; a binary started on a database migrated without it
/// (tests, or before this table existed) pins its own value first.
///
/// When another process inserts the row at the same moment, this insert
/// waits for it and does nothing, and the statement's snapshot, taken
/// before that commit, does not see the row either: no row comes back.
/// The statement then runs again, with a snapshot that sees it.
pub async fn pin_outbox_shards(
    client: &impl GenericClient,
    shards: u32,
) -> Result<u32, StoreError> {
    let stmt = client
        .prepare_cached(
            "WITH ins AS (INSERT INTO pinned_settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING RETURNING value) \
             SELECT value FROM ins UNION ALL SELECT value FROM pinned_settings WHERE name = $1",
        )
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&OUTBOX_SHARDS, &shards.to_string()];
    let mut row = client.query_opt(&stmt, &params).await?;
    if row.is_none() {
        row = client.query_opt(&stmt, &params).await?;
    }
    let Some(row) = row else {
        return Err(StoreError::Corrupt(
            "outbox_shards is neither pinned nor could be pinned".into(),
        ));
    };
    let value: String = row.try_get(0)?;
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("pinned outbox_shards is {value:?}")))
}

/// Pins or compares `configured` with the pinned shard count.
pub async fn check_outbox_shards(
    client: &impl GenericClient,
    configured: u32,
) -> Result<(), PinError> {
    let pinned = pin_outbox_shards(client, configured).await?;
    if pinned == configured {
        Ok(())
    } else {
        Err(PinError::Mismatch { configured, pinned })
    }
}

/// At start-up: waits up to [`STARTUP_DATABASE_WAIT`] for the database,
/// then checks the shard count. A mismatch, or no database by then, is a
/// start-up error.
pub async fn verify_at_start(
    pool: &deadpool_postgres::Pool,
    configured: u32,
) -> Result<(), PinError> {
    let deadline = tokio::time::Instant::now() + STARTUP_DATABASE_WAIT;
    loop {
        let attempt = async {
            let client = pool.get().await.map_err(StoreError::from)?;
            check_outbox_shards(&client, configured).await
        };
        match attempt.await {
            Err(PinError::Store(err))
                if err.is_transient() && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(error = %err, "Waiting for the database to check OUTBOX_SHARDS.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}
