//! Record format of every event type, and poison rows (park, stop, replay).

use crate::helpers::*;
use order_shared::db::Emit;
use order_shared::db::orders::{CreateOrder, create_order, transition_order};
use order_shared::domain::{
    AddressInput, Change, ItemInput, NewOrder, NewOrderInput, Transition, UserId,
};
use order_shared::testing::fresh_database;
use order_shared::trace::TraceParent;
use std::time::Duration;
use uuid::Uuid;

fn new_order() -> NewOrder {
    NewOrder::parse(&NewOrderInput {
        currency: "EUR".into(),
        items: vec![ItemInput {
            product_id: "sku-9".into(),
            quantity: 3,
            unit_price: 250,
        }],
        shipping_address: AddressInput {
            name: "Grace".into(),
            line1: "2 Side St".into(),
            city: "Paris".into(),
            postal_code: "75001".into(),
            country: "FR".into(),
            ..AddressInput::default()
        },
    })
    .unwrap()
}

pub async fn change(pool: &deadpool_postgres::Pool, id: Uuid, change: Change) {
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let t = Transition {
        order_id: id.into(),
        change,
        owner: None,
        actor: "test",
        if_match: None,
    };
    let emit = Emit {
        traceparent: None,
        shards: 8,
        notify: true,
    };
    transition_order(&tx, &t, &emit).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn every_event_type_arrives_with_topic_key_headers_and_payload() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let relay = spawn_relay(relay_env(&db, &prefix, &brokers(), &[])).await;
    let pool = order_shared::db::build_pool(&db.settings()).unwrap();
    let order = new_order();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut ids = Vec::new();
    for _ in 0..2 {
        let client = pool.get().await.unwrap();
        let created = create_order(
            &client,
            &CreateOrder {
                user_id: &UserId::new("alice"),
                order: &order,
                actor: "user:alice",
                idempotency: None,
                emit: Emit {
                    traceparent: TraceParent::parse(traceparent).as_ref(),
                    shards: 8,
                    notify: true,
                },
            },
        )
        .await
        .unwrap();
        let order_shared::db::orders::Created::New(o) = created else {
            panic!("new order")
        };
        ids.push(Uuid::from(o.id));
    }
    change(
        &pool,
        ids[0],
        Change::Confirm {
            payment_id: Some("pay-7".into()),
        },
    )
    .await;
    change(
        &pool,
        ids[0],
        Change::Ship {
            carrier: "DHL".into(),
            tracking_number: "T1".into(),
        },
    )
    .await;
    change(&pool, ids[0], Change::Deliver).await;
    change(
        &pool,
        ids[1],
        Change::Cancel {
            reason: Some("no stock".into()),
        },
    )
    .await;
    let all = topics(
        &prefix,
        &[
            "order.placed",
            "order.confirmed",
            "order.shipped",
            "order.delivered",
            "order.cancelled",
        ],
    );
    let consumer = consumer(&brokers(), &all);

    let records = read_records(
        &consumer,
        6,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;

    assert_eq!(records.len(), 6, "{records:#?}");
    for r in &records {
        let event_type = r.topic.strip_prefix(&prefix).unwrap();
        assert_eq!(r.value["eventType"], event_type);
        assert_eq!(r.key, r.value["orderId"].as_str().unwrap());
        assert_eq!(r.headers["ce_specversion"], "1.0");
        assert_eq!(r.headers["ce_id"], r.value["eventId"].as_str().unwrap());
        assert_eq!(r.headers["ce_type"], event_type);
        assert_eq!(r.headers["ce_source"], "/order-service");
        assert_eq!(r.headers["ce_subject"], r.key);
        assert!(chrono::DateTime::parse_from_rfc3339(&r.headers["ce_time"]).is_ok());
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.value["userId"], "alice");
        let expected_version = match event_type {
            "order.placed" => 1,
            "order.confirmed" | "order.cancelled" => 2,
            "order.shipped" => 3,
            _ => 4,
        };
        assert_eq!(r.value["version"], expected_version);
        match event_type {
            "order.placed" => {
                assert_eq!(r.value["data"]["totalAmount"], 750);
                assert_eq!(r.value["data"]["currency"], "EUR");
                assert_eq!(r.headers["traceparent"], traceparent);
            }
            "order.confirmed" => assert_eq!(r.value["data"]["paymentId"], "pay-7"),
            "order.shipped" => assert_eq!(r.value["data"]["trackingNumber"], "T1"),
            "order.delivered" => assert!(r.value["data"]["deliveredAt"].is_string()),
            "order.cancelled" => {
                assert_eq!(r.value["data"]["reason"], "no stock");
                assert_eq!(r.value["data"]["previousStatus"], "PENDING");
                assert_eq!(r.value["data"]["items"][0]["productId"], "sku-9");
            }
            other => panic!("unexpected topic {other}"),
        }
    }
    eventually("outbox drained", Duration::from_secs(10), || async {
        outbox_count(&db).await == 0
    })
    .await;
    let metrics = metrics_text(relay.port).await;
    for name in [
        "outbox_published_total",
        "outbox_publish_latency_seconds_bucket",
        "outbox_send_delay_seconds_bucket",
        "relay_shards_owned",
        "relay_shard_rows_cap",
    ] {
        assert!(metrics.contains(name), "{name} in\n{metrics}");
    }
    let ready = reqwest::get(format!("http://127.0.0.1:{}/health/ready", relay.port))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    relay.stop().await;
}

#[tokio::test]
async fn a_poison_row_is_parked_stops_its_shard_and_replays_once_fixed() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let client = db.connect().await;
    let order_id = Uuid::now_v7();
    // Version 1 is too large for the configured message limit; version 2 waits behind it.
    client
        .execute(
            "INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, shard) VALUES \
             (gen_random_uuid(), $1, 1, 'order.placed', 'order.placed', jsonb_build_object('version', 1, 'pad', repeat('x', 5000)), 0), \
             (gen_random_uuid(), $1, 2, 'order.cancelled', 'order.cancelled', jsonb_build_object('version', 2), 0)",
            &[&order_id],
        )
        .await
        .unwrap();
    let env = relay_env(
        &db,
        &prefix,
        &brokers(),
        &[
            ("KAFKA_MESSAGE_MAX_BYTES", "2000"),
            ("OUTBOX_MAX_ATTEMPTS", "3"),
        ],
    );
    let relay = spawn_relay(env).await;

    eventually("row parked", Duration::from_secs(30), || async {
        db.connect()
            .await
            .query_one(
                "SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL AND attempts = 3",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outbox_count(&db).await,
        2,
        "the shard stopped at the parked row"
    );
    let pool = order_shared::db::build_pool(&db.settings()).unwrap();
    let parked = order_shared::db::outbox::parked_rows(&pool.get().await.unwrap())
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert!(
        parked[0]
            .last_error
            .as_deref()
            .unwrap()
            .to_lowercase()
            .contains("size"),
        "{parked:?}"
    );

    // Fix the row, then replay it.
    client
        .execute(
            "UPDATE outbox SET payload = payload::jsonb - 'pad' WHERE aggregate_version = 1",
            &[],
        )
        .await
        .unwrap();
    let replayed =
        order_shared::db::outbox::replay_parked(&pool.get().await.unwrap(), Some(parked[0].id))
            .await
            .unwrap();
    assert_eq!(replayed, 1);

    let consumer = consumer(
        &brokers(),
        &topics(&prefix, &["order.placed", "order.cancelled"]),
    );
    let records = read_records(
        &consumer,
        2,
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
    .await;
    // Two topics: the consumer may read them in any order, so compare the
    // producer's timestamps: version 1 was sent no later than version 2.
    let at = |v: i64| {
        records
            .iter()
            .find(|r| r.value["version"] == v)
            .unwrap_or_else(|| panic!("version {v} published: {records:#?}"))
            .timestamp
    };
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(at(1) <= at(2), "version 1 sent before version 2");
    eventually("outbox drained", Duration::from_secs(10), || async {
        outbox_count(&db).await == 0
    })
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn one_claim_takes_the_next_rows_of_several_shards_in_order() {
    let db = fresh_database().await;
    db.connect()
        .await
        .batch_execute(
            "INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, shard, parked_at) VALUES \
             (gen_random_uuid(), '018f0000-0000-7000-8000-00000000000a', 1, 'order.placed', 'order.placed', '{}', 3, NULL), \
             (gen_random_uuid(), gen_random_uuid(), 1, 'order.placed', 'order.placed', '{}', 1, NULL), \
             (gen_random_uuid(), gen_random_uuid(), 1, 'order.placed', 'order.placed', '{}', 3, NULL), \
             (gen_random_uuid(), gen_random_uuid(), 1, 'order.placed', 'order.placed', '{}', 5, now()), \
             (gen_random_uuid(), '018f0000-0000-7000-8000-00000000000a', 2, 'order.confirmed', 'order.confirmed', '{}', 3, NULL)",
        )
        .await
        .unwrap();
    let (session, _events) = lease_session(&db).await;
    let ids = |claimed: &[(i32, Vec<order_shared::db::outbox::OutboxRow>)]| {
        claimed
            .iter()
            .map(|(shard, rows)| (*shard, rows.iter().map(|r| r.id).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    let all: Vec<i32> = (0..8).collect();

    let claimed = session
        .claim_many(&all, &[500; 8], false, &[])
        .await
        .unwrap();
    assert_eq!(
        ids(&claimed),
        vec![(1, vec![2]), (3, vec![1, 3, 5])],
        "by shard, in id order; shard 5 only has a parked row"
    );
    let claimed = session.claim_many(&all, &[2; 8], true, &[]).await.unwrap();
    assert_eq!(
        ids(&claimed),
        vec![(1, vec![2]), (3, vec![1, 3]), (5, vec![4])],
        "at most the limit per shard; parked rows when asked"
    );
    assert!(
        session
            .claim_many(&[0, 2], &[500, 500], true, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let one = session.claim(3, 500, false).await.unwrap();
    assert_eq!(one.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 3, 5]);

    // An order with a batch in flight (rows 1 and 5) is left out whole, so
    // its rows are never in two batches at once.
    let in_flight: uuid::Uuid = "018f0000-0000-7000-8000-00000000000a".parse().unwrap();
    let claimed = session
        .claim_many(&all, &[500; 8], false, &[in_flight])
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![(1, vec![2]), (3, vec![3])]);

    let claimed = session
        .claim_many(&[1, 3], &[500, 1], false, &[])
        .await
        .unwrap();
    assert_eq!(
        ids(&claimed),
        vec![(1, vec![2]), (3, vec![1])],
        "each shard its own limit"
    );
}

/// The record value is the envelope as its writer wrote it: the outbox
/// keeps the text (`json`), rather than a tree that PostgreSQL prints back
/// with its own key order and spacing (`jsonb`).
#[tokio::test]
async fn a_claim_returns_the_payload_as_it_was_written() {
    let db = fresh_database().await;
    let written = r#"{"z":1,"a":{"y":true, "b":null},"n":1.50}"#;
    db.connect()
        .await
        .execute(
            "INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, shard) \
             VALUES (gen_random_uuid(), gen_random_uuid(), 1, 'order.placed', 'order.placed', $1::text::json, 0)",
            &[&written],
        )
        .await
        .unwrap();
    let (session, _events) = lease_session(&db).await;
    let rows = session.claim(0, 10, false).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].payload, written, "byte for byte");
}
