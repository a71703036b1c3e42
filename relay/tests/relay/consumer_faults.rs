//! The consumer under faults: process restarts (SIGTERM and SIGKILL) between
//! and during rounds of events, group members joining, leaving and dying,
//! transient database errors injected by a trigger, a locked order row, and
//! the exact offsets committed. Every order must end confirmed exactly once.

use crate::helpers::*;
use crate::inbound::*;
use order_shared::testing::{TestDb, fresh_database};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

const PARTITIONS: i32 = 6;

/// Environment for consumer tests: six partitions per topic. The session
/// timeout stays at its default (10 s; a killed static member is replaced
/// after it): with 6 s, Tansu revoked every assignment right after making it.
pub fn consumer_env(db: &TestDb, prefix: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = relay_env(
        db,
        prefix,
        &brokers(),
        &[
            ("KAFKA_TOPIC_PARTITIONS", "6"),
            ("SHUTDOWN_TIMEOUT_SECS", "10"),
        ],
    );
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    env
}

pub async fn confirmed_count(db: &TestDb, ids: &[Uuid]) -> usize {
    let rows = db
        .connect()
        .await
        .query(
            "SELECT count(*) FROM orders WHERE id = ANY($1) AND status = 'CONFIRMED'",
            &[&ids],
        )
        .await
        .unwrap();
    rows[0].get::<_, i64>(0) as usize
}

pub async fn wait_all_confirmed(db: &TestDb, ids: &[Uuid]) {
    eventually(
        &format!("all {} orders confirmed", ids.len()),
        Duration::from_secs(90),
        || async { confirmed_count(db, ids).await == ids.len() },
    )
    .await;
}

/// Each order confirmed exactly once: one CONFIRMED history row, version 2.
pub async fn assert_confirmed_once(db: &TestDb, ids: &[Uuid]) {
    let client = db.connect().await;
    let rows = client
        .query(
            "SELECT o.id, o.version, count(h.id) FILTER (WHERE h.to_status = 'CONFIRMED') \
             FROM orders o LEFT JOIN order_status_history h ON h.order_id = o.id \
             WHERE o.id = ANY($1) GROUP BY o.id, o.version",
            &[&ids],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), ids.len());
    for row in rows {
        let (id, version, confirmed): (Uuid, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!((version, confirmed), (2, 1), "order {id}");
    }
}

pub async fn place_many(db: &TestDb, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(place(db).await);
    }
    ids
}

/// The group's committed offsets for `topic`, by partition.
pub fn committed(group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let tpl = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

pub async fn duplicates(port: u16, topic: &str) -> f64 {
    let text = metrics_text(port).await;
    sample(
        &text,
        &format!("consumed_events_total{{topic=\"{topic}\",outcome=\"duplicate\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_with_sigterm_and_sigkill_restarts_lose_no_event() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let env = consumer_env(&db, &prefix, &[]);
    let group = env["KAFKA_CONSUMER_GROUP"].clone();
    let topic = format!("{prefix}payment.authorized");
    let port = free_port();
    let events = EventProducer::new(&brokers());
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    let mut all = Vec::new();
    let mut relay = RelayProcess::start(&env, port).await;

    // Round 1: 40 events, 5 of them sent twice; then SIGTERM.
    let ids = place_many(&db, 40).await;
    for (i, id) in ids.iter().enumerate() {
        let body = event(*id, "");
        let times = if i < 5 { 2 } else { 1 };
        for _ in 0..times {
            let (p, o) = events.send(&topic, &id.to_string(), &body, &[]).await;
            next_offset.insert(p, o + 1);
        }
    }
    wait_all_confirmed(&db, &ids).await;
    eventually(
        "the 5 re-sent events seen",
        Duration::from_secs(30),
        || async { duplicates(port, &topic).await == 5.0 },
    )
    .await;
    all.extend(ids);
    relay.terminate().await;

    // Round 2: after a clean restart, 40 more (the first of each partition
    // is the one a wrong stored offset skips); then SIGKILL once committed.
    relay = RelayProcess::start(&env, port).await;
    let ids = place_many(&db, 40).await;
    for id in &ids {
        let (p, o) = events.pay(&prefix, *id).await;
        next_offset.insert(p, o + 1);
    }
    wait_all_confirmed(&db, &ids).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // one auto-commit
    assert_eq!(
        duplicates(port, &topic).await,
        0.0,
        "nothing was sent twice"
    );
    all.extend(ids);
    relay.kill().await;

    // Round 3: the same instance comes back and is killed mid-round; the
    // rest of the round arrives while it is dead.
    relay = RelayProcess::start(&env, port).await;
    let ids = place_many(&db, 40).await;
    for id in &ids[..20] {
        let (p, o) = events.pay(&prefix, *id).await;
        next_offset.insert(p, o + 1);
    }
    eventually(
        "some of round 3 applied",
        Duration::from_secs(60),
        || async { confirmed_count(&db, &ids).await >= 5 },
    )
    .await;
    relay.kill().await;
    for id in &ids[20..] {
        let (p, o) = events.pay(&prefix, *id).await;
        next_offset.insert(p, o + 1);
    }
    relay = RelayProcess::start(&env, port).await;
    wait_all_confirmed(&db, &ids).await;
    all.extend(ids);
    eventually(
        "every partition committed to its end",
        Duration::from_secs(60),
        || async { committed(&group, &topic) == next_offset },
    )
    .await;
    relay.terminate().await;

    assert_confirmed_once(&db, &all).await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM processed_events").await,
        120
    );
    assert_eq!(
        committed(&group, &topic),
        next_offset,
        "the committed offset of each partition is the next one to read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_leave_and_die_while_events_flow() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let env = consumer_env(&db, &prefix, &[]);
    let events = EventProducer::new(&brokers());
    let mut all = Vec::new();
    let port = free_port();
    let first = RelayProcess::start(&env, port).await;
    let mut batch = async |n: usize| {
        let ids = place_many(&db, n).await;
        for id in &ids {
            events.pay(&prefix, *id).await;
        }
        all.extend(ids.iter().copied());
        ids
    };

    let ids = batch(20).await;
    let second = spawn_relay(env.clone()).await; // joins: a rebalance
    let more = batch(20).await;
    wait_all_confirmed(&db, &ids).await;
    wait_all_confirmed(&db, &more).await;
    let text = metrics_text(second.port).await;
    assert!(
        text.contains("consumer_rebalances_total{kind=\"assign\"}"),
        "{text}"
    );
    assert!(text.contains("consumer_assigned_partitions"), "{text}");

    second.stop().await; // leaves: another rebalance
    let ids = batch(20).await;
    wait_all_confirmed(&db, &ids).await;

    first.kill().await; // dies without leaving; comes back as itself
    let ids = batch(20).await;
    let first = RelayProcess::start(&env, port).await;
    wait_all_confirmed(&db, &ids).await;
    first.terminate().await;

    assert_confirmed_once(&db, &all).await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM processed_events").await,
        80
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_and_read_only_errors_are_retried_not_dead_lettered() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    // Two deadlocks, then two read-only errors, on the first inbox inserts.
    // A sequence survives the rollback of the failing transaction.
    db.connect()
        .await
        .batch_execute(
            "CREATE SEQUENCE fault_seq;
             CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE n bigint := nextval('fault_seq');
             BEGIN
               IF n <= 2 THEN RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01'; END IF;
               IF n <= 4 THEN RAISE EXCEPTION 'injected read-only' USING ERRCODE = '25006'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER inject_fault BEFORE INSERT ON processed_events
               FOR EACH ROW EXECUTE FUNCTION inject_fault();",
        )
        .await
        .unwrap();
    let relay = spawn_relay(consumer_env(&db, &prefix, &[])).await;
    let id = place(&db).await;

    EventProducer::new(&brokers()).pay(&prefix, id).await;

    wait_status(&db, id, "CONFIRMED").await;
    let topic = format!("{prefix}payment.authorized");
    let text = metrics_text(relay.port).await;
    for reason in ["deadlock", "read_only"] {
        let series = format!("consumer_retries_total{{topic=\"{topic}\",reason=\"{reason}\"}}");
        assert_eq!(sample(&text, &series), 2.0, "{series}\n{text}");
    }
    let dlq = consumer(&brokers(), &topics(&prefix, &["order-service.dlq"]));
    let dead = read_records(&dlq, 0, Duration::from_secs(3), Duration::from_secs(10)).await;
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:#?}");
    assert_confirmed_once(&db, &[id]).await;
    relay.stop().await;
}
