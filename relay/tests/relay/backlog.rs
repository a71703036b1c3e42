//! A relay behind its outbox sends its full batches through the backlog
//! producer (a longer `linger.ms`); a batch that is not full goes through
//! the other one, and order per order holds across the two.

use crate::helpers::*;
use order_shared::testing::fresh_database;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_batches_go_through_the_backlog_producer_and_a_lone_row_does_not() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    fill_outbox(&db, 50, 6, 8).await;
    // Every claim takes up to 10 rows of its shard, and the rows are all
    // there before the relay starts: at least this many batches are full.
    let full_at_least = count(
        &db,
        "SELECT coalesce(sum(n / 10), 0)::int8 FROM \
         (SELECT count(*) AS n FROM outbox GROUP BY shard) s",
    )
    .await;
    assert!(full_at_least > 0);
    let env = relay_env(
        &db,
        &prefix,
        &brokers(),
        &[
            ("OUTBOX_BATCH_SIZE", "10"),
            ("KAFKA_BACKLOG_LINGER_MS", "100"),
            ("CONSUMER_ENABLED", "false"),
        ],
    );
    let relay = spawn_relay(env).await;
    assert_each_once_in_order(&prefix, 50, 6).await;
    let backlog = total(
        &metrics_text(relay.port).await,
        "outbox_backlog_batches_total",
    );
    assert!(
        backlog >= full_at_least as f64,
        "{backlog} batches through the backlog producer, {full_at_least} full"
    );

    // One new row: a batch that is not full, sent by the other producer.
    fill_outbox(&db, 1, 1, 8).await;
    eventually("the lone row deleted", Duration::from_secs(10), || async {
        outbox_count(&db).await == 0
    })
    .await;
    assert_eq!(
        total(
            &metrics_text(relay.port).await,
            "outbox_backlog_batches_total"
        ),
        backlog,
        "a batch that is not full went through the backlog producer"
    );
    relay.stop().await;
}
