//! The checker: reads every topic the whole run and keeps what it saw.

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::stack::OUT_TOPICS;

/// What the checker read: per event id, the order, version and the
/// producer's timestamp of each copy.
#[derive(Default)]
pub struct Seen {
    pub records: usize,
    pub events: HashMap<Uuid, (Uuid, i64, i64)>,
}

/// Reads every outbound topic from the start, the whole run: a broker
/// restart empties the memory engine, so what is not read before is gone.
pub fn checker(
    brokers: String,
    seen: Arc<Mutex<Seen>>,
    generation: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let current = generation.load(Ordering::SeqCst);
        read_topics(&brokers, &seen, || {
            stop.is_cancelled() || generation.load(Ordering::SeqCst) != current
        });
    }
}

/// Reads from the beginning of every partition until `done`; a new broker
/// (restarted empty) gets a new consumer, reading from its beginning.
pub fn read_topics(brokers: &str, seen: &Mutex<Seen>, done: impl Fn() -> bool) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("chaos-check-{}", Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("log_level", "0")
        .create()
        .expect("checker consumer");
    let topics: Vec<&str> = OUT_TOPICS.to_vec();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for topic in &topics {
        for partition in 0..3 {
            assignment
                .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
                .expect("assignment");
        }
    }
    consumer.assign(&assignment).expect("assign");
    while !done() {
        let Some(Ok(msg)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Some(Ok(value)) = msg
            .payload()
            .map(serde_json::from_slice::<serde_json::Value>)
        else {
            continue;
        };
        let id = value["eventId"].as_str().and_then(|s| s.parse().ok());
        let order = value["orderId"].as_str().and_then(|s| s.parse().ok());
        let (Some(id), Some(order), Some(version)) = (id, order, value["version"].as_i64()) else {
            continue;
        };
        let at = msg.timestamp().to_millis().unwrap_or_default();
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.records += 1;
        seen.events.entry(id).or_insert((order, version, at));
    }
}
