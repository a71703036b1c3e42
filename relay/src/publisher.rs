//! Outbox -> Kafka for one shard: `send_claimed` produces a claimed batch in
//! id order (an order's rows together only while they go to one topic:
//! `per_order`), `settle` waits for every acknowledgement and returns the
//! acknowledged rows that no failed row of their order precedes, which the
//! shard's next claim deletes.
//! `run_shard` publishes the batches the coordinator claims for it
//! (`Handoff`), several at once, and backs off on errors.

use crate::ack_clock::AckClock;
use crate::config::ParkedPolicy;
use crate::context::RelayContext;
use crate::kafka::{Fault, classify, record_headers};
use crate::outlets::Outlet;
use crate::producer::{Ack, Outgoing};
use order_shared::StoreError;
use order_shared::db::outbox::{OutboxRow, OutboxSession};
use rdkafka::error::KafkaError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

mod per_order;

use per_order::Lanes;
pub use per_order::deletable;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// This many rows were acknowledged (and go with the next claim).
    Published(usize),
    /// Nothing to publish.
    Empty,
    /// The shard's next row is parked and the policy is to stop.
    Blocked,
}

/// Why a step failed. Nothing acknowledged is ever lost: rows stay until deleted.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("outbox database: {0}")]
    Database(#[from] StoreError),
    #[error(
        "publishing row {row_id} to {topic} failed ({fault:?}): {source} \
         ({failed} row(s) failed, {published} published)"
    )]
    Send {
        row_id: i64,
        topic: String,
        fault: Fault,
        failed: usize,
        published: usize,
        #[source]
        source: KafkaError,
    },
    /// The lease session timed out or closed: this relay may no longer act
    /// on the shard.
    #[error("the shard's lease is no longer certain (database session lost or timed out)")]
    LeaseLost,
}

/// One row's delivery: handed to the producer or not, and its result.
enum Delivery {
    Waiting(Ack),
    Done(Result<(), KafkaError>),
    /// Held back for the next claim: an earlier row of its order could
    /// not be sent, or went to another topic ([`Lanes`]).
    Held,
}

/// Waits for every delivery, polling all the waiting ones at every
/// wake-up, so that each holds the current waker: every ack wakes it (and
/// ticks the batch's [`AckClock`]), and a worker that takes over a batch
/// the coordinator polled is woken by the acks still to come.
async fn deliver_all(pending: Vec<Option<Result<Ack, KafkaError>>>) -> Vec<Delivery> {
    let mut deliveries: Vec<Delivery> = pending
        .into_iter()
        .map(|p| match p {
            Some(Ok(fut)) => Delivery::Waiting(fut),
            Some(Err(err)) => Delivery::Done(Err(err)),
            None => Delivery::Held,
        })
        .collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for delivery in deliveries.iter_mut() {
            let Delivery::Waiting(fut) = delivery else {
                continue;
            };
            match Pin::new(fut).poll(cx) {
                Poll::Ready(Ok(result)) => *delivery = Delivery::Done(result),
                Poll::Ready(Err(_)) => *delivery = Delivery::Done(Err(KafkaError::Canceled)),
                Poll::Pending => waiting = true,
            }
        }
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    deliveries
}

/// Seconds from `from` to `to`, never negative (clocks of the database and
/// the relay may differ slightly).
fn since(from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> f64 {
    (to - from).as_seconds_f64().max(0.0)
}

/// Counts published records per topic: one counter update per topic and
/// batch.
fn count_published<'a>(outlets: impl Iterator<Item = &'a Outlet>) {
    let mut counts: Vec<(&Outlet, u64)> = Vec::new();
    for outlet in outlets {
        match counts
            .iter_mut()
            .find(|(o, _)| Arc::ptr_eq(&o.name, &outlet.name))
        {
            Some((_, n)) => *n += 1,
            None => counts.push((outlet, 1)),
        }
    }
    for (outlet, n) in counts {
        outlet.published.increment(n);
    }
}

/// Whether claims include parked rows (so that a shard stops at them).
pub fn claims_parked(ctx: &RelayContext) -> bool {
    ctx.settings.parked_policy == ParkedPolicy::Stop
}

/// What [`send_claimed`] did with a batch.
pub enum Sending {
    /// Handed to the producer: [`settle`] waits for the acks.
    Sent(Sent),
    /// Nothing to publish.
    Empty,
    /// The shard's next row is parked and the policy is to stop.
    Blocked,
}

/// A batch handed to the producer, waiting for its acknowledgements.
pub struct Sent {
    rows: Vec<OutboxRow>,
    /// Per row: its topic's name and counter.
    outlets: Vec<Outlet>,
    /// Per row: `None` when the row was held back for the next claim
    /// ([`Lanes`]).
    pending: Vec<Option<Result<Ack, KafkaError>>>,
    generation: u64,
}

/// Hands rows claimed for `shard` to the producer in id order (up to the
/// first parked one) without waiting for anything; [`settle`] then waits
/// for the acks. A `full` batch (the shard is behind) goes through the
/// backlog producer, which lingers longer ([`Producers`](crate::producers::Producers)).
/// Nothing is sent unless the lease is still certainly ours
/// (`OutboxSession::lease_valid`).
pub fn send_claimed(
    ctx: &RelayContext,
    session: &OutboxSession,
    shard: i32,
    claimed: Vec<OutboxRow>,
    full: bool,
) -> Result<Sending, PublishError> {
    if claimed.is_empty() {
        ctx.publishing.settled(shard);
        return Ok(Sending::Empty);
    }
    let mut rows: Vec<OutboxRow> = claimed.into_iter().take_while(|r| !r.parked).collect();
    if rows.is_empty() {
        ctx.publishing.settled(shard);
        return Ok(Sending::Blocked);
    }
    if !session.lease_valid() {
        return Err(PublishError::LeaseLost);
    }

    // Commit -> send call: the relay's own share of the publish latency
    // (of the rows handed to the producer; a held row counts when sent).
    let sending = chrono::Utc::now();
    let backlog = full.then(|| ctx.producers.for_backlog()).flatten();
    if backlog.is_some() {
        ctx.meters.backlog_batches.increment(1);
    }
    let (generation, producer) = backlog.unwrap_or_else(|| ctx.producers.get());
    let outlets = ctx.meters.outlets(rows.iter().map(|r| r.topic.as_str()));
    // An order's rows go together only while they go to one topic, and an
    // order whose row cannot be handed to the producer sends nothing more
    // in this batch; the other orders go on.
    let mut lanes = Lanes::default();
    let mut pending = Vec::with_capacity(rows.len());
    let mut key = uuid::Uuid::encode_buffer();
    for (row, outlet) in rows.iter_mut().zip(&outlets) {
        if !lanes.admit(row.order_id, &outlet.name) {
            pending.push(None);
            continue;
        }
        ctx.meters.send_delay.record(since(row.created_at, sending));
        let record = Outgoing {
            topic: &outlet.name,
            key: Some(row.order_id.hyphenated().encode_lower(&mut key).as_bytes()),
            payload: Some(row.payload.as_bytes()),
            headers: record_headers(row),
        };
        match producer.send_result(record) {
            Ok(ack) => pending.push(Some(Ok(ack))),
            Err(err) => {
                lanes.hold(row.order_id);
                pending.push(Some(Err(err)));
            }
        }
        // The producer holds its own copy until the ack; a row that is
        // not acked is claimed again, payload and all.
        drop(std::mem::take(&mut row.payload));
        drop(std::mem::take(&mut row.headers));
    }
    Ok(Sending::Sent(Sent {
        rows,
        outlets,
        pending,
        generation,
    }))
}

/// Waits for every acknowledgement of a batch [`send_claimed`] sent and
/// records the failures. Returns the acknowledged rows that no failed row
/// of their order precedes: the rows to delete, which the shard's next
/// claim deletes (in the same round trip, before it reads). `acks` gives
/// the time of the last ack (else it is taken as now).
pub async fn settle(
    ctx: &RelayContext,
    session: &OutboxSession,
    shard: i32,
    sent: Sent,
    acks: &AckClock,
) -> (Vec<i64>, Result<Step, PublishError>) {
    let mut acked = Vec::new();
    let step = settle_into(ctx, session, shard, sent, acks, &mut acked).await;
    (acked, step)
}

async fn settle_into(
    ctx: &RelayContext,
    session: &OutboxSession,
    shard: i32,
    sent: Sent,
    acks: &AckClock,
    deletable_ids: &mut Vec<i64>,
) -> Result<Step, PublishError> {
    let Sent {
        rows,
        outlets,
        pending,
        generation,
    } = sent;
    // Records handed to the producer (acked or not): beside
    // `outbox_published_total`, the difference is what will be re-sent.
    let sent = pending.iter().filter(|p| matches!(p, Some(Ok(_)))).count();
    ctx.meters.sent.increment(sent as u64);
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut failures: Vec<(usize, KafkaError, Fault)> = Vec::new();
    let deliveries = deliver_all(pending).await;
    for (i, (row, delivery)) in rows.iter().zip(deliveries).enumerate() {
        let acked = match delivery {
            Delivery::Done(Ok(())) => true,
            Delivery::Done(Err(err)) => {
                let fault = classify(&err);
                failures.push((i, err, fault));
                false
            }
            Delivery::Waiting(_) | Delivery::Held => false,
        };
        outcomes.push((row.order_id, acked));
    }
    let delete = deletable(&outcomes);
    if !delete.is_empty() {
        // Commit -> broker ack (the batch's last ack, when it came: the
        // batch may be settled up to a poll interval later).
        let now = chrono::Utc::now();
        let acked = acks.since_latest().map_or(now, |ago| {
            now - chrono::Duration::from_std(ago).unwrap_or_default()
        });
        for &i in &delete {
            ctx.meters
                .publish_latency
                .record(since(rows[i].created_at, acked));
        }
        deletable_ids.extend(delete.iter().map(|&i| rows[i].id));
        count_published(delete.iter().map(|&i| &outlets[i]));
        ctx.publishing.succeeded(shard);
    }
    if failures.is_empty() {
        ctx.broker_ok.store(true, Ordering::Relaxed);
        return Ok(Step::Published(delete.len()));
    }
    // Boxed: its database and admin calls would make every batch's
    // settling future several times larger (3 KB, moved and allocated per
    // batch), for a path that few batches take.
    Box::pin(record_failures(
        ctx,
        session,
        shard,
        (&rows, &outlets, generation),
        failures,
        delete.len(),
    ))
    .await
}

/// Records a batch's failures (attempts of the rows at fault, and the
/// producer or topics to renew) and returns the first as the error.
async fn record_failures(
    ctx: &RelayContext,
    session: &OutboxSession,
    shard: i32,
    (rows, outlets, generation): (&[OutboxRow], &[Outlet], u64),
    failures: Vec<(usize, KafkaError, Fault)>,
    published: usize,
) -> Result<Step, PublishError> {
    let settings = &ctx.settings;
    let mut broker_side = None;
    for &(i, ref err, fault) in &failures {
        let (row, topic) = (&rows[i], &outlets[i].name);
        metrics::counter!("outbox_publish_errors_total", "topic" => topic.to_string(),
            "fault" => format!("{fault:?}").to_lowercase())
        .increment(1);
        if fault == Fault::Record {
            let parked = session
                .record_failure(row.id, &err.to_string(), settings.max_attempts)
                .await?;
            if parked {
                tracing::error!(outbox_id = row.id, order_id = %row.order_id, version = row.version,
                    topic = %topic, error = %err,
                    "Outbox row parked after too many failed attempts; see `order-relay outbox parked`.");
            }
        } else {
            broker_side.get_or_insert(fault);
        }
    }
    match broker_side {
        Some(Fault::Producer) => ctx.producers.replace(generation),
        Some(Fault::MissingTopic) => ctx.ensure_topics().await,
        Some(Fault::Broker) => {
            ctx.broker_ok.store(false, Ordering::Relaxed);
            // After an outage the broker may have forgotten our producer id,
            // and a restarted broker may have lost its topics (sends to a
            // missing topic time out rather than fail).
            ctx.producers.replace(generation);
            ctx.ensure_topics().await;
        }
        Some(Fault::Unauthorized) => {
            ctx.broker_ok.store(false, Ordering::Relaxed);
            tracing::error!(
                shard,
                "The broker refuses this relay a topic (TopicAuthorizationFailed); fix its ACLs."
            );
        }
        Some(Fault::Record) | None => {}
    }
    if broker_side.is_some() {
        ctx.publishing.failed(shard);
    }
    let failed = failures.len();
    let Some((i, err, fault)) = failures.into_iter().next() else {
        return Ok(Step::Published(published));
    };
    Err(PublishError::Send {
        row_id: rows[i].id,
        topic: outlets[i].name.to_string(),
        fault,
        failed,
        published,
        source: err,
    })
}
