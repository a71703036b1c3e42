//! Kafka -> orders: consumes payment and inventory events in the group
//! `KAFKA_CONSUMER_GROUP`. One thread polls the consumer and handles
//! rebalances (`dispatch`); one worker task per assigned partition applies
//! its messages in order (`worker`), each in one database transaction with
//! its idempotency key (`message` reads it); only after the commit is the
//! *next* offset stored (`offsets`), and auto-committed later or
//! synchronously before a partition is revoked. Data errors go to the
//! dead-letter topic (`dead_letter`); every other failure is retried
//! without moving the offset, and only that partition waits (`health`).

pub mod dead_letter;
pub mod dispatch;
pub mod health;
pub mod message;
pub mod offsets;
pub mod slot;
pub mod transaction;
pub mod worker;

use crate::context::RelayContext;
use crate::kafka::client_config;
use deadpool_postgres::Pool;
use dispatch::GroupContext;
use message::TopicKind;
use offsets::NextOffset;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use worker::{Delivery, PartitionWorker};

/// How long one poll of the consumer waits for a message.
const POLL: Duration = Duration::from_millis(100);
/// The same while a partition is paused: its worker's progress is seen
/// only between polls, and it must be resumed before its queue runs dry.
const POLL_PAUSED: Duration = Duration::from_millis(5);

/// The inbound topics (prefixed) and their meanings.
pub fn topic_kinds(ctx: &RelayContext) -> HashMap<String, TopicKind> {
    let c = &ctx.settings.consumer;
    [
        (&c.payment_authorized_topic, TopicKind::PaymentAuthorized),
        (&c.payment_failed_topic, TopicKind::PaymentFailed),
        (&c.inventory_reserved_topic, TopicKind::InventoryReserved),
    ]
    .into_iter()
    .map(|(t, k)| (ctx.settings.kafka.topic(t), k))
    .collect()
}

fn create_consumer(
    ctx: &RelayContext,
    group: GroupContext,
) -> Result<BaseConsumer<GroupContext>, rdkafka::error::KafkaError> {
    let c = &ctx.settings.consumer;
    let mut config = client_config(&ctx.settings.kafka);
    config
        .set("group.id", &c.group_id)
        .set("group.instance.id", &c.instance_id)
        // Stored offsets (only ever those of finished messages) are
        // committed every second, and synchronously on revocation.
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            c.session_timeout.as_millis().to_string(),
        )
        .set("max.poll.interval.ms", "600000")
        // A partition resumed after its worker caught up is fetched again
        // only when the fetch in flight returns, and a fetch of partitions
        // with nothing new waits this long at the broker: 500 ms by default,
        // which idled each paused partition for up to half a second (the
        // inbound rate was bounded at ~700 events/s by that, `scripts/bench.sh`).
        .set("fetch.wait.max.ms", "50")
        .set("statistics.interval.ms", "5000");
    config.create_with_context(group)
}

/// Consumes until `shutdown`; then stops the workers (bounded by the
/// shutdown grace), commits what they finished and leaves the group.
pub async fn run(ctx: Arc<RelayContext>, pool: Pool, shutdown: CancellationToken) {
    let kinds = Arc::new(topic_kinds(&ctx));
    let topics: Vec<String> = kinds.keys().cloned().collect();
    let worker = PartitionWorker::new(ctx.clone(), pool, kinds);
    let group = GroupContext::new(
        tokio::runtime::Handle::current(),
        ctx.clone(),
        worker,
        topics.iter().cloned().collect::<HashSet<_>>(),
    );
    let consumer = match create_consumer(&ctx, group) {
        Ok(consumer) => consumer,
        Err(err) => {
            ctx.consumer.set_running(false);
            tracing::error!(error = %err, "Cannot create the Kafka consumer.");
            return;
        }
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    if let Err(err) = consumer.subscribe(&names) {
        ctx.consumer.set_running(false);
        tracing::error!(error = %err, "Cannot subscribe to the inbound topics.");
        return;
    }
    let c = &ctx.settings.consumer;
    tracing::info!(group = %c.group_id, instance = %c.instance_id, ?topics, "Consumer started.");
    let grace = ctx.settings.common.shutdown_timeout.min(c.revoke_timeout);
    // Polling blocks, and the rebalance callbacks wait for workers: both
    // belong on a thread of their own, never on a runtime worker.
    let polled = tokio::task::spawn_blocking(move || {
        poll_until(&consumer, &shutdown);
        consumer.context().revoke(&consumer, None, grace);
        // Leave the group now, so the others take the partitions at once: a
        // static member that only closes is not a leaver (KIP-345), and
        // some brokers (Tansu) never evict it. Dropping closes the consumer.
        leave_group(&consumer);
        drop(consumer);
    })
    .await;
    if let Err(e) = polled {
        tracing::error!(error = %e, "The consumer thread failed.");
    }
    tracing::info!("Consumer stopped.");
}

/// Unsubscribes and polls until the partitions are gone, so that the
/// LeaveGroup request goes out before the consumer closes: librdkafka sends
/// it only once the unassignment is done, and never for a static member
/// that is already terminating.
fn leave_group(consumer: &BaseConsumer<GroupContext>) {
    consumer.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        // Serves the revocation; a message polled now is not processed and
        // its offset not stored.
        let _ = consumer.poll(Duration::from_millis(50));
        if consumer.assignment().map_or(true, |a| a.count() == 0) {
            break;
        }
    }
    let _ = consumer.poll(Duration::from_millis(200));
}

fn poll_until(consumer: &BaseConsumer<GroupContext>, shutdown: &CancellationToken) {
    let group = consumer.context();
    let none = HashSet::new();
    while !shutdown.is_cancelled() {
        group.store_done(consumer, &none);
        let paused = group.flush_backlogs(consumer);
        match consumer.poll(if paused { POLL_PAUSED } else { POLL }) {
            None => {}
            Some(Ok(msg)) => {
                let next = NextOffset::after(&msg);
                let delivery = Delivery {
                    msg: msg.detach(),
                    next,
                };
                group.dispatch(consumer, delivery);
            }
            Some(Err(err)) => {
                crate::kafka_log::consumer_error(&err);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
