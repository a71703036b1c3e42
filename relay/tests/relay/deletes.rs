//! Published rows are deleted by the shard's next claim, in the same round
//! trip and just before it: a relay that stops deletes the rows no claim
//! took yet, and while deletes fail nothing is claimed (so nothing is sent
//! twice).

use crate::helpers::*;
use order_shared::testing::{TestDb, fresh_database};
use std::time::Duration;

/// `outbox_sent_total` and the sum of `outbox_published_total{topic}`.
async fn sent_and_published(port: u16) -> (f64, f64) {
    let text = metrics_text(port).await;
    (
        total(&text, "outbox_sent_total"),
        total(&text, "outbox_published_total"),
    )
}

async fn read_all(prefix: &str, expected: usize) -> Vec<Record> {
    let consumer = consumer(&brokers(), &topics(prefix, &["order.placed"]));
    read_records(
        &consumer,
        expected,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await
}

async fn execute(db: &TestDb, sql: &str) {
    db.connect().await.batch_execute(sql).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_relay_deletes_the_rows_it_published_since_its_last_claim() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    fill_outbox(&db, 20, 1, 8).await;
    // One claim at the start, the next a minute later: the rows it
    // published wait for that claim to be deleted.
    let env = relay_env(
        &db,
        &prefix,
        &brokers(),
        &[
            ("OUTBOX_POLL_INTERVAL_MS", "60000"),
            ("CONSUMER_ENABLED", "false"),
        ],
    );
    let relay = spawn_relay(env.clone()).await;
    assert_eq!(read_all(&prefix, 20).await.len(), 20, "all published");
    assert_eq!(sent_and_published(relay.port).await.0, 20.0);
    // Batches that are not full settle in the coordinator's polls (a
    // minute away): the stopping worker settles them itself.
    assert_eq!(outbox_count(&db).await, 20, "no claim since the acks");

    relay.stop().await;
    assert_eq!(outbox_count(&db).await, 0, "deleted as the relay stopped");
    let next = spawn_relay(relay_env(
        &db,
        &prefix,
        &brokers(),
        &[("CONSUMER_ENABLED", "false")],
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read_all(&prefix, 20).await.len(), 20, "none sent twice");
    next.stop().await;
}

/// A batch that is not full settles at the coordinator's next poll, but
/// `outbox_publish_latency_seconds` (commit -> ack) is taken when its ack
/// came: with a 3 s poll, it exceeds the commit -> send delay by the
/// broker's ack time, not by the 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_settled_at_the_next_poll_is_timed_at_its_ack() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    fill_outbox(&db, 1, 1, 8).await;
    let env = relay_env(
        &db,
        &prefix,
        &brokers(),
        &[
            ("OUTBOX_POLL_INTERVAL_MS", "3000"),
            ("CONSUMER_ENABLED", "false"),
        ],
    );
    let relay = spawn_relay(env).await;
    eventually("the row deleted", Duration::from_secs(30), || async {
        outbox_count(&db).await == 0
    })
    .await;
    let text = metrics_text(relay.port).await;
    let (latency, delay) = (
        total(&text, "outbox_publish_latency_seconds_sum"),
        total(&text, "outbox_send_delay_seconds_sum"),
    );
    assert_eq!(total(&text, "outbox_publish_latency_seconds_count"), 1.0);
    assert!(
        latency >= delay && latency - delay < 1.5,
        "commit -> ack {latency} s, commit -> send {delay} s"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_deletes_fail_nothing_is_claimed_again_and_nothing_sent_twice() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    execute(
        &db,
        "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'injected: outbox delete refused'; END $$; \
         CREATE TRIGGER refuse_delete BEFORE DELETE ON outbox \
         FOR EACH ROW EXECUTE FUNCTION refuse_delete();",
    )
    .await;
    fill_outbox(&db, 20, 2, 8).await;
    let relay = spawn_relay(relay_env(
        &db,
        &prefix,
        &brokers(),
        &[("CONSUMER_ENABLED", "false")],
    ))
    .await;
    eventually("40 rows acknowledged", Duration::from_secs(30), || async {
        sent_and_published(relay.port).await.1 == 40.0
    })
    .await;
    // Claims every 20 ms for a second: each one's delete fails first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let text = metrics_text(relay.port).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("outbox_delete_errors_total ") && !l.ends_with(" 0")),
        "the failed deletes are counted:\n{text}"
    );
    assert_eq!(sent_and_published(relay.port).await, (40.0, 40.0));
    assert_eq!(outbox_count(&db).await, 40, "the trigger kept every row");

    execute(&db, "DROP TRIGGER refuse_delete ON outbox").await;
    eventually("the outbox emptied", Duration::from_secs(10), || async {
        outbox_count(&db).await == 0
    })
    .await;
    let records = read_all(&prefix, 40).await;
    assert_eq!(records.len(), 40, "none sent twice");
    assert_eq!(sent_and_published(relay.port).await, (40.0, 40.0));
    relay.stop().await;
}
