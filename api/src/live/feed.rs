//! What feeds a replica's [`Hub`]: one LISTEN connection for the relay's
//! hints, a periodic version check of the watched orders (the fallback
//! when no hint comes: broker or relay down), and the reader that loads
//! hinted orders, many per query.

use super::hub::Hub;
use deadpool_postgres::Pool;
use order_shared::db::interest::{self, CATCH_UP};
use order_shared::db::live::{CHANGES_CHANNEL, changed_since, parse_hints};
use order_shared::db::orders::get_orders;
use order_shared::db::{DbSettings, pg_config};
use order_shared::domain::OrderId;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

/// Orders read per query.
const READ_BATCH: usize = 200;
/// The version check looks this far behind its last run, for transactions
/// that committed late and clocks that differ a little between hosts.
const CHECK_OVERLAP: Duration = Duration::from_secs(5);
/// Longest wait before the LISTEN connection is tried again.
const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(30);

/// Starts the feeding tasks; they end with `shutdown`.
pub fn spawn(
    pool: Pool,
    db: DbSettings,
    hub: Arc<Hub>,
    reads: mpsc::UnboundedReceiver<OrderId>,
    check_every: Duration,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    // Hints sent while the LISTEN connection was down are lost: when it
    // (re)connects, the version check runs at once to cover the gap.
    let listening = Arc::new(Notify::new());
    vec![
        tokio::spawn(read_orders(
            pool.clone(),
            hub.clone(),
            reads,
            shutdown.clone(),
        )),
        tokio::spawn(listen(db, hub.clone(), listening.clone(), shutdown.clone())),
        tokio::spawn(check_versions(pool, hub, check_every, listening, shutdown)),
    ]
}

async fn read_orders(
    pool: Pool,
    hub: Arc<Hub>,
    mut reads: mpsc::UnboundedReceiver<OrderId>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            id = reads.recv() => match id { Some(id) => id, None => return },
        };
        let mut ids = vec![first];
        while ids.len() < READ_BATCH {
            match reads.try_recv() {
                Ok(id) => ids.push(id),
                Err(_) => break,
            }
        }
        let result = async {
            let client = pool.get().await?;
            get_orders(&client, &ids).await
        }
        .await;
        // Before publishing: a newer hint for the same order queues again.
        hub.read_done(&ids);
        match result {
            Ok(orders) => orders.iter().for_each(|o| hub.publish(o)),
            Err(err) => {
                // The version check finds these orders again.
                tracing::warn!(error = %order_shared::error::error_chain(&err), orders = ids.len(),
                    "Cannot read changed orders for live updates.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn listen(
    db: DbSettings,
    hub: Arc<Hub>,
    listening: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut wait = Duration::from_millis(500);
    loop {
        match listen_once(&db, &hub, &listening, &shutdown).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64,
                    "Live-update LISTEN connection lost; streams rely on the version check meanwhile.");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(MAX_RECONNECT_WAIT);
    }
}

/// One LISTEN connection until it fails (`Err`) or shutdown (`Ok`).
async fn listen_once(
    db: &DbSettings,
    hub: &Hub,
    listening: &Arc<Notify>,
    shutdown: &CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut config = pg_config(db)?;
    config.application_name("order-api-live");
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let (tx, mut notes) = mpsc::unbounded_channel();
    let conn = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(Ok(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    let _ = tx.send(Err(err));
                    return;
                }
                None => return,
            }
        }
    });
    let _stop_conn = AbortOnDrop(conn);
    client
        .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
        .await?;
    tracing::debug!("Live updates: listening for change hints.");
    listening.notify_one();
    let mut held = BTreeSet::new();
    hold_interest(&client, hub, &mut held, listening).await?;
    loop {
        let note = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = hub.watch_changed() => {
                hold_interest(&client, hub, &mut held, listening).await?;
                continue;
            }
            note = notes.recv() => note,
        };
        match note {
            Some(Ok(payload)) => match parse_hints(&payload) {
                Ok(hints) => hints.iter().for_each(|h| hub.hint(h)),
                Err(err) => tracing::warn!(error = %err, "Ignoring a malformed live-update hint."),
            },
            Some(Err(err)) => return Err(err.into()),
            None => return Err("connection closed".into()),
        }
    }
}

/// Holds, on the LISTEN connection, the interest locks of what the open
/// streams watch, so that the announcers send their hints. Changes made
/// before the announcers see a new lock get no hint: the version check
/// runs [`CATCH_UP`] later to find them.
async fn hold_interest(
    client: &tokio_postgres::Client,
    hub: &Hub,
    held: &mut BTreeSet<i32>,
    listening: &Arc<Notify>,
) -> Result<(), order_shared::StoreError> {
    let wanted = hub.interest();
    let take: Vec<i32> = wanted.difference(held).copied().collect();
    let release: Vec<i32> = held.difference(&wanted).copied().collect();
    if !take.is_empty() {
        interest::take(client, &take).await?;
        let listening = listening.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CATCH_UP).await;
            listening.notify_one();
        });
    }
    if !release.is_empty() {
        interest::release(client, &release).await?;
    }
    *held = wanted;
    Ok(())
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn check_versions(
    pool: Pool,
    hub: Arc<Hub>,
    every: Duration,
    listening: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let overlap = chrono::Duration::from_std(CHECK_OVERLAP).unwrap_or_default();
    let mut since = chrono::Utc::now() - overlap;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            _ = listening.notified() => {}
        }
        let started = chrono::Utc::now();
        if hub.open_streams() == 0 {
            since = started - overlap;
            continue;
        }
        let watched = hub.watched();
        if watched.is_empty() {
            continue;
        }
        let result = async {
            let client = pool.get().await?;
            changed_since(&client, since, &watched).await
        }
        .await;
        match result {
            Ok(hints) => {
                hints.iter().for_each(|h| hub.hint(h));
                since = started - overlap;
            }
            Err(err) => tracing::warn!(error = %order_shared::error::error_chain(&err),
                "Live-update version check failed."),
        }
    }
}
