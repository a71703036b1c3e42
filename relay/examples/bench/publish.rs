//! The floor of the required stack for publishing (figure 3's CPU per
//! event): one task on one tokio-postgres connection and the relay's
//! rdkafka producer settings. Every poll interval it deletes the rows
//! acknowledged since the last poll and claims the next ones after the last
//! id it sent (both statements pipelined, as the relay sends them), and
//! sends those records with the relay's key, payload and CloudEvents
//! headers (decoded into the relay's row type and built by its header
//! function, so that both format the same values). No shards, leases,
//! per-order holds, retries, parking, hints, metrics or logs, and no task
//! is woken by an ack: what the crates the relay must use cost for the
//! same records at the same poll interval.
//! A row committed behind the last id sent waits until a claim finds
//! nothing and nothing is in flight; then the claim starts again from the
//! first row.

use crate::common::kafka;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use order_relay::kafka::{create_topics, producer_config, record_headers};
use order_shared::db::outbox::{OutboxRow, ROW_COLUMNS};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use tokio_postgres::{NoTls, Statement};

/// After the columns ([`ROW_COLUMNS`]): the rows after the last id sent.
const CLAIM: &str = "FROM outbox WHERE id > $1 AND parked_at IS NULL ORDER BY id LIMIT 4096";
const DELETE: &str = "DELETE FROM outbox WHERE id = ANY($1)";

/// A connection to `pg` without sequential scans, as the relay's lease
/// session (a plan made on a near-empty outbox must not stay a scan of the
/// whole table), with the claim `SELECT` [`ROW_COLUMNS`] `from` and the
/// delete of rows by id prepared.
pub async fn outbox_client(
    pg: &str,
    from: &str,
) -> anyhow::Result<(tokio_postgres::Client, Statement, Statement)> {
    let mut config: tokio_postgres::Config = pg.parse()?;
    let (client, connection) = config
        .options("-c enable_seqscan=off")
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    let claim = client
        .prepare(&format!("SELECT {ROW_COLUMNS} {from}"))
        .await?;
    let delete = client.prepare(DELETE).await?;
    Ok((client, claim, delete))
}

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
    let (client, claim, delete) = outbox_client(pg, CLAIM).await?;
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
            // The same columns, types and headers as the relay's rows.
            let row = OutboxRow::from_columns(&row, 0)?;
            let (id, topic) = (row.id, format!("{prefix}{}", row.topic));
            let key = row.order_id.to_string();
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(&row.payload)
                .headers(record_headers(&row));
            after = after.max(id);
            // A record the local queue refused is claimed again later.
            if let Ok(ack) = producer.send_result(record) {
                in_flight.push(ack.map(move |r| (id, matches!(r, Ok(Ok(_))))));
            }
        }
        tokio::time::sleep(poll).await;
    }
}
