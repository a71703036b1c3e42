//! Outbox -> Kafka for one shard: `publish_once` claims the next rows in id
//! order, produces them all, waits for every acknowledgement and deletes the
//! acknowledged prefix. `run_shard` loops it with wake-ups and backoff.

use crate::config::ParkedPolicy;
use crate::kafka::{Fault, classify, create_topics, record_headers};
use crate::startup::RelayContext;
use order_shared::StoreError;
use order_shared::db::outbox::{OutboxRow, OutboxSession};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// This many rows were acknowledged and deleted.
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
    #[error("publishing row {row_id} to {topic} failed ({fault:?}): {source}")]
    Send {
        row_id: i64,
        topic: String,
        fault: Fault,
        #[source]
        source: KafkaError,
    },
}

async fn deliver(
    fut: Result<rdkafka::producer::DeliveryFuture, KafkaError>,
) -> Result<(), KafkaError> {
    match fut?.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((err, _))) => Err(err),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// Publishes the next batch of `shard`. Rows are produced in id order and
/// deleted only once acknowledged; after a failed row, later rows are kept
/// even when acked, so that the order's events are re-sent in order.
pub async fn publish_once(
    ctx: &RelayContext,
    session: &OutboxSession,
    shard: i32,
) -> Result<Step, PublishError> {
    let settings = &ctx.settings;
    let include_parked = settings.parked_policy == ParkedPolicy::Stop;
    let claimed = session
        .claim(shard, settings.batch_size, include_parked)
        .await?;
    if claimed.is_empty() {
        return Ok(Step::Empty);
    }
    let rows: Vec<OutboxRow> = claimed.into_iter().take_while(|r| !r.parked).collect();
    if rows.is_empty() {
        return Ok(Step::Blocked);
    }

    let (generation, producer) = ctx.producers.get();
    let topics: Vec<String> = rows
        .iter()
        .map(|r| settings.kafka.topic(&r.topic))
        .collect();
    let keys: Vec<String> = rows.iter().map(|r| r.order_id.to_string()).collect();
    let mut pending = Vec::with_capacity(rows.len());
    for ((row, topic), key) in rows.iter().zip(&topics).zip(&keys) {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(&row.payload)
            .headers(record_headers(row));
        match producer.send_result(record) {
            Ok(fut) => pending.push(Ok(fut)),
            Err((err, _)) => {
                pending.push(Err(err));
                break;
            }
        }
    }

    let mut acked = Vec::with_capacity(rows.len());
    let mut failure: Option<(&OutboxRow, &String, KafkaError)> = None;
    for ((row, topic), fut) in rows.iter().zip(&topics).zip(pending) {
        match deliver(fut).await {
            Ok(()) if failure.is_none() => {
                acked.push(row.id);
                let latency = (chrono::Utc::now() - row.created_at).as_seconds_f64();
                metrics::histogram!("outbox_publish_latency_seconds").record(latency.max(0.0));
                metrics::counter!("outbox_published_total", "topic" => topic.clone()).increment(1);
            }
            Ok(()) => {}
            Err(err) => {
                if failure.is_none() {
                    failure = Some((row, topic, err));
                }
            }
        }
    }
    if !acked.is_empty() {
        session.delete(&acked).await?;
    }
    let Some((row, topic, err)) = failure else {
        ctx.broker_ok.store(true, Ordering::Relaxed);
        return Ok(Step::Published(acked.len()));
    };

    let fault = classify(&err);
    metrics::counter!("outbox_publish_errors_total", "topic" => topic.clone(),
        "fault" => format!("{fault:?}").to_lowercase())
    .increment(1);
    match fault {
        Fault::Record => {
            let parked = session
                .record_failure(row.id, &err.to_string(), settings.max_attempts)
                .await?;
            if parked {
                tracing::error!(outbox_id = row.id, order_id = %row.order_id, version = row.version,
                    topic = %topic, error = %err,
                    "Outbox row parked after too many failed attempts; see `order-relay outbox parked`.");
            }
        }
        Fault::Producer => ctx.producers.replace(generation),
        Fault::MissingTopic => ensure_topics(ctx).await,
        Fault::Broker => {
            ctx.broker_ok.store(false, Ordering::Relaxed);
            // After an outage the broker may have forgotten our producer id,
            // and a restarted broker may have lost its topics (sends to a
            // missing topic time out rather than fail).
            ctx.producers.replace(generation);
            ensure_topics(ctx).await;
        }
    }
    Err(PublishError::Send {
        row_id: row.id,
        topic: topic.clone(),
        fault,
        source: err,
    })
}

/// Re-creates the topics (when allowed), at most once every two seconds
/// whatever the number of shards asking.
pub(crate) async fn ensure_topics(ctx: &RelayContext) {
    if !ctx.settings.kafka.create_topics {
        return;
    }
    {
        let mut last = ctx.topics_checked.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(2)) {
            return;
        }
        *last = Some(std::time::Instant::now());
    }
    if let Err(e) = create_topics(&ctx.settings.kafka, &ctx.topics).await {
        tracing::warn!(error = %e, "Re-creating topics failed.");
    }
}

/// Exponential backoff with a ceiling.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            next: min,
            min,
            max,
        }
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// Works one leased shard until `stop`: publish while there are rows, then
/// wait for a NOTIFY wake-up or the fallback poll; back off on errors.
pub async fn run_shard(
    ctx: Arc<RelayContext>,
    session: Arc<OutboxSession>,
    shard: i32,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    // The coordinator's probe wakes us when rows arrive; this is only a
    // safety net in case a wake-up is missed.
    let idle = Duration::from_secs(1);
    while !stop.is_cancelled() {
        let wait = match publish_once(&ctx, &session, shard).await {
            Ok(Step::Published(n)) => {
                backoff.reset();
                if n as i64 >= ctx.settings.batch_size {
                    continue;
                }
                idle
            }
            Ok(Step::Empty) => {
                backoff.reset();
                idle
            }
            Ok(Step::Blocked) => {
                // Stopped at a parked row: the probe sees the rows behind it,
                // so do not listen to wake-ups; look again after a while
                // (`outbox replay` is picked up within this pause).
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                continue;
            }
            Err(err) => {
                if session.is_closed() {
                    return;
                }
                let delay = backoff.next_delay();
                tracing::warn!(shard, error = %err, retry_in_ms = delay.as_millis() as u64,
                    "Publishing failed; the shard waits and retries.");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u64> = (0..4).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
