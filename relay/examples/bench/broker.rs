//! The broker-side modes: raw producer limit, ping, steady rate, inbound events.

use crate::common::{kafka, pick};
use order_relay::kafka::{create_topics, producer_config};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, Instant};

pub async fn producer(brokers: &str, topic: &str, count: usize) -> anyhow::Result<()> {
    let settings = kafka(brokers);
    create_topics(&settings, &[topic.to_owned()]).await?;
    let producer: FutureProducer = producer_config(&settings).create()?;
    let payload = format!(
        "{{\"eventId\":\"{}\",\"eventType\":\"order.placed\",\"occurredAt\":\"2026-01-01T00:00:00.000Z\",\
         \"orderId\":\"{}\",\"userId\":\"alice\",\"version\":1,\"data\":{{\"items\":[{{\"productId\":\"sku-1\",\
         \"quantity\":2,\"unitPrice\":1999,\"lineTotal\":3998}}],\"totalAmount\":3998,\"currency\":\"USD\"}}}}",
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7()
    );
    let started = Instant::now();
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let key = uuid::Uuid::now_v7().to_string();
        let id = uuid::Uuid::now_v7().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_specversion",
                value: Some("1.0"),
            })
            .insert(Header {
                key: "ce_id",
                value: Some(id.as_str()),
            })
            .insert(Header {
                key: "ce_type",
                value: Some("order.placed"),
            })
            .insert(Header {
                key: "ce_source",
                value: Some("/order-service"),
            })
            .insert(Header {
                key: "ce_subject",
                value: Some(key.as_str()),
            })
            .insert(Header {
                key: "ce_time",
                value: Some("2026-01-01T00:00:00.000Z"),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        match producer.send_result(record) {
            Ok(f) => pending.push(f),
            Err((e, _)) => anyhow::bail!("send {i}: {e}"),
        }
        // Keep the local queue bounded like the relay's batches do.
        if pending.len() >= 50_000 {
            for f in pending.drain(..) {
                f.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for f in pending {
        f.await?.map_err(|(e, _)| e)?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw producer: {count} records ({} bytes each) in {secs:.2} s = {:.0} records/s",
        payload.len(),
        count as f64 / secs
    );
    Ok(())
}

/// A raw producer at `rate` records/s for `secs` s (the relay's record
/// shape and settings): p50/p99 of each record's send -> ack time.
pub async fn steady(brokers: &str, topic: &str, rate: u64, secs: u64) -> anyhow::Result<()> {
    let settings = kafka(brokers);
    create_topics(&settings, &[topic.to_owned()]).await?;
    let producer: FutureProducer = producer_config(&settings).create()?;
    let payload = "x".repeat(540);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut acks = tokio::task::JoinSet::new();
    for _ in 0..rate * secs {
        tick.tick().await;
        let key = uuid::Uuid::now_v7().to_string();
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        let sent = Instant::now();
        let ack = producer.send_result(record).map_err(|(e, _)| e)?;
        acks.spawn(async move {
            let acked = matches!(ack.await, Ok(Ok(_)));
            (acked, sent.elapsed().as_secs_f64() * 1e3)
        });
    }
    let mut lat = Vec::new();
    while let Some(done) = acks.join_next().await {
        if let Ok((true, ms)) = done {
            lat.push(ms);
        }
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "raw producer at {rate} records/s for {secs} s: {} acked; ack p50 {:.1} ms, p99 {:.1} ms",
        lat.len(),
        pick(&lat, 0.50),
        pick(&lat, 0.99)
    );
    Ok(())
}

/// `count` payment.authorized events, one per order `prefix` + 1..=count,
/// one record per record batch: Tansu answers a fetch at an offset inside a
/// batch with the batches that start after it (its storage picks batches by
/// base offset), so a consumer that pauses a partition mid-batch (ours does
/// when a worker is behind) would wait forever or skip the batch's rest.
/// Apache Kafka returns the batch that holds the offset.
pub async fn inbound(brokers: &str, topic: &str, count: u64, prefix: &str) -> anyhow::Result<()> {
    let settings = kafka(brokers);
    create_topics(&settings, &[topic.to_owned()]).await?;
    let producer: FutureProducer = producer_config(&settings)
        .set("batch.num.messages", "1")
        .create()?;
    let mut pending = Vec::with_capacity(count as usize);
    for k in 1..=count {
        let order_id = format!("{prefix}{k:012x}");
        let event_id = uuid::Uuid::now_v7().to_string();
        let payload = format!(
            "{{\"eventId\":\"{event_id}\",\"orderId\":\"{order_id}\",\"paymentId\":\"pay-{k}\"}}"
        );
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_id",
                value: Some(event_id.as_str()),
            })
            .insert(Header {
                key: "ce_source",
                value: Some("/payment-service"),
            });
        let record = FutureRecord::to(topic)
            .key(&order_id)
            .payload(&payload)
            .headers(headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for ack in pending {
        ack.await?.map_err(|(e, _)| e)?;
    }
    println!("{count} payment.authorized events on {topic}");
    Ok(())
}

/// One record at a time: the broker's acknowledgement latency floor.
pub async fn ping(brokers: &str, topic: &str, count: usize) -> anyhow::Result<()> {
    let settings = kafka(brokers);
    create_topics(&settings, &[topic.to_owned()]).await?;
    let producer: FutureProducer = producer_config(&settings).create()?;
    let mut lat = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("k{i}");
        let started = Instant::now();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload("{}"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        lat.push(started.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "broker ack latency, one record at a time: p50 {:.1} ms, p99 {:.1} ms",
        lat[count / 2],
        lat[(count * 99 / 100).min(count - 1)]
    );
    Ok(())
}
