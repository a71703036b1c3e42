//! The worker of one leased shard: takes the batches the coordinator
//! claims for it (`Handoff`), sends each at once and settles it when its
//! acks are in, with up to `OUTBOX_BATCHES_IN_FLIGHT` batches waiting for
//! acks; backs off after errors. `claim_for` is the one claim of both the
//! coordinator and a worker after a full batch.

use crate::backoff::Backoff;
use crate::context::RelayContext;
use crate::handoff::{ClaimSpec, Handoff};
use crate::publisher::{PublishError, Sending, Step, claims_parked, send_claimed, settle};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use order_shared::db::outbox::OutboxSession;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A shard whose worker ends (stopped, aborted, panicked) no longer counts
/// as failing to publish.
struct SettleOnExit<'a>(&'a RelayContext, i32);

impl Drop for SettleOnExit<'_> {
    fn drop(&mut self) {
        self.0.publishing.settled(self.1);
    }
}

/// Works one leased shard until `stop`: sends each batch the coordinator
/// hands it at once, up to `OUTBOX_BATCHES_IN_FLIGHT` of them waiting for
/// their acks (the coordinator leaves their orders out of the next claim);
/// after a full batch it claims the next one itself.
/// After an error the shard takes nothing for a backoff delay, after a
/// parked row (stop policy) for two seconds. Once stopped it still settles
/// the batches in flight.
pub async fn run_shard(
    ctx: Arc<RelayContext>,
    session: Arc<OutboxSession>,
    shard: i32,
    handoff: Arc<Handoff>,
    stop: CancellationToken,
) {
    let _settle = SettleOnExit(&ctx, shard);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut flights = FuturesUnordered::new();
    let resume = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(resume);
    let mut paused = false;
    let pause_for = |delay: Duration, resume: std::pin::Pin<&mut tokio::time::Sleep>| {
        handoff.pause();
        resume.reset(tokio::time::Instant::now() + delay);
    };
    loop {
        if stop.is_cancelled() && flights.is_empty() {
            return delete_acked(&session, shard, &handoff).await;
        }
        tokio::select! {
            Some((orders, (acked, step))) = flights.next(), if !flights.is_empty() => {
                handoff.settled(Vec::as_slice(&orders), Vec::as_slice(&acked));
                match step {
                    Ok(Step::Published(n)) if n >= handoff.max_rows() => {
                        // A full batch: more rows are likely waiting; claim
                        // them now rather than at the coordinator's next round.
                        backoff.reset();
                        if !stop.is_cancelled()
                            && let Some(spec) = handoff.begin_claim()
                        {
                            claim_for(&ctx, &session, vec![(shard, handoff.clone(), spec)]).await;
                        }
                    }
                    Ok(_) => backoff.reset(),
                    Err(PublishError::LeaseLost) => return,
                    Err(err) => {
                        if session.is_closed() {
                            return;
                        }
                        let delay = backoff.next_delay();
                        tracing::warn!(shard, error = %err, retry_in_ms = delay.as_millis() as u64,
                            "Publishing failed; the shard waits and retries.");
                        pause_for(delay, resume.as_mut());
                        paused = true;
                    }
                }
            }
            _ = &mut resume, if paused => {
                paused = false;
                handoff.resume();
            }
            next = handoff.next(&stop), if !paused && !stop.is_cancelled() => {
                let Some(rows) = next else { continue };
                let orders: Vec<Uuid> = rows.iter().map(|r| r.order_id).collect();
                match send_claimed(&ctx, &session, shard, rows) {
                    Ok(Sending::Sent(sent)) => {
                        let (ctx, session) = (&ctx, &session);
                        flights.push(async move { (orders, settle(ctx, session, shard, sent).await) });
                    }
                    Ok(Sending::Empty) => handoff.settled(&orders, &[]),
                    Ok(Sending::Blocked) => {
                        // Stopped at a parked row: look again after a while
                        // (`outbox replay` is picked up within this pause).
                        handoff.settled(&orders, &[]);
                        pause_for(Duration::from_secs(2), resume.as_mut());
                        paused = true;
                    }
                    Err(_) => return,
                }
            }
            else => return,
        }
    }
}

/// A stopped worker deletes the acknowledged rows that no claim took
/// (else the shard's next owner would publish them again).
async fn delete_acked(session: &OutboxSession, shard: i32, handoff: &Handoff) {
    let acked = handoff.take_acked();
    if acked.is_empty() {
        return;
    }
    if let Err(err) = session.delete(&acked).await {
        tracing::warn!(shard, rows = acked.len(), error = %err,
            "Deleting published rows failed; they will be published again.");
    }
}

/// Claims the next rows of the shards whose claim began, in one
/// statement, each up to its limit and without its orders in flight, and
/// hands each worker its batch; ends every claim. The rows the claims
/// carry to delete (acknowledged since each shard's last claim) are
/// deleted in the same round trip, just before: when that fails, nothing
/// claimed is handed (it could hold those rows) and they go with the next
/// claim.
pub async fn claim_for(
    ctx: &RelayContext,
    session: &OutboxSession,
    claims: Vec<(i32, Arc<Handoff>, ClaimSpec)>,
) {
    if claims.is_empty() {
        return;
    }
    let fail_all = |claims: Vec<(i32, Arc<Handoff>, ClaimSpec)>| {
        claims
            .into_iter()
            .for_each(|(_, handoff, spec)| handoff.claim_failed(spec))
    };
    if !session.lease_valid() {
        return fail_all(claims);
    }
    let shards: Vec<i32> = claims.iter().map(|(shard, _, _)| *shard).collect();
    let limits: Vec<i64> = claims.iter().map(|(_, _, spec)| spec.limit).collect();
    let in_flight: Vec<Uuid> = claims
        .iter()
        .flat_map(|(_, _, spec)| spec.exclude.iter().copied())
        .collect();
    let delete: Vec<i64> = claims
        .iter()
        .flat_map(|(_, _, spec)| spec.delete.iter().copied())
        .collect();
    let started = std::time::Instant::now();
    // Both sent at once, the delete first (`biased`: polled, and so sent,
    // in this order): the server runs them in that order on the one
    // connection, so the claim reads after the delete committed.
    let (deleted, claimed) = tokio::join!(
        biased;
        async {
            match delete.is_empty() {
                true => Ok(0),
                false => session.delete(&delete).await,
            }
        },
        session.claim_many(&shards, &limits, claims_parked(ctx), &in_flight)
    );
    metrics::histogram!("outbox_claim_seconds").record(started.elapsed().as_secs_f64());
    match (deleted, claimed) {
        (Ok(_), Ok(mut batches)) => {
            for (shard, handoff, _) in &claims {
                match batches.iter().position(|(s, _)| s == shard) {
                    Some(i) => handoff.hand(batches.swap_remove(i).1),
                    None => handoff.end_claim(),
                }
            }
        }
        (Err(err), _) => {
            // Claims stop while deletes fail (rather than re-sending what was
            // published): say so, but not at every poll.
            metrics::counter!("outbox_delete_errors_total").increment(1);
            if ctx.delete_warnings.due() {
                tracing::warn!(rows = delete.len(), error = %err,
                    "Deleting published rows failed; claims wait until it succeeds (logged at most every 10 s).");
            }
            fail_all(claims);
        }
        (Ok(_), Err(err)) => {
            // The rows to delete are gone: only the claims end.
            tracing::debug!(error = %err, "Claiming for ready shards failed.");
            claims
                .iter()
                .for_each(|(_, handoff, _)| handoff.end_claim());
        }
    }
}
