//! The floor of the required stack for publishing (figure 3's CPU per
//! event): one task on one tokio-postgres connection and the relay's
//! rdkafka producer settings. Every poll interval it deletes the rows
//! acknowledged since the last poll and claims the next ones after the last
//! id it sent (both statements pipelined, as the relay sends them), and
//! sends those records with the relay's key, payload and CloudEvents
//! headers. No shards, leases, per-order holds, retries, parking, hints,
//! metrics or logs, and no task is woken by an ack: what the crates the
//! relay must use cost for the same records at the same poll interval.
//! A row committed behind the last id sent waits until a claim finds
//! nothing and nothing is in flight; then the claim starts again from the
//! first row.

use crate::common::kafka;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use order_relay::kafka::{create_topics, producer_config};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use tokio_postgres::NoTls;

const CLAIM: &str = "SELECT id, event_id::text, aggregate_id::text, event_type, topic, payload::text, \
     headers->>'traceparent', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
     FROM outbox WHERE id > $1 AND parked_at IS NULL ORDER BY id LIMIT 4096";
const DELETE: &str = "DELETE FROM outbox WHERE id = ANY($1)";

/// Publishes the outbox of `pg` to `prefix` + each row's topic (`topics`
/// are created first) until the process is stopped. Prints one line when
/// it is ready.
pub async fn publish_floor(
    brokers: &str,
    pg: &str,
    prefix: &str,
    topics: &[&str],
    poll: Duration,
) -> anyhow::Result<()> {
    let settings = kafka(brokers);
    let names: Vec<String> = topics.iter().map(|t| format!("{prefix}{t}")).collect();
    create_topics(&settings, &names).await?;
    let producer: FutureProducer = producer_config(&settings).create()?;
    // Without sequential scans, as the relay's lease session: a plan made
    // on a near-empty outbox must not stay a scan of the whole table.
    let mut config: tokio_postgres::Config = pg.parse()?;
    let (client, connection) = config
        .options("-c enable_seqscan=off")
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    let (claim, delete) = (client.prepare(CLAIM).await?, client.prepare(DELETE).await?);
    println!("publish floor: ready");
    let mut in_flight = FuturesUnordered::new();
    let (mut after, mut acked, mut found_none) = (0i64, Vec::<i64>::new(), false);
    loop {
        while let Some(Some((id, delivered))) = in_flight.next().now_or_never() {
            if delivered {
                acked.push(id);
            }
        }
        if found_none && in_flight.is_empty() {
            after = 0;
        }
        let deleted = async {
            if acked.is_empty() {
                Ok(0)
            } else {
                client.execute(&delete, &[&acked]).await
            }
        };
        let from: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&after];
        let claimed = client.query(&claim, &from);
        let (deleted, rows) = tokio::join!(deleted, claimed);
        deleted?;
        acked.clear();
        let rows = rows?;
        found_none = rows.is_empty();
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let (event_id, key, event_type): (&str, &str, &str) =
                (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            let topic = format!("{prefix}{}", row.try_get::<_, &str>(4)?);
            let payload: &str = row.try_get(5)?;
            let traceparent: Option<&str> = row.try_get(6)?;
            let time: &str = row.try_get(7)?;
            let header = |key, value| Header {
                key,
                value: Some(value),
            };
            let mut headers = OwnedHeaders::new_with_capacity(8)
                .insert(header("ce_specversion", "1.0"))
                .insert(header("ce_id", event_id))
                .insert(header("ce_type", event_type))
                .insert(header("ce_source", "/order-service"))
                .insert(header("ce_subject", key))
                .insert(header("ce_time", time))
                .insert(header("content-type", "application/json"));
            if let Some(tp) = traceparent {
                headers = headers.insert(header("traceparent", tp));
            }
            let record = FutureRecord::to(&topic)
                .key(key)
                .payload(payload)
                .headers(headers);
            after = after.max(id);
            // A record the local queue refused is claimed again later.
            if let Ok(ack) = producer.send_result(record) {
                in_flight.push(ack.map(move |r| (id, matches!(r, Ok(Ok(_))))));
            }
        }
        tokio::time::sleep(poll).await;
    }
}
