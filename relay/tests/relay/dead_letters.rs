//! The dead-letter topic: re-driving a record once its cause is fixed
//! (`order-relay dlq list | replay`), and a dead-letter publish that cannot
//! succeed holding back only its partition, without replacing the producer.

use crate::helpers::*;
use crate::inbound::*;
use order_shared::testing::{TestDb, fresh_database};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// Runs `order-relay dlq ARGS...` and returns its stdout.
async fn dlq_command(env: &HashMap<String, String>, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-relay"))
        .arg("dlq")
        .args(args)
        .envs(env)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run order-relay dlq");
    assert!(
        out.status.success(),
        "dlq {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A PENDING order with a chosen id (the one the dead letter named).
async fn insert_order(db: &TestDb, id: Uuid) {
    db.connect()
        .await
        .execute(
            "INSERT INTO orders (id, user_id, status, currency, total_amount, created_at, updated_at) \
             VALUES ($1, 'alice', 'PENDING', 'USD', 100, now(), now())",
            &[&id],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_replayed_once_its_order_exists() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let env = relay_env(&db, &prefix, &brokers(), &[]);
    let relay = spawn_relay(env.clone()).await;
    let topic = format!("{prefix}payment.authorized");
    let missing = Uuid::now_v7();
    let payment = r#","paymentId":"p-1""#;
    EventProducer::new(&brokers())
        .emit(
            &prefix,
            "payment.authorized",
            missing,
            payment,
            &[("ce_id", "ce-late")],
        )
        .await;
    let dead = format!("consumed_events_total{{topic=\"{topic}\",outcome=\"dead_lettered\"}} 1");
    eventually(
        "dead-lettered as unknown order",
        Duration::from_secs(60),
        || metric(relay.port, &dead),
    )
    .await;

    let listed = dlq_command(&env, &["list"]).await;
    assert!(listed.contains("unknown order"), "{listed}");
    assert!(
        listed.contains(&missing.to_string()),
        "the key is listed: {listed}"
    );
    let dry = dlq_command(
        &env,
        &["replay", "--dry-run", "--topic", "payment.authorized"],
    )
    .await;
    assert!(dry.contains(&missing.to_string()), "{dry}");
    let none = dlq_command(&env, &["replay", "--topic", "payment.failed"]).await;
    assert!(none.contains("Replayed 0 record(s)"), "{none}");

    insert_order(&db, missing).await;
    let replayed = dlq_command(
        &env,
        &[
            "replay",
            "--topic",
            "payment.authorized",
            "--since",
            "2020-01-01T00:00:00Z",
            "--limit",
            "10",
        ],
    )
    .await;
    assert!(replayed.contains("Replayed 1 record(s)"), "{replayed}");

    wait_status(&db, missing, "CONFIRMED").await;
    let inbound = consumer(&brokers(), std::slice::from_ref(&topic));
    let records = read_records(&inbound, 2, Duration::from_secs(2), Duration::from_secs(60)).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let again = &records[1];
    assert_eq!(again.key, missing.to_string(), "original key");
    assert_eq!(again.headers["ce_id"], "ce-late", "original headers");
    assert_eq!(again.value, records[0].value, "original value");
    assert!(again.headers["replayed-from"].starts_with(&format!("{prefix}order-service.dlq/")));
    assert!(
        !again.headers.keys().any(|k| k.starts_with("dlq_")),
        "{:?}",
        again.headers
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_broker_refuses_holds_back_only_its_partition() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let relay = spawn_relay(relay_env(
        &db,
        &prefix,
        &brokers(),
        &[
            ("KAFKA_TOPIC_PARTITIONS", "6"),
            ("KAFKA_MESSAGE_MAX_BYTES", "1000"),
            ("CONSUMER_STUCK_SECS", "1"),
        ],
    ))
    .await;
    let topic = format!("{prefix}payment.authorized");
    let events = EventProducer::new(&brokers());
    // Not JSON, and larger than the producer may send: the dead letter fails.
    let (stuck, _) = events.send(&topic, "poison", &"x".repeat(2000), &[]).await;
    let mut elsewhere = Vec::new();
    for _ in 0..12 {
        let id = place(&db).await;
        let (p, _) = events.pay(&prefix, id).await;
        if p != stuck {
            elsewhere.push(id);
        }
    }

    for id in &elsewhere {
        wait_status(&db, *id, "CONFIRMED").await;
    }
    wait_not_ready_naming(relay.port, &format!("{topic}[{stuck}] retrying for")).await;
    let text = metrics_text(relay.port).await;
    assert!(
        sample(
            &text,
            "consumer_dead_letter_failures_total{reason=\"dead_letter_rejected\"}"
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "relay_producer_replacements_total"),
        0.0,
        "the producer is not replaced for a refused record"
    );
    relay.stop().await;
}
