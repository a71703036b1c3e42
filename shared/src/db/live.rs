//! Hints for the API's live updates (SSE) on [`CHANGES_CHANNEL`]: whoever
//! makes a change announces it after its commit, through an [`Announcer`]:
//! each API replica its own changes, the relay's consumer the changes its
//! events make. Publishing announces nothing (it announced every row it
//! claimed, once: a second hint of every change, measured at 3-4 µs of
//! relay CPU per event and one more NOTIFY statement per seven). Each API
//! replica LISTENs on one connection and reads only the orders someone
//! watches.
//! [`changed_since`] is the fallback for a hint lost (a full queue, a failed
//! NOTIFY, a process stopped before it sent one, the LISTEN connection
//! down): a periodic check of the watched orders' versions.
//!
//! No NOTIFY is sent in the API's own write transactions: one there was
//! measured at -35 % create throughput (it takes a global lock at commit).

use super::interest::{INTEREST_REFRESH, Interest};
use crate::StoreError;
use crate::db::GenericClient;
use crate::domain::{OrderId, UserId};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// NOTIFY channel of changed orders; the payload is a JSON array of
/// `[orderId, version, userId]`, at most [`HINTS_PER_NOTIFY`] of them.
pub const CHANGES_CHANNEL: &str = "order_changes";

/// Hints per NOTIFY: the relay cuts the user id to 255 characters (at most
/// 1020 bytes of UTF-8, or 510 of escaped ASCII), so 7 entries stay below
/// PostgreSQL's 8000-byte payload limit. A longer id only loses the hint;
/// the periodic check still finds the change.
pub const HINTS_PER_NOTIFY: i64 = 7;

/// One changed order as a hint names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Hint {
    /// The order.
    pub order_id: OrderId,
    /// Its version after the change.
    pub version: i64,
    /// Its owner, so that replicas can tell who watches it.
    pub user_id: UserId,
}

/// Reads a NOTIFY payload of [`CHANGES_CHANNEL`].
pub fn parse_hints(payload: &str) -> Result<Vec<Hint>, serde_json::Error> {
    // A row without a userId (not one the service wrote) names nobody.
    let rows: Vec<(Uuid, i64, Option<String>)> = serde_json::from_str(payload)?;
    Ok(rows
        .into_iter()
        .map(|(id, version, user)| Hint {
            order_id: OrderId::from(id),
            version,
            user_id: UserId::new(user.unwrap_or_default()),
        })
        .collect())
}

/// What a replica's open streams watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    /// Orders with a stream of their own.
    pub orders: Vec<OrderId>,
    /// Users with a stream of their orders.
    pub users: Vec<UserId>,
    /// An admin watches every order.
    pub all: bool,
}

impl Watched {
    /// Nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty() && self.users.is_empty() && !self.all
    }
}

const CHANGED_SINCE: &str = "\
SELECT id, version, user_id FROM orders WHERE id = ANY($2) AND updated_at > $1
UNION
SELECT id, version, user_id FROM orders WHERE user_id = ANY($3) AND updated_at > $1
UNION
SELECT id, version, user_id FROM orders WHERE $4 AND updated_at > $1";

/// The watched orders that changed after `since` (by `updated_at`), with
/// their versions now.
pub async fn changed_since(
    client: &impl GenericClient,
    since: DateTime<Utc>,
    watched: &Watched,
) -> Result<Vec<Hint>, StoreError> {
    let ids: Vec<Uuid> = watched.orders.iter().map(|id| *id.as_uuid()).collect();
    let users: Vec<&str> = watched.users.iter().map(UserId::as_str).collect();
    let stmt = client.prepare_cached(CHANGED_SINCE).await?;
    let rows = client
        .query(&stmt, &[&since, &ids, &users, &watched.all])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Hint {
                order_id: OrderId::from(r.try_get::<_, Uuid>(0)?),
                version: r.try_get(1)?,
                user_id: UserId::new(r.try_get::<_, String>(2)?),
            })
        })
        .collect()
}

/// Hints queued at most; beyond, hints are dropped (the version check of
/// the other replicas still finds the change).
const QUEUE: usize = 10_000;
/// Hints sent per statement at most.
const BATCH: usize = 700;
/// How long the sending task gathers hints after the first one before it
/// sends them: one statement for many changes under load, for a few
/// milliseconds more on the other replicas' streams. Sending each change
/// at once cost about 15 µs of API CPU per create (`scripts/bench.sh`).
const GATHER: Duration = Duration::from_millis(5);

/// Sends hints of committed changes on [`CHANGES_CHANNEL`]: callers queue a
/// hint (a channel send, nothing more) and one task sends whatever is
/// queued within `GATHER` (5 ms) of the first as NOTIFYs in one statement,
/// on a pooled connection, outside any write transaction and apart from
/// the relay's claims: a failed or slow NOTIFY (a full notification queue,
/// say) loses hints, never a write or a publish. The API announces its own
/// changes right after their commit, and the relay's consumer the changes
/// it applies.
///
/// A change that no open stream may watch is not announced at all
/// ([`interest`](crate::db::interest)).
#[derive(Debug, Clone)]
pub struct Announcer {
    tx: mpsc::Sender<String>,
    interest: Arc<Interest>,
}

impl Announcer {
    /// Starts the sending task and the task that reads which changes are
    /// watched; both end with `shutdown`.
    pub fn spawn(pool: Pool, shutdown: CancellationToken) -> (Announcer, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let interest = Arc::new(Interest::default());
        let tasks = tokio::spawn({
            let interest = interest.clone();
            async move {
                tokio::join!(
                    send(pool.clone(), rx, shutdown.clone()),
                    watch_interest(pool, interest, shutdown)
                );
            }
        });
        (Announcer { tx, interest }, tasks)
    }

    /// Queues the hint of order `order_id` at `version`, owned by
    /// `user_id` (cut to 255 characters, so that [`HINTS_PER_NOTIFY`] hints
    /// fit one NOTIFY), when a stream may watch it; never waits.
    pub fn announce(&self, order_id: OrderId, version: i64, user_id: &str) {
        if !self.interest.wants(order_id, user_id) {
            return;
        }
        let user: String = user_id.chars().take(255).collect();
        let hint = json!([order_id, version, user]).to_string();
        if self.tx.try_send(hint).is_err() {
            metrics::counter!("sse_hints_dropped_total").increment(1);
        }
    }
}

/// Reads the held interest buckets every [`INTEREST_REFRESH`]; a failed
/// read makes every change wanted until the next one succeeds.
async fn watch_interest(pool: Pool, interest: Arc<Interest>, shutdown: CancellationToken) {
    loop {
        let read = async { super::interest::held(&pool.get().await?).await }.await;
        match read {
            Ok(held) => interest.set(Some(&held)),
            Err(err) => {
                tracing::debug!(error = %err, "Could not read which changes are watched; announcing all.");
                interest.set(None);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(INTEREST_REFRESH) => {}
        }
    }
}

async fn send(pool: Pool, mut rx: mpsc::Receiver<String>, shutdown: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = rx.recv_many(&mut batch, BATCH) => n,
        };
        if received == 0 {
            return;
        }
        if batch.len() < BATCH {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(GATHER) => {}
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(hint) => batch.push(hint),
                    Err(_) => break,
                }
            }
        }
        let payloads: Vec<String> = batch
            .chunks(HINTS_PER_NOTIFY as usize)
            .map(|chunk| format!("[{}]", chunk.join(",")))
            .collect();
        batch.clear();
        let result = async {
            let client = pool.get().await?;
            let stmt = client
                .prepare_cached("SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) p")
                .await?;
            client
                .query_one(&stmt, &[&CHANGES_CHANNEL, &payloads])
                .await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(err) = result {
            tracing::debug!(error = %err, "Could not announce changes to the other replicas.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_read_from_the_relay_payload() {
        let hints = parse_hints(
            r#"[["0190a6f0-0000-7000-8000-000000000001",3,"alice"],["0190a6f0-0000-7000-8000-000000000002",1,"b:ob \"x\""]]"#,
        )
        .unwrap();
        assert_eq!(hints.len(), 2);
        assert_eq!(hints[0].version, 3);
        assert_eq!(hints[1].user_id.as_str(), "b:ob \"x\"");
        assert!(parse_hints("3").is_err());
        let anonymous =
            parse_hints(r#"[["0190a6f0-0000-7000-8000-000000000001",1,null]]"#).unwrap();
        assert_eq!(anonymous[0].user_id.as_str(), "");
        assert!(parse_hints(r#"[["not-a-uuid",1,"a"]]"#).is_err());
    }

    #[test]
    fn the_largest_notify_payload_fits_postgres_limit() {
        let id = "0190a6f0-0000-7000-8000-000000000001";
        for user in ["\u{1F600}".repeat(255), "\"".repeat(255)] {
            let entry = serde_json::json!([id, i64::MAX, user]).to_string();
            let payload = format!("[{}]", vec![entry; HINTS_PER_NOTIFY as usize].join(","));
            assert!(payload.len() < 8000, "{}", payload.len());
        }
    }
}
