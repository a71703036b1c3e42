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
    produce(&brokers(), &topic, &key, &event(id, ""), None).await;

    wait_status(&db, id, "CONFIRMED").await;
    let consumer = consumer(&brokers(), &topics(&prefix, &["order-service.dlq"]));
    let records = read_records(
        &consumer,
        2,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let bad = &records[0];
    assert_eq!(bad.key, key, "original key kept");
    assert_eq!(bad.headers["ce_id"], "ce-bad", "original headers kept");
    assert!(bad.headers["dlq_reason"].contains("not JSON"));
    assert_eq!(bad.headers["dlq_original_topic"], topic);
    assert!(bad.headers["dlq_original_partition"].parse::<i32>().is_ok());
    assert!(bad.headers["dlq_original_offset"].parse::<i64>().is_ok());
    assert_eq!(records[1].headers["dlq_reason"], "unknown order");
    let dead = format!("consumed_events_total{{topic=\"{topic}\",outcome=\"dead_lettered\"}} 2");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_on_two_topics_is_two_events() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let relay = spawn_relay(relay_env(&db, &prefix, &brokers(), &[])).await;
    let id = place(&db).await;
    let events = EventProducer::new(&brokers());
    let same_id = [("ce_id", "42")];

    let reservation = r#","reservationId":"r-1""#;
    events
        .emit(&prefix, "inventory.reserved", id, reservation, &same_id)
        .await;
    events
        .emit(&prefix, "payment.authorized", id, "", &same_id)
        .await;

    wait_status(&db, id, "CONFIRMED").await;
    let client = db.connect().await;
    let reserved: bool = client
        .query_one(
            "SELECT reservation_id = 'r-1' FROM orders WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reserved, "the reservation with the same id was applied too");
    let mut scopes: Vec<String> = client
        .query(
            "SELECT scope FROM processed_events WHERE event_key = '42'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    scopes.sort();
    assert_eq!(scopes, ["inventory.reserved", "payment.authorized"]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_for_a_cancelled_order_is_counted_and_lag_is_reported() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let relay = spawn_relay(relay_env(&db, &prefix, &brokers(), &[])).await;
    let id = place(&db).await;
    let events = EventProducer::new(&brokers());

    let declined = r#","reason":"declined""#;
    events
        .emit(&prefix, "payment.failed", id, declined, &[])
        .await;
    wait_status(&db, id, "CANCELLED").await;
    events.pay(&prefix, id).await;

    let ignored = format!(
        "consumed_events_total{{topic=\"{prefix}payment.authorized\",outcome=\"ignored\"}} 1"
    );
    eventually("the payment is ignored", Duration::from_secs(60), || {
        metric(relay.port, &ignored)
    })
    .await;
    assert!(metric(relay.port, "payments_for_cancelled_orders_total 1").await);
    assert_eq!(status(&db, id).await, ("CANCELLED".into(), 2));
    // librdkafka's statistics (every 5 s) carry the lag per partition.
    let lag = format!("consumer_lag{{topic=\"{prefix}payment.authorized\",partition=");
    eventually("consumer_lag reported", Duration::from_secs(20), || {
        metric(relay.port, &lag)
    })
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_message_step_reports_each_outcome() {
    use order_relay::consumer::topic_kinds;
    use order_relay::consumer::worker::{Consumed, PartitionWorker};
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    let db = fresh_database().await;
    let prefix = unique_prefix();
    let env = relay_env(&db, &prefix, &brokers(), &[]);
    let settings = order_relay::RelaySettings::from_env(&move |n: &str| env.get(n).cloned())
        .expect("settings");
    let relay = order_relay::Relay::build(settings, tokio_util::sync::CancellationToken::new())
        .await
        .expect("relay");
    let ctx = relay.context();
    let pool = order_shared::db::build_pool(&db.settings()).unwrap();
    let worker = PartitionWorker::new(ctx.clone(), pool, std::sync::Arc::new(topic_kinds(&ctx)));
    let (id, other) = (place(&db).await, place(&db).await);
    let topic = format!("{prefix}payment.authorized");
    let msg = |body: &str, offset: i64| {
        OwnedMessage::new(
            Some(body.as_bytes().to_vec()),
            Some(b"key".to_vec()),
            topic.clone(),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    };
    let pay = event(id, "");

    assert_eq!(
        worker.process(&msg(&pay, 0)).await.unwrap(),
        Consumed::Applied
    );
    assert_eq!(
        worker.process(&msg(&pay, 1)).await.unwrap(),
        Consumed::Duplicate
    );
    let again = event(id, "");
    assert_eq!(
        worker.process(&msg(&again, 2)).await.unwrap(),
        Consumed::Ignored
    );
    let unknown = event(Uuid::now_v7(), "");
    assert_eq!(
        worker.process(&msg(&unknown, 3)).await.unwrap(),
        Consumed::DeadLettered
    );
    assert_eq!(
        worker.process(&msg("{", 4)).await.unwrap(),
        Consumed::DeadLettered
    );

    // A transient database error is a retry naming its reason, not a dead letter.
    db.connect()
        .await
        .batch_execute(
            "CREATE FUNCTION always_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END $$;
             CREATE TRIGGER always_conflict BEFORE INSERT ON processed_events
               FOR EACH ROW EXECUTE FUNCTION always_conflict();",
        )
        .await
        .unwrap();
    let err = worker
        .process(&msg(&event(other, ""), 5))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "serialization_failure", "{err}");
    assert_eq!(status(&db, other).await.0, "PENDING");

    // A data error (SQLSTATE class 23) is dead-lettered, with its detail.
    db.connect()
        .await
        .batch_execute(
            "CREATE OR REPLACE FUNCTION always_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'injected check violation' USING ERRCODE = '23514'; END $$;",
        )
        .await
        .unwrap();
    let bad = msg(&event(other, ""), 6);
    assert_eq!(worker.process(&bad).await.unwrap(), Consumed::DeadLettered);
    let kafka = ctx.settings.kafka.clone();
    let dlq_topic = kafka.topic("order-service.dlq");
    let letters = tokio::task::spawn_blocking(move || {
        order_relay::dlq::read_all(&kafka, &dlq_topic, Duration::from_secs(2))
    })
    .await
    .unwrap()
    .unwrap();
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("cannot apply:") && r.contains("injected check violation")),
        "{reasons:?}"
    );
}
