//! The relay's lease session: one PostgreSQL connection per relay process
//! that holds the shard leases (advisory locks) and the member lock, listens
//! for new-row hints, and carries every outbox query of the relay
//! (tokio-postgres pipelines concurrent queries), so that when the session
//! dies the leases and the work stop together.
//!
//! A session must also die *quickly* when its relay is cut off: the server
//! ends it after `idle_session_timeout` (twice the client-side timeout) and
//! TCP keepalives, and every query the relay sends has a client-side
//! timeout. The relay treats its leases as valid only until one timeout
//! after the last query that the server answered was sent; the server keeps
//! the locks at least one idle timeout after that, so a cut relay stops
//! working its shards before another relay can lease them.

use super::rows::{CHANNEL, MEMBER_CLASS, ROW_COLUMNS, SHARD_CLASS};
use crate::StoreError;
use crate::db::{DbSettings, pg_config};
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Statement};
use uuid::Uuid;

/// A lease-session query got no answer within the client-side timeout.
#[derive(Debug, thiserror::Error)]
#[error("the relay's database session did not answer within {0:?} (OUTBOX_SESSION_TIMEOUT_MS)")]
pub struct SessionTimedOut(pub Duration);

impl From<SessionTimedOut> for StoreError {
    /// A session that does not answer is unavailable: retried by the caller.
    fn from(err: SessionTimedOut) -> Self {
        StoreError::Unavailable(Box::new(err))
    }
}

pub(super) struct Statements {
    pub(super) claim: Statement,
    pub(super) delete: Statement,
    pub(super) fail: Statement,
    try_lock: Statement,
    unlock: Statement,
    members: Statement,
    held: Statement,
    ping: Statement,
}

/// The relay's database session. Cheap to share (`Arc`); queries from
/// several tasks are pipelined on the one connection.
pub struct OutboxSession {
    pub(super) client: Client,
    pub(super) stmts: Statements,
    member_id: i32,
    timeout: Duration,
    opened: Instant,
    /// When (ms after `opened`) the last query that was answered was sent.
    confirmed_ms: AtomicU64,
    /// A query timed out: the session is given up even if the socket lives.
    broken: AtomicBool,
    connection: JoinHandle<()>,
}

impl std::fmt::Debug for OutboxSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxSession")
            .field("member_id", &self.member_id)
            .field("broken", &self.broken)
            .finish()
    }
}

/// The socket is not closed by dropping the client while a query hangs;
/// ending the connection task does close it.
impl Drop for OutboxSession {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// What the session's connection task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A NOTIFY on [`CHANNEL`] for this shard.
    NewRows(i32),
    /// The connection ended: every lease is gone.
    Closed,
}

/// Connection settings of the lease session: the pool's, plus server-side
/// `idle_session_timeout` (twice `timeout`), TCP keepalives and
/// `tcp_user_timeout` on both ends, no bitmap or sequential scans,
/// random reads priced as the reads of a hot table, and commits that do not
/// wait for the disk.
///
/// Bitmap and sequential scans are off because an outbox is mostly near
/// empty, and the session's prepared statements keep the plans made then
/// for the session's life (autovacuum's ANALYZE often samples a few rows,
/// each shard once). When a backlog built:
/// - the claim read all of a shard's rows by bitmap and sorted them,
///   for a `LIMIT` of a few: 100 ms for 32 shards of 1,500 rows, against
///   8 ms by the `(shard, id)` index in order;
/// - the delete of published rows (`id = ANY`), planned while the table
///   was small, read every page of it: 8-9 ms for 1,300-1,700 pages, and
///   the claim sent behind it waited for it.
///
/// Slower claims let the backlog grow, which makes them slower still. Both
/// were seen in `scripts/bench.sh` (claims of 10-500 ms, publishing up to
/// seconds late).
///
/// The session also prices a random page read at 1.1 sequential ones
/// (`random_page_cost`, 4 by default), as the outbox is read while it is
/// hot. With the default, a backlog written in id order is claimed
/// through the primary key: the whole outbox in id order, every shard's
/// rows read and 31 of 32 thrown away (a shard's rows are spread over
/// every page, so the planner prices `(shard, id)` as a random read per
/// row). That made a 200,000-row drain's claims of 128 rows 2-3 ms each
/// instead of under 1 ms (docs/benchmarks.md, twelfth pass).
///
/// Its commits do not wait for the WAL flush (`synchronous_commit=off`):
/// it writes only deletes of rows the broker acknowledged and failure
/// counts. A crash of PostgreSQL may undo the last few hundred
/// milliseconds of them; those rows are then published again, which
/// at-least-once delivery allows (a relay that stops between an ack and
/// its delete does the same), and nothing is lost. A drain of 200,000 rows
/// waited on one flush per delete: 51-57k events/s with it, 68-74k
/// without.
///
/// Every statement of the session has an index to use:
/// the claim (`(shard, id)`, and the partial index of parked rows), the
/// deletes and updates by id (the primary key), and the lock queries
/// (`pg_locks`, a function scan either way; `pg_database` by name).
fn session_config(
    settings: &DbSettings,
    timeout: Duration,
) -> Result<tokio_postgres::Config, StoreError> {
    let mut config = pg_config(settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let idle = timeout * 2;
    let keepalive_secs = (timeout.as_secs() / 2).max(1);
    let options = format!(
        "{} -c idle_session_timeout={} -c tcp_keepalives_idle={keepalive_secs} \
         -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 -c tcp_user_timeout={} \
         -c enable_bitmapscan=off -c enable_seqscan=off -c random_page_cost=1.1 -c synchronous_commit=off",
        config.get_options().unwrap_or_default(),
        idle.as_millis(),
        idle.as_millis(),
    );
    config
        .options(options.trim())
        .application_name("order-relay")
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(keepalive_secs))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3)
        .tcp_user_timeout(idle)
        .connect_timeout(settings.connect_timeout.min(timeout));
    Ok(config)
}

impl OutboxSession {
    /// Connects, registers as a member, LISTENs, and prepares the statements;
    /// every query (these included) fails after `timeout` without an answer.
    /// Session events (notifications, loss) arrive on the returned receiver.
    pub async fn connect(
        settings: &DbSettings,
        timeout: Duration,
    ) -> Result<(OutboxSession, mpsc::UnboundedReceiver<SessionEvent>), StoreError> {
        let config = session_config(settings, timeout)?;
        let opened = Instant::now();
        let (client, mut connection) =
            match tokio::time::timeout(timeout, config.connect(tokio_postgres::NoTls)).await {
                Ok(pair) => pair?,
                Err(_) => return Err(SessionTimedOut(timeout).into()),
            };
        let (tx, rx) = mpsc::unbounded_channel();
        let connection = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if let Ok(shard) = n.payload().parse::<i32>() {
                            let _ = tx.send(SessionEvent::NewRows(shard));
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "Relay database session failed.");
                        break;
                    }
                    None => break,
                }
            }
            let _ = tx.send(SessionEvent::Closed);
        });
        let mut session = OutboxSession {
            stmts: prepare(&client, timeout).await?,
            client,
            member_id: 0,
            timeout,
            opened,
            confirmed_ms: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            connection,
        };
        // A random member id; retry on the (unlikely) collision.
        for _ in 0..10 {
            let candidate = (Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff) as i32;
            let row = session
                .timed(
                    session
                        .client
                        .query_one(&session.stmts.try_lock, &[&MEMBER_CLASS, &candidate]),
                )
                .await?;
            if row.try_get::<_, bool>(0)? {
                session.member_id = candidate;
                break;
            }
        }
        session
            .timed(session.client.batch_execute(&format!("LISTEN {CHANNEL}")))
            .await?;
        Ok((session, rx))
    }

    /// Runs one query with the client-side timeout. A timeout breaks the
    /// session for good; an answer extends the lease validity.
    pub(super) async fn timed<T>(
        &self,
        query: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        let sent = self.opened.elapsed().as_millis() as u64;
        match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(value)) => {
                self.confirmed_ms.fetch_max(sent, Ordering::SeqCst);
                Ok(value)
            }
            Ok(Err(err)) => Err(err.into()),
            Err(_) => {
                if !self.broken.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        timeout_ms = self.timeout.as_millis() as u64,
                        "Relay database session timed out; giving up its leases."
                    );
                }
                Err(SessionTimedOut(self.timeout).into())
            }
        }
    }

    /// The session ended or timed out: its leases are (or will be) gone.
    pub fn is_closed(&self) -> bool {
        self.broken.load(Ordering::SeqCst) || self.client.is_closed()
    }

    /// Whether this relay may still act on its leases: the session is up and
    /// the server answered a query sent less than one timeout ago. The server
    /// holds the locks for at least two timeouts after that query.
    pub fn lease_valid(&self) -> bool {
        let confirmed = Duration::from_millis(self.confirmed_ms.load(Ordering::SeqCst));
        !self.is_closed() && self.opened.elapsed() < confirmed + self.timeout
    }

    /// The client-side timeout of every query.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A round trip that keeps the session from idling out and confirms
    /// the leases.
    pub async fn heartbeat(&self) -> Result<(), StoreError> {
        self.timed(self.client.query_one(&self.stmts.ping, &[]))
            .await
            .map(|_| ())
    }

    /// Live relays on this database (sessions holding a member lock).
    pub async fn member_count(&self) -> Result<i64, StoreError> {
        let row = self
            .timed(
                self.client
                    .query_one(&self.stmts.members, &[&i64::from(MEMBER_CLASS)]),
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Shards leased by any relay right now.
    pub async fn leased_shards(&self) -> Result<HashSet<i32>, StoreError> {
        let rows = self
            .timed(
                self.client
                    .query(&self.stmts.held, &[&i64::from(SHARD_CLASS)]),
            )
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<_, i64>(0)? as i32))
            .collect()
    }

    /// Takes the lease of `shard` if nobody holds it.
    pub async fn try_lease(&self, shard: i32) -> Result<bool, StoreError> {
        let row = self
            .timed(
                self.client
                    .query_one(&self.stmts.try_lock, &[&SHARD_CLASS, &shard]),
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Gives the lease of `shard` back.
    pub async fn release(&self, shard: i32) -> Result<(), StoreError> {
        self.timed(
            self.client
                .query_one(&self.stmts.unlock, &[&SHARD_CLASS, &shard]),
        )
        .await?;
        Ok(())
    }
}

/// Rows of an order that has a parked row before them wait for it: under
/// the `skip` policy they are not claimed. Parked rows are rare: whether
/// there is any is asked once per shard of a claim (an `InitPlan`), and
/// only then is each row checked (one probe of the parked rows' index per
/// row, about a sixth of a claim's time when there are none).
const NOT_HELD_BACK: &str = "(NOT EXISTS (SELECT 1 FROM outbox q WHERE q.parked_at IS NOT NULL) \
     OR NOT EXISTS (SELECT 1 FROM outbox p WHERE p.aggregate_id = o.aggregate_id \
     AND p.parked_at IS NOT NULL AND p.id < o.id))";

async fn prepare_one(
    client: &Client,
    timeout: Duration,
    sql: &str,
) -> Result<Statement, StoreError> {
    match tokio::time::timeout(timeout, client.prepare(sql)).await {
        Ok(stmt) => Ok(stmt?),
        Err(_) => Err(SessionTimedOut(timeout).into()),
    }
}

async fn prepare(client: &Client, timeout: Duration) -> Result<Statements, StoreError> {
    let held_locks = crate::db::HELD_ADVISORY_LOCKS;
    let prep = |sql: String| async move { prepare_one(client, timeout, &sql).await };
    Ok(Statements {
        // One statement claims for one shard or for all of a relay's idle
        // shards at once (the coordinator's claim every poll interval): up
        // to $2 rows of each ($1), in id order, leaving out the orders $4 whose
        // rows are in flight.
        claim: prep(format!(
            "SELECT c.* FROM unnest($1::int4[], $2::int8[]) AS s(shard, lim), LATERAL ( \
             SELECT o.shard, {ROW_COLUMNS} \
             FROM outbox o WHERE o.shard = s.shard \
             AND ($3 OR (parked_at IS NULL AND {NOT_HELD_BACK})) \
             AND o.aggregate_id <> ALL($4::uuid[]) \
             ORDER BY id LIMIT s.lim) c ORDER BY c.shard, c.id"
        ))
        .await?,
        delete: prep("DELETE FROM outbox WHERE id = ANY($1)".into()).await?,
        fail: prep(
            "UPDATE outbox SET attempts = attempts + 1, last_error = left($2, 2000), \
             parked_at = CASE WHEN attempts + 1 >= $3 THEN now() END \
             WHERE id = $1 RETURNING parked_at IS NOT NULL"
                .into(),
        )
        .await?,
        try_lock: prep("SELECT pg_try_advisory_lock($1::int4, $2::int4)".into()).await?,
        unlock: prep("SELECT pg_advisory_unlock($1::int4, $2::int4)".into()).await?,
        members: prep(format!("SELECT count(*) {held_locks}")).await?,
        held: prep(format!("SELECT objid::int8 {held_locks}")).await?,
        ping: prep("SELECT 1".into()).await?,
    })
}
