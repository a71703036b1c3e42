//! `order-relay dlq list` and `order-relay dlq replay`: reading the
//! dead-letter topic and re-driving its records to their original topics
//! once an operator has fixed the cause. A replayed record carries the
//! original key, value and headers (the `dlq_*` headers removed) plus
//! `replayed-from: <dlqTopic>/<partition>/<offset>`. Replaying twice is
//! harmless: the consumer's inbox applies an event once per key.

use crate::config::KafkaSettings;
use crate::consumer::dead_letter::{OFFSET_HEADER, PARTITION_HEADER, REASON_HEADER, TOPIC_HEADER};
use crate::kafka::{client_config, producer_config};
use crate::producer::{CheckedProducer, Outgoing};
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// One dead-lettered record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    /// The DLQ record's timestamp (when it was dead-lettered).
    pub timestamp: Option<DateTime<Utc>>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// All headers, in order, the `dlq_*` ones included.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The topic the record was consumed from.
    pub fn original_topic(&self) -> Option<&str> {
        self.header(TOPIC_HEADER)
    }

    pub fn reason(&self) -> &str {
        self.header(REASON_HEADER).unwrap_or("")
    }

    /// The headers to replay with: the original ones plus `replayed-from`.
    pub fn replay_headers(&self, dlq_topic: &str) -> OwnedHeaders {
        let from = format!("{dlq_topic}/{}/{}", self.partition, self.offset);
        let dlq = [REASON_HEADER, TOPIC_HEADER, PARTITION_HEADER, OFFSET_HEADER];
        self.headers
            .iter()
            .filter(|(k, _)| !dlq.contains(&k.as_str()) && k != "replayed-from")
            .fold(OwnedHeaders::new(), |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: v.as_deref(),
                })
            })
            .insert(Header {
                key: "replayed-from",
                value: Some(from.as_bytes()),
            })
    }
}

/// Which dead letters to replay (all conditions AND-ed).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Original topic, with or without the environment's prefix.
    pub topic: Option<String>,
    /// Dead-lettered at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many, the first in (partition, offset) order.
    pub limit: Option<usize>,
}

impl Selection {
    /// The records selected, oldest first.
    pub fn apply<'a>(&self, records: &'a [DeadLetter], prefix: &str) -> Vec<&'a DeadLetter> {
        let wanted = self.topic.as_ref().map(|t| {
            let prefixed = format!("{prefix}{t}");
            (t.clone(), prefixed)
        });
        let mut picked: Vec<&DeadLetter> = records
            .iter()
            .filter(|r| match (&wanted, r.original_topic()) {
                (None, _) => true,
                (Some((plain, prefixed)), Some(t)) => t == plain || t == prefixed,
                (Some(_), None) => false,
            })
            .filter(|r| match self.since {
                None => true,
                Some(since) => r.timestamp.is_some_and(|t| t >= since),
            })
            .collect();
        // In the dead-letter topic's own order: one order's records share a
        // key, hence a partition, so their order is kept.
        picked.sort_by_key(|r| (r.partition, r.offset));
        if let Some(limit) = self.limit {
            picked.truncate(limit);
        }
        picked
    }
}

/// Reads the whole dead-letter topic: every partition from the beginning
/// until no record arrives for `quiet` (the test broker's high watermark
/// can trail the last records, so the end is found by silence).
pub fn read_all(
    settings: &KafkaSettings,
    dlq_topic: &str,
    quiet: Duration,
) -> Result<Vec<DeadLetter>, KafkaError> {
    // A group id is required to assign partitions; this one never joins a
    // group (no subscribe) and commits nothing.
    let consumer: BaseConsumer = client_config(settings)
        .set("group.id", "order-relay-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(dlq_topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for topic in metadata.topics() {
        if let Some(err) = topic.error() {
            return Err(KafkaError::MetadataFetch(err.into()));
        }
        for p in topic.partitions() {
            tpl.add_partition_offset(dlq_topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => return Err(e),
            Some(Ok(m)) => {
                last = Instant::now();
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(DeadLetter {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m
                        .timestamp()
                        .to_millis()
                        .and_then(DateTime::from_timestamp_millis),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
    Ok(out)
}

/// Re-produces `records` to their original topics; returns how many.
pub async fn replay(
    settings: &KafkaSettings,
    dlq_topic: &str,
    records: &[&DeadLetter],
) -> Result<usize, anyhow::Error> {
    let producer = CheckedProducer::create(&producer_config(settings))?;
    let mut sent = 0;
    for r in records {
        let Some(topic) = r.original_topic() else {
            anyhow::bail!(
                "{dlq_topic}/{}/{} has no {TOPIC_HEADER} header",
                r.partition,
                r.offset
            );
        };
        let record = Outgoing {
            topic,
            key: r.key.as_deref(),
            payload: r.payload.as_deref(),
            headers: r.replay_headers(dlq_topic),
        };
        producer
            .send(record, settings.message_timeout)
            .await
            .map_err(|e| {
                anyhow::anyhow!("replaying {dlq_topic}/{}/{}: {e}", r.partition, r.offset)
            })?;
        sent += 1;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(offset: i64, topic: &str, secs: i64) -> DeadLetter {
        DeadLetter {
            partition: 1,
            offset,
            timestamp: DateTime::from_timestamp(secs, 0),
            key: Some(b"order-1".to_vec()),
            payload: Some(b"{}".to_vec()),
            headers: vec![
                ("ce_id".into(), Some(b"ce-1".to_vec())),
                (REASON_HEADER.into(), Some(b"unknown order".to_vec())),
                (TOPIC_HEADER.into(), Some(topic.as_bytes().to_vec())),
                (PARTITION_HEADER.into(), Some(b"2".to_vec())),
                (OFFSET_HEADER.into(), Some(b"9".to_vec())),
            ],
        }
    }

    #[test]
    fn replay_headers_drop_dlq_headers_and_say_where_from() {
        let h = letter(7, "payment.authorized", 0).replay_headers("order-service.dlq");
        let pairs: Vec<(String, String)> = h
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("ce_id".to_owned(), "ce-1".to_owned()),
                (
                    "replayed-from".to_owned(),
                    "order-service.dlq/1/7".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn selection_by_topic_time_and_limit() {
        let records = vec![
            letter(1, "stg.payment.authorized", 100),
            letter(2, "stg.payment.failed", 200),
            letter(3, "stg.payment.authorized", 300),
        ];
        let all = Selection::default().apply(&records, "stg.");
        assert_eq!(all.len(), 3);
        let by_topic = Selection {
            topic: Some("payment.authorized".into()),
            ..Selection::default()
        };
        let offsets: Vec<i64> = by_topic
            .apply(&records, "stg.")
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, vec![1, 3]);
        let recent = Selection {
            since: DateTime::from_timestamp(200, 0),
            limit: Some(1),
            ..Selection::default()
        };
        let offsets: Vec<i64> = recent
            .apply(&records, "stg.")
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, vec![2]);
        assert_eq!(records[0].reason(), "unknown order");
    }
}
