//! Shard leases. Each relay holds one PostgreSQL session; a shard's lease is
//! the advisory lock `(SHARD_CLASS, shard)` held by that session, and each
//! live relay also holds a member lock, so every relay can count the others
//! in `pg_locks`. Every second a relay takes free shards up to its fair share
//! `ceil(shards / relays)` and gives back what exceeds it — after that shard's
//! worker has finished its batch. A relay that dies loses its session and
//! with it every lease, so the others take its shards at their next round.
//!
//! Claims: every `OUTBOX_POLL_INTERVAL_MS` one statement claims the next
//! rows of every owned shard whose worker takes another batch (fewer than
//! `OUTBOX_BATCHES_IN_FLIGHT` batches and its share of the relay's
//! `OUTBOX_MAX_ROWS_IN_FLIGHT`, at most `OUTBOX_BATCH_SIZE` rows, waiting
//! for acks), leaving out the orders in flight, and hands each worker its
//! batch (`handoff::Handoff`): one query for all of them, rather than a
//! probe and then one claim per shard. After a full batch a worker claims
//! the next one itself. A NOTIFY from the writer (with `OUTBOX_NOTIFY=true`)
//! claims for its shard at once.
//!
//! Faults: a session that does not answer within `OUTBOX_SESSION_TIMEOUT_MS`
//! is given up (see `order_shared::db::outbox::session`); a relay whose sends
//! have failed for `OUTBOX_PUBLISH_STALL_SECS` closes its session, so the
//! others take its shards, and comes back once its producer reaches the
//! broker; a shard given back is released in the background (its worker
//! gets a bounded time to finish its batch), so the coordinator never waits
//! on one shard; a worker that ends on its own (a panic) is restarted.
//!
//! Why advisory locks rather than a lease table: the lock lives exactly as
//! long as the session that works the shard, with no clock, heartbeat or
//! fencing token to get wrong, and costs no writes.

use crate::backoff::Backoff;
use crate::context::RelayContext;
use crate::shard::{claim_for, run_shard};
use crate::workers::{RowBudget, ShardWorkers};
use order_shared::StoreError;
use order_shared::db::outbox::{OutboxSession, SessionEvent};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a shard worker given back may take to finish its batch: one
/// message timeout (the longest a send waits for its ack) and a margin.
fn batch_bound(ctx: &RelayContext) -> Duration {
    ctx.settings.kafka.message_timeout + Duration::from_secs(1)
}

/// Runs sessions, leases and shard workers until `shutdown`.
pub async fn run(ctx: Arc<RelayContext>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    while !shutdown.is_cancelled() {
        if ctx.publishing.is_stalled() {
            wait_for_producer(&ctx, &shutdown).await;
            continue;
        }
        let connected =
            OutboxSession::connect(&ctx.settings.common.db, ctx.settings.session_timeout).await;
        let (session, events) = match connected {
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

/// Stalled: no session, no leases; every two seconds ask the broker for
/// metadata with a fresh producer, and resume once it answers.
async fn wait_for_producer(ctx: &Arc<RelayContext>, shutdown: &CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let (generation, _) = ctx.producers.get();
        if ctx.producers.broker_answers().await.is_ok() {
            // A producer that lived through the outage may have lost its id.
            ctx.producers.replace(generation);
            ctx.publishing.set_stalled(false);
            tracing::info!("The broker answers again; taking shard leases.");
            return;
        }
    }
}

async fn run_session(
    ctx: &Arc<RelayContext>,
    session: Arc<OutboxSession>,
    mut events: mpsc::UnboundedReceiver<SessionEvent>,
    shutdown: &CancellationToken,
) {
    let spawn_ctx = ctx.clone();
    let spawn_session = session.clone();
    let mut workers = ShardWorkers::new(
        Box::new(move |shard, handoff, stop| {
            tokio::spawn(run_shard(
                spawn_ctx.clone(),
                spawn_session.clone(),
                shard,
                handoff,
                stop,
            ))
        }),
        ctx.settings.batches_in_flight,
        RowBudget {
            rows: ctx.settings.max_rows_in_flight,
            batch: ctx.settings.batch_size as usize,
        },
    );
    let mut tick = tokio::time::interval(ctx.settings.rebalance_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe = tokio::time::interval(ctx.settings.poll_interval);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(session.timeout() / 4);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = events.recv() => match event {
                Some(SessionEvent::NewRows(shard)) => {
                    workers.poll_flights(Some(shard));
                    claim_for(ctx, &session, workers.begin_claims(Some(shard))).await;
                }
                Some(SessionEvent::Closed) | None => {
                    tracing::warn!(shards = workers.len(), "Relay database session lost; its leases are gone.");
                    break;
                }
            },
            _ = heartbeat.tick() => {
                if let Err(err) = session.heartbeat().await {
                    tracing::debug!(error = %err, "Relay session heartbeat failed.");
                }
            }
            _ = probe.tick(), if !workers.is_empty() => {
                workers.poll_flights(None);
                claim_for(ctx, &session, workers.begin_claims(None)).await;
                // The next one a whole interval after this one ended: when
                // claims are slow (a saturated database) they do not run
                // back to back, each bringing a few rows per shard.
                probe.reset();
            }
            _ = tick.tick() => {
                if let Some(failing) = ctx.publishing.failing_for()
                    && failing >= ctx.settings.publish_stall
                {
                    tracing::error!(failing_secs = failing.as_secs(), shards = workers.len(),
                        "Cannot publish to the broker; giving the shards back until it answers (OUTBOX_PUBLISH_STALL_SECS).");
                    ctx.publishing.set_stalled(true);
                    break;
                }
                workers.collect_released();
                workers.supervise().await;
                if let Err(err) = rebalance(ctx, &session, &mut workers).await {
                    tracing::warn!(error = %err, "Rebalancing shard leases failed.");
                }
                metrics::gauge!("relay_shards_owned").set(workers.len() as f64);
            }
        }
        if session.is_closed() {
            tracing::warn!(
                shards = workers.len(),
                "Relay database session closed or timed out; its shards stop."
            );
            break;
        }
    }
    // Let every worker finish its batch (bounded), then drop the session:
    // closing it releases all leases at once. A session that is gone gets
    // no wait: its workers stop at their next query.
    let bound = if session.is_closed() {
        session.timeout()
    } else {
        batch_bound(ctx)
    };
    workers.stop_all(bound).await;
}

async fn rebalance(
    ctx: &Arc<RelayContext>,
    session: &Arc<OutboxSession>,
    workers: &mut ShardWorkers,
) -> Result<(), StoreError> {
    let shards = i64::from(ctx.settings.common.outbox_shards);
    let members = session.member_count().await?.max(1);
    let fair = ((shards + members - 1) / members) as usize;

    if workers.len() > fair {
        let owned = workers.owned();
        for shard in owned.into_iter().rev().take(workers.len() - fair) {
            workers.give_back(shard, session, batch_bound(ctx));
        }
    } else if workers.len() < fair {
        let taken = session.leased_shards().await?;
        let mut took = 0;
        for shard in 0..shards as i32 {
            if workers.len() >= fair {
                break;
            }
            if taken.contains(&shard) || workers.holds(shard) {
                continue;
            }
            if session.try_lease(shard).await? {
                workers.start(shard);
                took += 1;
                tracing::debug!(shard, "Took shard lease.");
            }
        }
        // Only a change is news: a relay short of its share because the
        // others hold the rest (8 shards among 3 relays) would otherwise
        // say so at every rebalance, once a second.
        if took > 0 {
            tracing::info!(
                took,
                owned = workers.len(),
                relays = members,
                rows_per_shard = workers.row_cap(),
                "Shard leases balanced."
            );
        }
    }
    Ok(())
}
