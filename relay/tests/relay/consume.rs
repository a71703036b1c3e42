//! Consuming payment and inventory events: effects, idempotency, dead
//! letters, database outage and two replicas in one group.

use crate::helpers::*;
use crate::inbound::*;
use order_shared::db::Emit;
use order_shared::db::inbox::{InboundContext, apply_inbound};
use order_shared::domain::InboundEvent;
use order_shared::testing::{TcpProxy, TestDb, fresh_database, host_port};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn each_event_type_has_its_effect_and_emits_the_right_event() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let relay = spawn_relay(relay_env(&db, &prefix, &brokers(), &[])).await;
    let (a, b, c) = (place(&db).await, place(&db).await, place(&db).await);

    produce(
        &brokers(),
        &format!("{prefix}payment.authorized"),
        &a.to_string(),
        &event(a, r#","paymentId":"pay-42""#),
        None,
    )
    .await;
    produce(
        &brokers(),
        &format!("{prefix}payment.failed"),
        &b.to_string(),
        &event(b, r#","reason":"card declined""#),
        None,
    )
    .await;
    produce(
        &brokers(),
        &format!("{prefix}inventory.reserved"),
        &c.to_string(),
        &event(c, r#","reservationId":"res-7""#),
        None,
    )
    .await;

    wait_status(&db, a, "CONFIRMED").await;
    wait_status(&db, b, "CANCELLED").await;
    eventually("reservation recorded", Duration::from_secs(60), || async {
        db.connect()
            .await
            .query_one(
                "SELECT reservation_id IS NOT NULL FROM orders WHERE id = $1",
                &[&c],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
    let client = db.connect().await;
    let row = client
        .query_one(
            "SELECT payment_id, version FROM orders WHERE id = $1",
            &[&a],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("pay-42"));
    assert_eq!(row.get::<_, i64>(1), 2);
    let reason: Option<String> = client
        .query_one(
            "SELECT cancellation_reason FROM orders WHERE id = $1",
            &[&b],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason.as_deref(), Some("payment failed: card declined"));
    assert_eq!(
        status(&db, c).await,
        ("PENDING".into(), 1),
        "a reservation changes no status"
    );
    let note: String = client
        .query_one(
            "SELECT reason FROM order_status_history WHERE order_id = $1 ORDER BY id DESC LIMIT 1",
            &[&c],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "inventory reserved (res-7)");

    let consumer = consumer(
        &brokers(),
        &topics(&prefix, &["order.confirmed", "order.cancelled"]),
    );
    let records = read_records(
        &consumer,
        2,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let confirmed = records
        .iter()
        .find(|r| r.topic.ends_with("order.confirmed"))
        .unwrap();
    assert_eq!(confirmed.key, a.to_string());
    assert_eq!(confirmed.value["data"]["paymentId"], "pay-42");
    let cancelled = records
        .iter()
        .find(|r| r.topic.ends_with("order.cancelled"))
        .unwrap();
    assert_eq!(cancelled.key, b.to_string());
    assert_eq!(cancelled.value["data"]["previousStatus"], "PENDING");
    assert!(metric(relay.port, &format!("consumed_events_total{{topic=\"{prefix}payment.authorized\",outcome=\"applied\"}} 1")).await);
    relay.stop().await;
}

#[tokio::test]
async fn the_same_event_three_times_is_applied_once() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let relay = spawn_relay(relay_env(&db, &prefix, &brokers(), &[])).await;
    let id = place(&db).await;
    let body = event(id, r#","paymentId":"pay-1""#);
    for _ in 0..3 {
        produce(
            &brokers(),
            &format!("{prefix}payment.authorized"),
            &id.to_string(),
            &body,
            Some("ce-same"),
        )
        .await;
    }

    let dup = format!(
        "consumed_events_total{{topic=\"{prefix}payment.authorized\",outcome=\"duplicate\"}} 2"
    );
    eventually("two duplicates seen", Duration::from_secs(60), || {
        metric(relay.port, &dup)
    })
    .await;

    assert_eq!(status(&db, id).await, ("CONFIRMED".into(), 2));
    let history: i64 = db.connect().await
        .query_one("SELECT count(*) FROM order_status_history WHERE order_id = $1 AND to_status = 'CONFIRMED'", &[&id])
        .await.unwrap().get(0);
    assert_eq!(history, 1);
    let records = confirmed_records(&prefix).await;
    assert_eq!(records.len(), 1, "one order.confirmed");
    relay.stop().await;
}

#[tokio::test]
async fn an_event_committed_before_a_crash_is_a_duplicate_when_redelivered() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let id = place(&db).await;
    let topic = format!("{prefix}payment.authorized");
    // The crashed consumer's transaction: committed, offset never stored.
    let pool = order_shared::db::build_pool(&db.settings()).unwrap();
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let ctx = InboundContext {
        key: "ce-crash",
        scope: "payment.authorized",
        topic: &topic,
        emit: Emit {
            traceparent: None,
            shards: 8,
            notify: false,
        },
    };
    let event_in = InboundEvent::PaymentAuthorized {
        order_id: id.into(),
        payment_id: Some("pay-c".into()),
    };
    apply_inbound(&tx, &ctx, &event_in).await.unwrap();
    tx.commit().await.unwrap();
    let relay = spawn_relay(relay_env(&db, &prefix, &brokers(), &[])).await;

    produce(
        &brokers(),
        &topic,
        &id.to_string(),
        &event(id, r#","paymentId":"pay-c""#),
        Some("ce-crash"),
    )
    .await;

    let dup = format!("consumed_events_total{{topic=\"{topic}\",outcome=\"duplicate\"}} 1");
    eventually(
        "redelivery skipped as a duplicate",
        Duration::from_secs(60),
        || metric(relay.port, &dup),
    )
    .await;
    assert_eq!(status(&db, id).await, ("CONFIRMED".into(), 2));
    let records = confirmed_records(&prefix).await;
    assert_eq!(records.len(), 1, "no second order.confirmed");
    relay.stop().await;
}

#[tokio::test]
async fn poison_messages_go_to_the_dlq_and_the_partition_moves_on() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let relay = spawn_relay(relay_env(&db, &prefix, &brokers(), &[])).await;
    let id = place(&db).await;
    let topic = format!("{prefix}payment.authorized");
    let key = id.to_string();

    produce(&brokers(), &topic, &key, "{not json", Some("ce-bad")).await;
    produce(&brokers(), &topic, &key, &event(Uuid::now_v7(), ""), None).await; // unknown order
    let nul = event(id, r#","paymentId":"p\u0000x""#); // PostgreSQL refuses NUL in text
    produce(&brokers(), &topic, &key, &nul, None).await;
    produce(&brokers(), &topic, &key, &event(id, ""), None).await;

    wait_status(&db, id, "CONFIRMED").await;
    let consumer = consumer(&brokers(), &topics(&prefix, &["order-service.dlq"]));
    let records = read_records(
        &consumer,
        3,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(records.len(), 3, "{records:#?}");
    let bad = &records[0];
    assert_eq!(bad.key, key, "original key kept");
    assert_eq!(bad.headers["ce_id"], "ce-bad", "original headers kept");
    assert!(bad.headers["dlq_reason"].contains("not JSON"));
    assert_eq!(bad.headers["dlq_original_topic"], topic);
    assert!(bad.headers["dlq_original_partition"].parse::<i32>().is_ok());
    assert!(bad.headers["dlq_original_offset"].parse::<i64>().is_ok());
    assert_eq!(records[1].headers["dlq_reason"], "unknown order");
    assert_eq!(
        records[2].headers["dlq_reason"],
        "paymentId holds control characters"
    );
    let dead = format!("consumed_events_total{{topic=\"{topic}\",outcome=\"dead_lettered\"}} 3");
    assert!(metric(relay.port, &dead).await);
    relay.stop().await;
}

#[tokio::test]
async fn a_database_outage_loses_and_skips_nothing() {
    let db = fresh_database().await;
    let proxy = TcpProxy::start(host_port(&db.url)).await;
    let prefix = unique_prefix();
    let via_proxy = TestDb {
        name: db.name.clone(),
        url: proxy.url_for(&db.url),
    };
    let relay = spawn_relay(relay_env(&via_proxy, &prefix, &brokers(), &[])).await;
    let (a, b) = (place(&db).await, place(&db).await);
    let topic = format!("{prefix}payment.authorized");
    produce(&brokers(), &topic, &a.to_string(), &event(a, ""), None).await;
    wait_status(&db, a, "CONFIRMED").await;

    proxy.cut().await;
    produce(&brokers(), &topic, &b.to_string(), &event(b, ""), None).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(&db, b).await.0, "PENDING");
    let ready = reqwest::get(format!("http://127.0.0.1:{}/health/ready", relay.port))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    proxy.restore().await;
    wait_status(&db, b, "CONFIRMED").await;
    relay.stop().await;
}

#[tokio::test]
async fn two_replicas_in_one_group_apply_every_event_once() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let env = relay_env(&db, &prefix, &brokers(), &[]);
    let first = spawn_relay(env.clone()).await;
    let second = spawn_relay(env).await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(place(&db).await);
    }
    let topic = format!("{prefix}payment.authorized");
    for id in &ids {
        produce(&brokers(), &topic, &id.to_string(), &event(*id, ""), None).await;
    }

    for id in &ids {
        wait_status(&db, *id, "CONFIRMED").await;
    }
    let client = db.connect().await;
    let processed: i64 = client
        .query_one("SELECT count(*) FROM processed_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(processed, 30);
    let confirmed: i64 = client
        .query_one(
            "SELECT count(*) FROM order_status_history WHERE to_status = 'CONFIRMED'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(confirmed, 30, "each applied exactly once");
    for id in &ids {
        assert_eq!(status(&db, *id).await.1, 2);
    }
    first.stop().await;
    second.stop().await;
}
