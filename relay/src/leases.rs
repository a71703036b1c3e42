//! Shard leases. Each relay holds one PostgreSQL session; a shard's lease is
//! the advisory lock `(SHARD_CLASS, shard)` held by that session, and each
//! live relay also holds a member lock, so every relay can count the others
//! in `pg_locks`. Every second a relay takes free shards up to its fair share
//! `ceil(shards / relays)` and gives back what exceeds it — after that shard's
//! worker has finished its batch. A relay that dies loses its session and
//! with it every lease, so the others take its shards at their next round.
//!
//! Wake-up: every `OUTBOX_POLL_INTERVAL_MS` one query asks which owned
//! shards have rows and wakes their workers; a NOTIFY from the writer (with
//! `OUTBOX_NOTIFY=true`) wakes a worker at once.
//!
//! Why advisory locks rather than a lease table: the lock lives exactly as
//! long as the session that works the shard, with no clock, heartbeat or
//! fencing token to get wrong, and costs no writes.

use crate::publisher::run_shard;
use crate::startup::RelayContext;
use order_shared::StoreError;
use order_shared::db::outbox::{OutboxSession, SessionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Worker {
    stop: CancellationToken,
    wake: Arc<Notify>,
    handle: JoinHandle<()>,
}

/// Runs sessions, leases and shard workers until `shutdown`.
pub async fn run(ctx: Arc<RelayContext>, shutdown: CancellationToken) {
    let mut backoff =
        crate::publisher::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    while !shutdown.is_cancelled() {
        let (session, events) = match OutboxSession::connect(&ctx.settings.common.db).await {
            Ok(pair) => pair,
            Err(err) => {
                ctx.session_ok.store(false, Ordering::Relaxed);
                let delay = backoff.next_delay();
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64,
                    "Cannot open the relay's database session.");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        backoff.reset();
        ctx.session_ok.store(true, Ordering::Relaxed);
        tracing::info!("Relay database session open; taking shard leases.");
        run_session(&ctx, Arc::new(session), events, &shutdown).await;
        ctx.session_ok.store(false, Ordering::Relaxed);
        metrics::gauge!("relay_shards_owned").set(0.0);
    }
}

async fn run_session(
    ctx: &Arc<RelayContext>,
    session: Arc<OutboxSession>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<SessionEvent>,
    shutdown: &CancellationToken,
) {
    let mut workers: HashMap<i32, Worker> = HashMap::new();
    let mut tick = tokio::time::interval(ctx.settings.rebalance_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe = tokio::time::interval(ctx.settings.poll_interval);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = events.recv() => match event {
                Some(SessionEvent::NewRows(shard)) => {
                    if let Some(worker) = workers.get(&shard) {
                        worker.wake.notify_one();
                    }
                }
                Some(SessionEvent::Closed) | None => {
                    tracing::warn!(shards = workers.len(), "Relay database session lost; its leases are gone.");
                    break;
                }
            },
            _ = probe.tick(), if !workers.is_empty() => {
                let owned: Vec<i32> = workers.keys().copied().collect();
                match session.shards_with_rows(&owned).await {
                    Ok(ready) => {
                        for shard in ready {
                            if let Some(worker) = workers.get(&shard) {
                                worker.wake.notify_one();
                            }
                        }
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "Outbox probe failed.");
                        if session.is_closed() {
                            break;
                        }
                    }
                }
            }
            _ = tick.tick() => {
                if let Err(err) = rebalance(ctx, &session, &mut workers).await {
                    tracing::warn!(error = %err, "Rebalancing shard leases failed.");
                    if session.is_closed() {
                        break;
                    }
                }
                metrics::gauge!("relay_shards_owned").set(workers.len() as f64);
            }
        }
    }
    // Let every worker finish its batch, then drop the session: closing it
    // releases all leases at once.
    for worker in workers.values() {
        worker.stop.cancel();
    }
    for (_, worker) in workers.drain() {
        let _ = worker.handle.await;
    }
}

async fn rebalance(
    ctx: &Arc<RelayContext>,
    session: &Arc<OutboxSession>,
    workers: &mut HashMap<i32, Worker>,
) -> Result<(), StoreError> {
    let shards = i64::from(ctx.settings.common.outbox_shards);
    let members = session.member_count().await?.max(1);
    let fair = ((shards + members - 1) / members) as usize;

    if workers.len() > fair {
        let mut owned: Vec<i32> = workers.keys().copied().collect();
        owned.sort_unstable();
        for shard in owned.into_iter().rev().take(workers.len() - fair) {
            if let Some(worker) = workers.remove(&shard) {
                worker.stop.cancel();
                let _ = worker.handle.await;
                session.release(shard).await?;
                tracing::info!(shard, "Released shard lease.");
            }
        }
    } else if workers.len() < fair {
        let taken = session.leased_shards().await?;
        for shard in 0..shards as i32 {
            if workers.len() >= fair {
                break;
            }
            if taken.contains(&shard) || workers.contains_key(&shard) {
                continue;
            }
            if session.try_lease(shard).await? {
                let stop = CancellationToken::new();
                let wake = Arc::new(Notify::new());
                let handle = tokio::spawn(run_shard(
                    ctx.clone(),
                    session.clone(),
                    shard,
                    wake.clone(),
                    stop.clone(),
                ));
                workers.insert(shard, Worker { stop, wake, handle });
                tracing::debug!(shard, "Took shard lease.");
            }
        }
        tracing::info!(
            owned = workers.len(),
            relays = members,
            "Shard leases balanced."
        );
    }
    // A worker that ended on its own (its session failed) is dropped here.
    workers.retain(|_, w| !w.handle.is_finished());
    Ok(())
}
