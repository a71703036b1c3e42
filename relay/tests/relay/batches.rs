//! A batch in which one row fails: every acknowledged row that no failed row
//! of its order precedes is deleted (so it is never sent again), the rest
//! stay; the `skip` policy holds back the parked row's order only; and an
//! order's event for another topic waits for the ack of the one before.

use crate::helpers::*;
use order_shared::testing::{TestDb, fresh_database};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// Inserts one `order.placed` event of `order` at `version` into shard 0;
/// `pad` bytes make it too large for a 2000-byte message limit.
async fn insert(db: &TestDb, order: Uuid, version: i64, pad: i32) {
    insert_on(db, order, version, "order.placed", pad).await;
}

async fn insert_on(db: &TestDb, order: Uuid, version: i64, topic: &str, pad: i32) {
    db.connect()
        .await
        .execute(
            "INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, shard) \
             VALUES (gen_random_uuid(), $1, $2::int8, $4, $4, \
                     jsonb_build_object('version', $2::int8, 'pad', repeat('x', $3::int4)), 0)",
            &[&order, &version, &pad, &topic],
        )
        .await
        .unwrap();
}

async fn parked(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL",
    )
    .await
}

fn by_order(records: &[Record]) -> HashMap<String, Vec<i64>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for r in records {
        out.entry(r.key.clone())
            .or_default()
            .push(r.value["version"].as_i64().unwrap());
    }
    out
}

/// Each record's key and version, in the order read.
fn versions(records: &[Record]) -> Vec<(String, i64)> {
    records
        .iter()
        .map(|r| (r.key.clone(), r.value["version"].as_i64().unwrap()))
        .collect()
}

/// Orders `a`..: ten orders of two events each, interleaved in one shard
/// with a poison order whose first event is too large.
async fn arrange(db: &TestDb) -> (Uuid, Vec<Uuid>) {
    let poison = Uuid::now_v7();
    let others: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    for (i, order) in others.iter().enumerate() {
        insert(db, *order, 1, 0).await;
        if i == 2 {
            insert(db, poison, 1, 5000).await;
        }
        if i == 6 {
            insert(db, poison, 2, 0).await;
        }
    }
    for order in &others {
        insert(db, *order, 2, 0).await;
    }
    (poison, others)
}

fn env(db: &TestDb, prefix: &str, policy: &str) -> HashMap<String, String> {
    relay_env(
        db,
        prefix,
        &brokers(),
        &[
            ("KAFKA_MESSAGE_MAX_BYTES", "2000"),
            ("OUTBOX_MAX_ATTEMPTS", "3"),
            ("OUTBOX_PARKED_POLICY", policy),
            ("CONSUMER_ENABLED", "false"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_row_holds_back_its_order_only_and_no_other_row_is_sent_twice() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let (poison, others) = arrange(&db).await;
    let relay = spawn_relay(env(&db, &prefix, "stop")).await;

    eventually("the poison row parked", Duration::from_secs(30), || async {
        parked(&db).await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let consumer = consumer(&brokers(), &topics(&prefix, &["order.placed"]));
    let records = read_records(
        &consumer,
        20,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;

    // Three attempts at the poison row; each other event went out once.
    let seen = by_order(&records);
    assert_eq!(
        records.len(),
        20,
        "duplicates: {}",
        records.len() as i64 - 20
    );
    for order in &others {
        assert_eq!(seen[&order.to_string()], vec![1, 2], "order {order}");
    }
    assert!(!seen.contains_key(&poison.to_string()));
    // The poison order's later event waits behind it.
    assert_eq!(outbox_count(&db).await, 2);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_skip_policy_skips_the_parked_rows_order_not_the_shard_position() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let (poison, others) = arrange(&db).await;
    let relay = spawn_relay(env(&db, &prefix, "skip")).await;
    eventually("the poison row parked", Duration::from_secs(30), || async {
        parked(&db).await == 1
    })
    .await;

    // Later events: one more of the poison order (held back) and one of
    // another order (published).
    insert(&db, poison, 3, 0).await;
    insert(&db, others[0], 3, 0).await;
    eventually(
        "only the poison order's rows left",
        Duration::from_secs(20),
        || async { outbox_count(&db).await == 3 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outbox_count(&db).await,
        3,
        "version 2 and 3 of the poison order wait"
    );

    // Fixed and replayed: the poison order's events follow in order.
    db.connect()
        .await
        .execute(
            "UPDATE outbox SET payload = payload::jsonb - 'pad' WHERE aggregate_id = $1",
            &[&poison],
        )
        .await
        .unwrap();
    let pool = order_shared::db::build_pool(&db.settings()).unwrap();
    order_shared::db::outbox::replay_parked(&pool.get().await.unwrap(), None)
        .await
        .unwrap();
    let consumer = consumer(&brokers(), &topics(&prefix, &["order.placed"]));
    let records = read_records(
        &consumer,
        24,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    let seen = by_order(&records);
    assert_eq!(seen[&poison.to_string()], vec![1, 2, 3]);
    assert_eq!(seen[&others[0].to_string()], vec![1, 2, 3]);
    assert_eq!(records.len(), 24, "no duplicates");
    assert_eq!(outbox_count(&db).await, 0);
    relay.stop().await;
}

/// An order placed and cancelled before the relay claims it: its two events
/// are in one batch but go to two topics, so two partitions, which the
/// broker answers independently. While `order.placed` cannot take version
/// 1, version 2 must not be on `order.cancelled` (a consumer of both would
/// see the cancellation first); another order's event on that topic goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_event_for_another_topic_waits_for_the_ack_of_the_one_before() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let names = topics(&prefix, &["order.placed", "order.cancelled"]);
    let (placed, cancelled) = (&names[0], &names[1]);
    // `order.placed` is missing for now: sends to it time out.
    create_topic(&brokers(), cancelled, 3).await;
    let (order, other) = (Uuid::now_v7(), Uuid::now_v7());
    insert_on(&db, order, 1, "order.placed", 0).await;
    insert_on(&db, order, 2, "order.cancelled", 0).await;
    insert_on(&db, other, 1, "order.cancelled", 0).await;
    let relay = spawn_relay(relay_env(
        &db,
        &prefix,
        &brokers(),
        &[
            ("KAFKA_CREATE_TOPICS", "false"),
            ("KAFKA_MESSAGE_TIMEOUT_MS", "1000"),
            ("CONSUMER_ENABLED", "false"),
        ],
    ))
    .await;

    let on_cancelled = consumer(&brokers(), std::slice::from_ref(cancelled));
    let records = read_records(
        &on_cancelled,
        1,
        Duration::from_secs(4),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        versions(&records),
        vec![(other.to_string(), 1)],
        "only the other order's event, not the cancellation before the placement"
    );
    let metrics = metrics_text(relay.port).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("outbox_publish_errors_total") && l.contains("order.placed")),
        "the placement failed meanwhile:\n{metrics}"
    );
    assert_eq!(outbox_count(&db).await, 2, "both of the order's rows wait");

    // The topic is there: version 1, then version 2.
    create_topic(&brokers(), placed, 3).await;
    eventually("every event published", Duration::from_secs(30), || async {
        outbox_count(&db).await == 0
    })
    .await;
    let on_placed = consumer(&brokers(), std::slice::from_ref(placed));
    let first = read_records(
        &on_placed,
        1,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    let second = read_records(
        &on_cancelled,
        1,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    // At least once: a timed-out attempt may still have been written.
    let only = |records: &[Record], version: i64| {
        !records.is_empty()
            && versions(records)
                .iter()
                .all(|(key, v)| *key == order.to_string() && *v == version)
    };
    assert!(only(&first, 1), "{:?}", versions(&first));
    assert!(only(&second, 2), "{:?}", versions(&second));
    assert!(
        second.iter().map(|r| r.timestamp).min() >= first.iter().map(|r| r.timestamp).max(),
        "version 2 was produced after version 1"
    );
    relay.stop().await;
}
