//! The modes that load the API: commit -> ack from the relay's histograms,
//! and commit -> consumer end to end.

use crate::common::pick;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use std::collections::HashMap;
use std::time::{Duration, Instant};

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

/// Places `rate` orders/s for `secs` seconds and prints the p50/p99 of the
/// HTTP create (of the API, or of the floor of the required stack);
/// returns how many got a 201.
pub async fn http_latency(api: &str, token: &str, rate: u64, secs: u64) -> usize {
    let (placed, http) = place_orders(api, token, rate, secs, None).await;
    println!(
        "HTTP create at {rate} orders/s: p50 {:.1} ms, p99 {:.1} ms",
        pick(&http, 0.50),
        pick(&http, 0.99)
    );
    placed
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
pub fn minus(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, c)| {
            let was = before.iter().find(|b| b.0 == *le).map_or(0.0, |b| b.1);
            (*le, c - was)
        })
        .collect()
}

/// The quantile `q` of a cumulative histogram, interpolated inside its bucket.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
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
pub async fn ack_latency(
    api: &str,
    token: &str,
    metrics: &str,
    pg: Option<&str>,
    rate: u64,
    secs: u64,
) -> anyhow::Result<()> {
    let names = [
        "outbox_publish_latency_seconds",
        "outbox_send_delay_seconds",
        "outbox_claim_seconds",
    ];
    let mut before = Vec::new();
    for name in names {
        before.push(latency_buckets(metrics, name).await?);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let probe = pg.map(|url| {
        let (url, stop) = (url.to_owned(), stop.clone());
        tokio::spawn(async move { crate::pg::round_trips(&url, stop).await })
    });
    let placed = http_latency(api, token, rate, secs).await;
    stop.cancel();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut deltas = Vec::new();
    for (name, was) in names.iter().zip(&before) {
        deltas.push(minus(&latency_buckets(metrics, name).await?, was));
    }
    let (delta, send, claim) = (&deltas[0], &deltas[1], &deltas[2]);
    let published = delta.last().map(|b| b.1).unwrap_or(0.0);
    println!(
        "commit->ack at {rate} orders/s for {secs} s: {placed} placed, {published:.0} published; p50 {:.1} ms, p99 {:.1} ms",
        quantile(delta, 0.50) * 1e3,
        quantile(delta, 0.99) * 1e3
    );
    println!(
        "commit->send call (the relay's share): p50 {:.1} ms, p99 {:.1} ms",
        quantile(send, 0.50) * 1e3,
        quantile(send, 0.99) * 1e3
    );
    println!(
        "claim statement (the relay's): {:.0} claims; p50 {:.1} ms, p99 {:.1} ms",
        claim.last().map(|b| b.1).unwrap_or(0.0),
        quantile(claim, 0.50) * 1e3,
        quantile(claim, 0.99) * 1e3
    );
    if let Some(probe) = probe {
        crate::pg::report(&probe.await??);
    }
    Ok(())
}

pub async fn latency(
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
