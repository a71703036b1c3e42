//! The consumer and a locked order row: the order's partition waits (and
//! says so), the others flow, and a rebalance neither waits for the stuck
//! event nor applies it twice.

use crate::consumer_faults::{assert_confirmed_once, consumer_env, place_many, wait_all_confirmed};
use crate::helpers::*;
use crate::inbound::*;
use order_shared::testing::{TestDb, fresh_database};
use std::time::Duration;
use uuid::Uuid;

/// Events sent behind the locked order.
const BEHIND: usize = 1000;

/// Places 13 orders and locks the first one's row in an open transaction
/// (roll the returned session back to release it).
async fn one_locked_and_twelve_free(db: &TestDb) -> (Uuid, Vec<Uuid>, tokio_postgres::Client) {
    let locked = place(db).await;
    let others = place_many(db, 12).await;
    let holder = db.connect().await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM orders WHERE id = '{locked}' FOR UPDATE"
        ))
        .await
        .unwrap();
    (locked, others, holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_order_holds_back_only_its_partition() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let relay = spawn_relay(consumer_env(
        &db,
        &prefix,
        &[
            ("DATABASE_STATEMENT_TIMEOUT_MS", "500"),
            ("CONSUMER_STUCK_SECS", "2"),
        ],
    ))
    .await;
    let events = EventProducer::new(&brokers());
    let (locked, others, holder) = one_locked_and_twelve_free(&db).await;

    // Several times more events behind the locked order than its worker's
    // queue holds (256).
    let topic = format!("{prefix}payment.authorized");
    let (stuck_partition, _) = events.pay(&prefix, locked).await;
    let key = locked.to_string();
    let bodies: Vec<String> = (0..BEHIND).map(|_| event(locked, "")).collect();
    futures_util::future::join_all(bodies.iter().map(|b| events.send(&topic, &key, b, &[]))).await;
    let mut elsewhere = Vec::new();
    for id in &others {
        let (p, _) = events.pay(&prefix, *id).await;
        if p != stuck_partition {
            elsewhere.push(*id);
        }
    }
    assert!(
        !elsewhere.is_empty(),
        "some orders land on other partitions"
    );

    wait_all_confirmed(&db, &elsewhere).await;
    assert_eq!(status(&db, locked).await.0, "PENDING");
    wait_not_ready_naming(relay.port, &format!("{topic}[{stuck_partition}]")).await;

    holder.batch_execute("ROLLBACK").await.unwrap();
    wait_all_confirmed(&db, &others).await;
    wait_status(&db, locked, "CONFIRMED").await;
    eventually(
        "all the locked order's events settled",
        Duration::from_secs(60),
        || async {
            count(&db, "SELECT count(*) FROM processed_events").await
                == 1 + BEHIND as i64 + others.len() as i64
        },
    )
    .await;
    let text = metrics_text(relay.port).await;
    let timeouts = sample(
        &text,
        &format!("consumer_retries_total{{topic=\"{topic}\",reason=\"statement_timeout\"}}"),
    );
    assert!(timeouts >= 1.0, "{text}");
    // Paused while its worker was stuck (256 queued), then again at most
    // once per 192 events (resumed at 64 queued): 5 at most for 1,001
    // events, 4 measured. Resumed at the first free slot instead, it was
    // paused 12 times here, each time dropping what librdkafka had fetched.
    let pauses = sample(
        &text,
        &format!("consumer_partition_pauses_total{{topic=\"{topic}\"}}"),
    );
    assert!((1.0..=6.0).contains(&pauses), "{pauses} pauses: {text}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_does_not_wait_for_a_stuck_event_nor_apply_it_twice() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let env = consumer_env(
        &db,
        &prefix,
        &[
            // Longer than the revocation bound: the event in hand is
            // usually mid-statement when the partition is revoked.
            ("DATABASE_STATEMENT_TIMEOUT_MS", "3000"),
            ("CONSUMER_REVOKE_TIMEOUT_MS", "300"),
        ],
    );
    let first = spawn_relay(env.clone()).await;
    let events = EventProducer::new(&brokers());
    let (locked, others, holder) = one_locked_and_twelve_free(&db).await;
    events.pay(&prefix, locked).await;
    for id in &others {
        events.pay(&prefix, *id).await;
    }
    let topic = format!("{prefix}payment.authorized");
    let timeouts =
        format!("consumer_retries_total{{topic=\"{topic}\",reason=\"statement_timeout\"}}");
    eventually(
        "the first relay retries the locked order",
        Duration::from_secs(60),
        || async { sample(&metrics_text(first.port).await, &timeouts) >= 1.0 },
    )
    .await;

    // A second member joins while the first holds an event it cannot
    // finish: the revocation gives up on it after the bound.
    // (In-process relays share one metrics registry: the counter sums both.)
    let assigns = "consumer_rebalances_total{kind=\"assign\"}";
    assert_eq!(sample(&metrics_text(first.port).await, assigns), 1.0);
    let second = spawn_relay(env).await;
    eventually(
        "the group is assigned again",
        Duration::from_secs(60),
        || async { sample(&metrics_text(second.port).await, assigns) >= 2.0 },
    )
    .await;
    holder.batch_execute("ROLLBACK").await.unwrap();

    let mut all = others.clone();
    all.push(locked);
    wait_all_confirmed(&db, &all).await;
    second.stop().await;
    first.stop().await;
    assert_confirmed_once(&db, &all).await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM processed_events").await,
        13
    );
}
