//! The worker of one leased shard: takes the batches the coordinator
//! claims for it (`Handoff`), sends each at once, with up to
//! `OUTBOX_BATCHES_IN_FLIGHT` batches waiting for acks; awaits a full
//! batch's acks itself and leaves the others to the coordinator's polls
//! (`crate::flights`); backs off after errors. `claim_for` is the one claim
//! of both the coordinator and a worker after a full batch.

use crate::backoff::Backoff;
use crate::context::RelayContext;
use crate::flights::{Outcome, Settling};
use crate::handoff::{ClaimSpec, Handoff, Next};
use crate::publisher::{PublishError, Sending, Sent, Step, claims_parked, send_claimed, settle};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use order_shared::db::outbox::{OutboxRow, OutboxSession};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// A batch in flight that its worker settles: the order of each row, and
/// its outcome.
type Flight = Pin<Box<dyn Future<Output = (Vec<Uuid>, Outcome)> + Send>>;

/// The settling of a batch sent for `shard`.
fn settling(
    ctx: &Arc<RelayContext>,
    session: &Arc<OutboxSession>,
    shard: i32,
    sent: Sent,
) -> Settling {
    let (ctx, session) = (ctx.clone(), session.clone());
    Settling::new(move |clock| async move { settle(&ctx, &session, shard, sent, &clock).await })
}

/// Works one leased shard until `stop`: sends each batch the coordinator
/// hands it at once, up to `OUTBOX_BATCHES_IN_FLIGHT` of them waiting for
/// their acks (the coordinator leaves their orders out of the next claim).
/// It awaits a full batch's acks and then claims the next one itself; a
/// batch that is not full settles in the coordinator's polls, and only a
/// failure comes back to the worker.
/// After an error the shard takes nothing for a backoff delay, after a
/// parked row (stop policy) for two seconds. Once stopped it still settles
/// the batches in flight, the polled ones too.
pub async fn run_shard(
    ctx: Arc<RelayContext>,
    session: Arc<OutboxSession>,
    shard: i32,
    handoff: Arc<Handoff>,
    stop: CancellationToken,
) {
    let _settle = SettleOnExit(&ctx, shard);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut flights: FuturesUnordered<Flight> = FuturesUnordered::new();
    let resume = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(resume);
    let mut paused = false;
    let pause_for = |delay: Duration, resume: std::pin::Pin<&mut tokio::time::Sleep>| {
        handoff.pause();
        resume.reset(tokio::time::Instant::now() + delay);
    };
    loop {
        if stop.is_cancelled() {
            let (polled, reports) = handoff.take_flights();
            for (orders, settling) in polled {
                flights.push(Box::pin(async move { (orders, settling.await) }));
            }
            for report in reports {
                flights.push(Box::pin(std::future::ready(report)));
            }
            if flights.is_empty() {
                return delete_acked(&session, shard, &handoff).await;
            }
        }
        let settled = tokio::select! {
            Some(settled) = flights.next(), if !flights.is_empty() => settled,
            // A failure while paused restarts the pause (as one of the
            // worker's own batches does), rather than waiting for its end.
            report = handoff.next_report(), if paused => report,
            _ = &mut resume, if paused => {
                paused = false;
                handoff.resume();
                continue;
            }
            next = handoff.next(&stop), if !paused && !stop.is_cancelled() => match next {
                Some(Next::Settled(report)) => report,
                Some(Next::Batch(rows)) => {
                    match send(&ctx, &session, shard, &handoff, rows, &mut flights) {
                        Handed::Sent => {}
                        Handed::Blocked => {
                            // Stopped at a parked row: look again after a while
                            // (`outbox replay` is picked up within this pause).
                            pause_for(Duration::from_secs(2), resume.as_mut());
                            paused = true;
                        }
                        Handed::LeaseLost => return,
                    }
                    continue;
                }
                None => continue,
            },
            else => return,
        };
        let (orders, (acked, step)) = settled;
        handoff.settled(&orders, &acked);
        if handoff.take_published() {
            // A polled batch published since the last error.
            backoff.reset();
        }
        match step {
            Ok(Step::Published(n)) if n >= handoff.max_rows() => {
                // A full batch: more rows are likely waiting; claim them now
                // rather than at the coordinator's next round.
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
                let kind = failure_kind(&err);
                if let Some(left_out) = ctx.publish_warnings.admit(&kind, Instant::now()) {
                    tracing::warn!(shard, error = %err, retry_in_ms = delay.as_millis() as u64,
                        failing_shards = ctx.publishing.failing_shards(), left_out,
                        "Publishing failed; the shard waits and retries (one line per kind of failure every 10 s for all shards; left_out counts the lines left out since the last).");
                }
                pause_for(delay, resume.as_mut());
                paused = true;
            }
        }
    }
}

/// What a failure is, for its log line: an outage fails every shard the
/// same way, and one line says so for all of them.
fn failure_kind(err: &PublishError) -> String {
    match err {
        PublishError::Database(_) => "database".to_owned(),
        PublishError::Send { fault, source, .. } => match source.rdkafka_error_code() {
            Some(code) => format!("send:{fault:?}:{code:?}"),
            None => format!("send:{fault:?}"),
        },
        PublishError::LeaseLost => "lease".to_owned(),
    }
}

/// What [`send`] did with a batch.
enum Handed {
    /// Sent, or nothing to send.
    Sent,
    /// Stopped at a parked row (stop policy); settled.
    Blocked,
    /// The shard's lease is no longer certain.
    LeaseLost,
}

/// Sends a batch the coordinator claimed: a full one joins the worker's
/// `flights`, any other the coordinator's polls; a batch with nothing to
/// send is settled at once.
fn send(
    ctx: &Arc<RelayContext>,
    session: &Arc<OutboxSession>,
    shard: i32,
    handoff: &Handoff,
    rows: Vec<OutboxRow>,
    flights: &mut FuturesUnordered<Flight>,
) -> Handed {
    let orders: Vec<Uuid> = rows.iter().map(|r| r.order_id).collect();
    let full = rows.len() >= handoff.max_rows();
    match send_claimed(ctx, session, shard, rows, full) {
        Ok(Sending::Sent(sent)) => {
            let settling = settling(ctx, session, shard, sent);
            match full {
                true => flights.push(Box::pin(async move { (orders, settling.await) })),
                false => handoff.fly((orders, settling)),
            }
            Handed::Sent
        }
        Ok(Sending::Empty) => {
            handoff.settled(&orders, &[]);
            Handed::Sent
        }
        Ok(Sending::Blocked) => {
            handoff.settled(&orders, &[]);
            Handed::Blocked
        }
        Err(_) => Handed::LeaseLost,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Fault;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    fn send_error(row_id: i64, topic: &str, fault: Fault, code: RDKafkaErrorCode) -> PublishError {
        PublishError::Send {
            row_id,
            topic: topic.into(),
            fault,
            failed: 1,
            published: 0,
            source: KafkaError::MessageProduction(code),
        }
    }

    #[test]
    fn an_outage_fails_every_shard_with_one_kind_of_failure() {
        let timed_out = RDKafkaErrorCode::MessageTimedOut;
        let a = send_error(1, "order.placed", Fault::Broker, timed_out);
        let b = send_error(977, "order.cancelled", Fault::Broker, timed_out);
        assert_eq!(failure_kind(&a), failure_kind(&b), "rows and topics differ");
        let other = send_error(
            1,
            "order.placed",
            Fault::Record,
            RDKafkaErrorCode::MessageSizeTooLarge,
        );
        assert_ne!(failure_kind(&a), failure_kind(&other));
        assert_ne!(failure_kind(&a), failure_kind(&PublishError::LeaseLost));
    }
}
