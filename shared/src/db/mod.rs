//! All SQL of the service: the connection pool, migrations and the queries.
//! Functions take `&impl GenericClient` so that the caller owns the transaction.

pub mod inbox;
pub mod interest;
pub mod live;
pub mod migrate;
pub mod orders;
pub mod outbox;
mod payload;
pub mod pinned;
pub mod purge;
pub mod snapshot;

use crate::secret::Secret;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::str::FromStr;
use std::time::Duration;

pub use deadpool_postgres::GenericClient;

/// The rest of a query on the advisory locks `(class, key)` held in this
/// database, the class bound as `$1` (int8): `pg_locks` lists every
/// database's, and the relays' shard and member locks and the live-update
/// interest locks must count only their own deployment's.
pub(crate) const HELD_ADVISORY_LOCKS: &str = "FROM pg_locks WHERE locktype = 'advisory' \
    AND granted AND classid::int8 = $1 AND objsubid = 2 \
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/// How a write announces itself: the trace context for the record headers,
/// the shard count that places the outbox row, and whether to NOTIFY the
/// relay (its wake-up hint) with it.
#[derive(Debug, Clone, Copy)]
pub struct Emit<'a> {
    /// Carried into the event's record headers.
    pub traceparent: Option<&'a crate::trace::TraceParent>,
    /// `OUTBOX_SHARDS`.
    pub shards: u32,
    /// Send a NOTIFY on [`outbox::CHANNEL`] with the outbox row.
    pub notify: bool,
}

/// Pool settings, taken from the environment by the binaries.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// `DATABASE_URL`; it holds the password, so it never prints.
    pub url: Secret,
    /// `DATABASE_POOL_SIZE`.
    pub pool_size: usize,
    /// Upper bound for connecting and for waiting on a free connection.
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout`, so no request waits on SQL forever.
    pub statement_timeout: Duration,
}

/// The `DATABASE_URL` cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("DATABASE_URL is not a valid PostgreSQL connection string: {0}")]
pub struct BadDatabaseUrl(String);

/// Parses the URL and applies the timeouts; shared by every connection of
/// the service (the pools, the relay's lease session, migrations).
///
/// Every session starts with `statement_timeout` and without JIT
/// compilation (`jit=off`), then the `options` of `DATABASE_URL`, which
/// are kept and so win. The service runs only short statements, and
/// PostgreSQL compiles a statement whose estimated cost passes
/// `jit_above_cost` (100,000) at every execution. With 1.5 million rows
/// waiting, the relay's claim for 32 shards was estimated at 107,000 in
/// the plan a running relay keeps (339,000 in the first five, planned for
/// their parameters), and each claim spent 8-16 ms compiling (34 ms
/// without).
pub fn pg_config(settings: &DbSettings) -> Result<tokio_postgres::Config, BadDatabaseUrl> {
    let mut config = tokio_postgres::Config::from_str(settings.url.expose())
        .map_err(|e| BadDatabaseUrl(e.to_string()))?;
    config.connect_timeout(settings.connect_timeout);
    config.keepalives_idle(Duration::from_secs(30));
    let own = format!(
        "-c statement_timeout={} -c jit=off",
        settings.statement_timeout.as_millis()
    );
    let options = match config.get_options().map(str::trim) {
        Some(url) if !url.is_empty() => format!("{own} {url}"),
        _ => own,
    };
    config.options(options);
    if config.get_application_name().is_none() {
        config.application_name("order-service");
    }
    Ok(config)
}

/// Builds the pool. It connects lazily, so a database that is down at start
/// only makes readiness fail; it recovers by itself when the database returns.
pub fn build_pool(settings: &DbSettings) -> Result<Pool, BadDatabaseUrl> {
    let manager = Manager::from_config(
        pg_config(settings)?,
        tokio_postgres::NoTls,
        ManagerConfig {
            // A broken connection is closed (its task ends) and then dropped on recycle.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.connect_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .build()
        .map_err(|e| BadDatabaseUrl(e.to_string()))
}

/// Publishes the pool's size and use as gauges (`db_pool_*`).
pub fn record_pool_metrics(pool: &Pool, service: &'static str) {
    let status = pool.status();
    metrics::gauge!("db_pool_connections", "service" => service).set(status.size as f64);
    metrics::gauge!("db_pool_connections_idle", "service" => service).set(status.available as f64);
    metrics::gauge!("db_pool_connections_max", "service" => service).set(status.max_size as f64);
    metrics::gauge!("db_pool_waiting_requests", "service" => service).set(status.waiting as f64);
}

/// `SELECT 1` through the pool: the readiness check.
pub async fn ping(pool: &Pool) -> Result<(), crate::StoreError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> DbSettings {
        DbSettings {
            url: Secret::new(url.to_owned()),
            pool_size: 1,
            connect_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_millis(2500),
        }
    }

    #[test]
    fn sessions_start_without_jit_and_keep_the_urls_own_options_last() {
        let config = pg_config(&settings("postgres://u@h/db")).unwrap();
        assert_eq!(
            config.get_options(),
            Some("-c statement_timeout=2500 -c jit=off")
        );
        let url = "postgres://u@h/db?options=-c%20search_path%3Dshop%20-c%20jit%3Don";
        let config = pg_config(&settings(url)).unwrap();
        assert_eq!(
            config.get_options(),
            Some("-c statement_timeout=2500 -c jit=off -c search_path=shop -c jit=on"),
            "the URL's options come last, so an operator's choice wins"
        );
    }
}
