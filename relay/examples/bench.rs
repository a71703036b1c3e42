//! Benchmark helpers for `./scripts/bench-relay.sh` (not a test).
//!
//! `bench producer --brokers B --topic T --count N`
//!     a raw rdkafka producer (same settings and record shape as the relay):
//!     the broker-side limit.
//! `bench ping --brokers B --topic T --count N`
//!     sends one record at a time: the broker's acknowledgement latency.
//! `bench latency --api URL --token JWT --relay-metrics URL --rate R --secs S`
//!     the same load; p50/p99 of the relay's own commit -> ack histogram
//!     and of its share, commit -> send call.
//! `bench steady --brokers B --topic T --rate R --secs S`
//!     a raw producer at R records/s: each record's ack latency (beside the
//!     `latency` load, in the same run).
//! `bench inbound --brokers B --topic T --count N --prefix P`
//!     N `payment.authorized` events for the orders `P` + 12 hex digits of
//!     1..=N (the orders `scripts/bench.sh` inserts).
//! `bench latency --api URL --token JWT --brokers B --topic T --rate R --secs S`
//!     places R orders/s through the API for S seconds and measures, per
//!     order, the time from the API's 201 (after commit) to the record's
//!     arrival at a consumer: commit -> ack plus the consumer's fetch.

use order_relay::config::KafkaSettings;
use order_relay::kafka::{create_topics, producer_config};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| default.to_owned())
}

fn kafka(brokers: &str) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers.to_owned(),
        topic_prefix: String::new(),
        create_topics: true,
        topic_partitions: 6,
        topic_replication: 1,
        message_timeout: Duration::from_secs(30),
        message_max_bytes: 1_000_000,
        linger: Duration::from_millis(5),
        debug: None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let brokers = arg(&args, "--brokers", "127.0.0.1:9092");
    let topic = arg(&args, "--topic", "bench.raw");
    match args.first().map(String::as_str) {
        Some("producer") => {
            producer(&brokers, &topic, arg(&args, "--count", "200000").parse()?).await
        }
        Some("ping") => ping(&brokers, &topic, arg(&args, "--count", "200").parse()?).await,
        Some("steady") => {
            steady(
                &brokers,
                &topic,
                arg(&args, "--rate", "1000").parse()?,
                arg(&args, "--secs", "10").parse()?,
            )
            .await
        }
        Some("inbound") => {
            inbound(
                &brokers,
                &topic,
                arg(&args, "--count", "10000").parse()?,
                &arg(&args, "--prefix", "eeeeeeee-0000-7000-8000-"),
            )
            .await
        }
        Some("latency") if args.iter().any(|a| a == "--relay-metrics") => {
            ack_latency(
                &arg(&args, "--api", "http://127.0.0.1:3003"),
                &arg(&args, "--token", ""),
                &arg(&args, "--relay-metrics", ""),
                arg(&args, "--rate", "1000").parse()?,
                arg(&args, "--secs", "20").parse()?,
            )
            .await
        }
        Some("latency") => {
            latency(
                &arg(&args, "--api", "http://127.0.0.1:3003"),
                &arg(&args, "--token", ""),
                &brokers,
                &topic,
                arg(&args, "--rate", "1000").parse()?,
                arg(&args, "--secs", "20").parse()?,
            )
            .await
        }
        _ => anyhow::bail!("usage: bench producer|ping|steady|inbound|latency [options]"),
    }
}

async fn producer(brokers: &str, topic: &str, count: usize) -> anyhow::Result<()> {
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

/// Places `rate` orders/s for `secs` seconds; returns how many got a 201.
/// With `created`, each new order's id is sent with the instant its 201
/// arrived (that is, after its commit).
async fn place_orders(
    api: &str,
    token: &str,
    rate: u64,
    secs: u64,
    created: Option<tokio::sync::mpsc::UnboundedSender<(String, Instant)>>,
) -> (usize, Vec<f64>) {
    let http = reqwest::Client::new();
    let body = serde_json::json!({
        "currency": "USD",
        "items": [{"productId": "sku-1", "quantity": 2, "unitPrice": 1999}],
        "shippingAddress": {"name": "Bench", "line1": "1 Main St", "city": "X", "postalCode": "1", "country": "US"}
    });
    let url = format!("{api}/api/orders");
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..rate * secs {
        tick.tick().await;
        let (http, url, token, body) = (http.clone(), url.clone(), token.to_owned(), body.clone());
        let created = created.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let Ok(resp) = http.post(&url).bearer_auth(&token).json(&body).send().await else {
                return None;
            };
            let done = Instant::now();
            if resp.status() != 201 {
                return None;
            }
            let ms = done.duration_since(sent).as_secs_f64() * 1e3;
            if let Some(tx) = created
                && let Ok(v) = resp.json::<serde_json::Value>().await
                && let Some(id) = v["id"].as_str()
            {
                let _ = tx.send((id.to_owned(), done));
            }
            Some(ms)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(ms)) = done {
            latencies.push(ms);
        }
    }
    latencies.sort_by(f64::total_cmp);
    (latencies.len(), latencies)
}

/// The `q` quantile of sorted values.
fn pick(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// `(upper bound, cumulative count)` of the histogram `name`.
async fn latency_buckets(url: &str, name: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = reqwest::get(url).await?.text().await?;
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        buckets.push((le, count.trim().parse()?));
    }
    Ok(buckets)
}

/// The counts of cumulative histogram `after` since `before`.
fn minus(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, c)| {
            let was = before.iter().find(|b| b.0 == *le).map_or(0.0, |b| b.1);
            (*le, c - was)
        })
        .collect()
}

/// The quantile `q` of a cumulative histogram, interpolated inside its bucket.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if !le.is_finite() {
                return lower.0;
            }
            let inside = (count - lower.1).max(1.0);
            return lower.0 + (le - lower.0) * ((rank - lower.1) / inside);
        }
        lower = (le, count);
    }
    f64::NAN
}

/// Commit -> ack latency as the relay measures it (created_at -> broker ack),
/// from its histogram before and after a steady load through the API.
async fn ack_latency(
    api: &str,
    token: &str,
    metrics: &str,
    rate: u64,
    secs: u64,
) -> anyhow::Result<()> {
    let before = latency_buckets(metrics, "outbox_publish_latency_seconds").await?;
    let before_send = latency_buckets(metrics, "outbox_send_delay_seconds").await?;
    let (placed, http) = place_orders(api, token, rate, secs, None).await;
    println!(
        "HTTP create at {rate} orders/s: p50 {:.1} ms, p99 {:.1} ms",
        pick(&http, 0.50),
        pick(&http, 0.99)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let delta = minus(
        &latency_buckets(metrics, "outbox_publish_latency_seconds").await?,
        &before,
    );
    let send = minus(
        &latency_buckets(metrics, "outbox_send_delay_seconds").await?,
        &before_send,
    );
    let published = delta.last().map(|b| b.1).unwrap_or(0.0);
    println!(
        "commit->ack at {rate} orders/s for {secs} s: {placed} placed, {published:.0} published; p50 {:.1} ms, p99 {:.1} ms",
        quantile(&delta, 0.50) * 1e3,
        quantile(&delta, 0.99) * 1e3
    );
    println!(
        "commit->send call (the relay's share): p50 {:.1} ms, p99 {:.1} ms",
        quantile(&send, 0.50) * 1e3,
        quantile(&send, 0.99) * 1e3
    );
    Ok(())
}

/// A raw producer at `rate` records/s for `secs` s (the relay's record
/// shape and settings): p50/p99 of each record's send -> ack time.
async fn steady(brokers: &str, topic: &str, rate: u64, secs: u64) -> anyhow::Result<()> {
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
async fn inbound(brokers: &str, topic: &str, count: u64, prefix: &str) -> anyhow::Result<()> {
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
async fn ping(brokers: &str, topic: &str, count: usize) -> anyhow::Result<()> {
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

async fn latency(
    api: &str,
    token: &str,
    brokers: &str,
    topic: &str,
    rate: u64,
    secs: u64,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("bench-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    consumer.subscribe(&[topic])?;
    // Wait for the assignment so that "latest" is fixed before we start.
    let join = Instant::now();
    while consumer.assignment()?.count() == 0 && join.elapsed() < Duration::from_secs(30) {
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let total = rate * secs;
    let producer = tokio::spawn({
        let (api, token) = (api.to_owned(), token.to_owned());
        async move { place_orders(&api, &token, rate, secs, Some(tx)).await }
    });

    let mut committed: HashMap<String, Instant> = HashMap::new();
    let mut arrived: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(secs + 30);
    while Instant::now() < deadline && arrived.len() < total as usize {
        tokio::select! {
            Some((id, at)) = rx.recv() => { committed.insert(id, at); }
            msg = tokio::time::timeout(Duration::from_millis(200), consumer.recv()) => {
                if let Ok(Ok(m)) = msg {
                    let at = Instant::now();
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    arrived.entry(key).or_insert(at);
                }
            }
        }
        if producer.is_finished() && committed.len() == arrived.len() && !committed.is_empty() {
            break;
        }
    }
    while let Ok((id, at)) = rx.try_recv() {
        committed.insert(id, at);
    }
    let mut lat: Vec<f64> = committed
        .iter()
        .filter_map(|(id, c)| {
            arrived
                .get(id)
                .map(|a| a.saturating_duration_since(*c).as_secs_f64() * 1e3)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "latency at {rate} orders/s for {secs} s: {} placed, {} arrived; commit->consumer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        committed.len(),
        lat.len(),
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
