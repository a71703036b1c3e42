//! What consuming records: idempotency scopes, the counters of outcomes
//! and transitions, and the lag. `order_transitions_total` counts every
//! status change once, whether the API or a consumed event asked for it; a
//! redelivered event, an ignored one and a reservation count nothing.

use crate::helpers::*;
use crate::inbound::*;
use order_shared::testing::fresh_database;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_events_count_their_transitions_once() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let env = relay_env(&db, &prefix, &brokers(), &[]);
    // A process of its own: its metrics are this test's alone.
    let port = free_port();
    let relay = RelayProcess::start(&env, port).await;
    let events = EventProducer::new(&brokers());
    let (a, b, c) = (place(&db).await, place(&db).await, place(&db).await);

    events.pay(&prefix, a).await;
    let paid_twice = [("ce_id", "pay-b-1")];
    events
        .emit(&prefix, "payment.authorized", b, "", &paid_twice)
        .await;
    events
        .emit(&prefix, "payment.authorized", b, "", &paid_twice)
        .await;
    events
        .emit(&prefix, "payment.failed", c, r#","reason":"declined""#, &[])
        .await;
    wait_status(&db, a, "CONFIRMED").await;
    wait_status(&db, b, "CONFIRMED").await;
    wait_status(&db, c, "CANCELLED").await;
    // Ignored (already cancelled) and a reservation: no transition.
    events.pay(&prefix, c).await;
    events.emit(&prefix, "inventory.reserved", a, "", &[]).await;

    let ignored = format!(
        "consumed_events_total{{topic=\"{prefix}payment.authorized\",outcome=\"ignored\"}} 1"
    );
    let applied = format!(
        "consumed_events_total{{topic=\"{prefix}inventory.reserved\",outcome=\"applied\"}} 1"
    );
    eventually("every event consumed", Duration::from_secs(60), || async {
        let text = metrics_text(port).await;
        text.contains(&ignored) && text.contains(&applied)
    })
    .await;
    let text = metrics_text(port).await;
    let confirmed = "order_transitions_total{from=\"PENDING\",to=\"CONFIRMED\"}";
    let cancelled = "order_transitions_total{from=\"PENDING\",to=\"CANCELLED\"}";
    assert_eq!(sample(&text, confirmed), 2.0, "{text}");
    assert_eq!(sample(&text, cancelled), 1.0, "{text}");
    let all: usize = text
        .lines()
        .filter(|l| l.starts_with("order_transitions_total{"))
        .count();
    assert_eq!(all, 2, "no other transition counted: {text}");
    // The relay's HTTP answers carry nosniff too.
    for path in ["/health/live", "/health/ready", "/metrics"] {
        let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .unwrap();
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
    relay.terminate().await;
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
    // The two topics' partitions have workers of their own: the payment may
    // be applied before the reservation.
    eventually("both events applied", Duration::from_secs(30), || async {
        count(
            &db,
            "SELECT count(*) FROM processed_events WHERE event_key = '42'",
        )
        .await
            == 2
    })
    .await;
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
