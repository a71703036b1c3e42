//! The floor of the required stack for inbound events (figure 5): a bare
//! rdkafka consumer hands each `payment.authorized` event to one of six
//! workers (by partition, as the relay's), and each runs pgbench's own
//! transaction (`scripts/bench/pg-inbound.sql`) on its tokio-postgres
//! connection. No idempotency key check beyond the insert, no state
//! machine, no offsets, no dead letters, no publishing of what it wrote,
//! no metrics or logs: what the crates the relay must use cost here.

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

const INBOX: &str = "INSERT INTO processed_events (scope, event_key, topic, order_id, outcome) \
     VALUES ('/payment-service', $1, 'payment.authorized', $2, 'applied') \
     ON CONFLICT (scope, event_key) DO NOTHING";

const LOCK: &str = "SELECT o.id, o.user_id, o.status, o.currency, o.total_amount, o.version, \
     o.shipping_address, o.carrier, o.tracking_number, o.cancellation_reason, o.payment_id, \
     o.inventory_reserved_at, o.reservation_id, o.created_at, o.updated_at, \
     (SELECT coalesce(jsonb_agg(jsonb_build_object('productId', i.product_id, \
         'quantity', i.quantity, 'unitPrice', i.unit_price, 'lineTotal', i.line_total) \
         ORDER BY i.line_no), '[]'::jsonb) FROM order_items i WHERE i.order_id = o.id) AS items \
     FROM orders o WHERE o.id = $1 FOR UPDATE";

const CONFIRM: &str = "WITH e AS ( \
       SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') \
               || substr(md5(random()::text), 1, 20))::uuid AS eid, now() AS at \
     ), u AS ( \
       UPDATE orders SET status = 'CONFIRMED', version = $3 + 1, updated_at = e.at, \
         payment_id = $2, carrier = NULL, tracking_number = NULL, cancellation_reason = NULL \
       FROM e WHERE id = $1 AND version = $3 RETURNING id \
     ), h AS ( \
       INSERT INTO order_status_history (order_id, from_status, to_status, reason, actor, created_at) \
       SELECT u.id, 'PENDING', 'CONFIRMED', NULL, 'payment.authorized', e.at FROM u, e \
     ), ob AS ( \
       INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, headers, shard) \
       SELECT e.eid, u.id, $3 + 1, 'order.confirmed', 'order.confirmed', \
         json_build_object('eventId', e.eid, 'eventType', 'order.confirmed', 'occurredAt', e.at, \
           'orderId', u.id, 'userId', 'bench', 'version', $3 + 1, \
           'data', json_build_object('paymentId', $2::text)), \
         '{}'::jsonb, abs(hashtext(u.id::text)) % 32 \
       FROM u, e \
     ) SELECT count(*) FROM u";

/// One event: its key (the event id), order and payment id.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inbound {
    event_id: String,
    order_id: uuid::Uuid,
    payment_id: String,
}

/// Applies `count` events from `topic` and prints the rate from the first
/// applied event to the last.
pub async fn inbound_floor(
    brokers: &str,
    topic: &str,
    pg: &str,
    count: usize,
) -> anyhow::Result<()> {
    const WORKERS: usize = 6;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("floor-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()?;
    consumer.subscribe(&[topic])?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Instant>();
    let mut senders = Vec::new();
    for _ in 0..WORKERS {
        let (tx, rx) = mpsc::unbounded_channel::<Inbound>();
        senders.push(tx);
        tokio::spawn(worker(pg.to_owned(), rx, done_tx.clone()));
    }
    let reader = tokio::spawn(async move {
        loop {
            let Ok(msg) = consumer.recv().await else {
                continue;
            };
            let Some(Ok(event)) = msg.payload().map(serde_json::from_slice::<Inbound>) else {
                continue;
            };
            let _ = senders[msg.partition() as usize % WORKERS].send(event);
        }
    });
    let first = done_rx
        .recv()
        .await
        .ok_or_else(|| anyhow::anyhow!("no event applied"))?;
    let mut last = first;
    for _ in 1..count {
        last = done_rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("workers ended"))?;
    }
    reader.abort();
    let secs = last.duration_since(first).as_secs_f64();
    println!(
        "inbound floor: {count} events applied, {:.0} events/s",
        (count - 1) as f64 / secs
    );
    Ok(())
}

/// Runs pgbench's transaction for each event, one at a time.
async fn worker(
    pg: String,
    mut rx: mpsc::UnboundedReceiver<Inbound>,
    done: mpsc::UnboundedSender<Instant>,
) {
    let Ok((mut client, connection)) = tokio_postgres::connect(&pg, NoTls).await else {
        return;
    };
    tokio::spawn(connection);
    let (Ok(inbox), Ok(lock), Ok(confirm)) = (
        client.prepare(INBOX).await,
        client.prepare(LOCK).await,
        client.prepare(CONFIRM).await,
    ) else {
        return;
    };
    while let Some(event) = rx.recv().await {
        let Ok(tx) = client.transaction().await else {
            return;
        };
        let applied = async {
            tx.execute(&inbox, &[&event.event_id, &event.order_id])
                .await?;
            let row = tx.query_one(&lock, &[&event.order_id]).await?;
            let version: i64 = row.try_get(5)?;
            tx.query_one(&confirm, &[&event.order_id, &event.payment_id, &version])
                .await?;
            tx.commit().await
        }
        .await;
        if applied.is_ok() {
            let _ = done.send(Instant::now());
        }
    }
}
