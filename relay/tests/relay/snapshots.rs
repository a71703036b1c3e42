//! `order-relay snapshot`: one `order.snapshot` event per selected order,
//! restating its version, published in order with the order's other events;
//! a re-run while earlier events are unpublished; filters and dry run.

use crate::helpers::*;
use crate::publish::change;
use order_shared::db::Emit;
use order_shared::db::orders::{CreateOrder, Created, create_order};
use order_shared::domain::{AddressInput, Change, ItemInput, NewOrder, NewOrderInput, UserId};
use order_shared::testing::{TestDb, fresh_database};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

const EMIT: Emit<'static> = Emit {
    traceparent: None,
    shards: 8,
    notify: false,
};

async fn place(pool: &deadpool_postgres::Pool, user: &str) -> Uuid {
    let order = NewOrder::parse(&NewOrderInput {
        currency: "EUR".into(),
        items: vec![ItemInput {
            product_id: "sku-snap".into(),
            quantity: 2,
            unit_price: 700,
        }],
        shipping_address: AddressInput {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
            ..AddressInput::default()
        },
    })
    .unwrap();
    let client = pool.get().await.unwrap();
    let create = CreateOrder {
        user_id: &UserId::new(user),
        order: &order,
        actor: "test",
        idempotency: None,
        emit: EMIT,
    };
    match create_order(&client, &create).await.unwrap() {
        Created::New(o) => o.id.into(),
        Created::Replayed(_) => panic!("new order"),
    }
}

/// Runs `order-relay snapshot ARGS` as a process; (success, stdout, stderr).
async fn snapshot(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-relay"))
        .arg("snapshot")
        .args(args)
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("OUTBOX_SHARDS", "8")
        .output()
        .await
        .expect("run order-relay snapshot");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (event type, version) of an order's outbox rows, in publication order.
async fn outbox_of(db: &TestDb, id: Uuid) -> Vec<(String, i64)> {
    let rows = db
        .connect()
        .await
        .query(
            "SELECT event_type, aggregate_version FROM outbox WHERE aggregate_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restates_the_version_and_is_published_after_the_earlier_events() {
    let db = fresh_database().await;
    let pool = order_shared::db::build_pool(&db.settings()).unwrap();
    let id = place(&pool, "alice").await;
    let other = place(&pool, "bob").await;
    change(
        &pool,
        id,
        Change::Confirm {
            payment_id: Some("pay-1".into()),
        },
    )
    .await;

    let (ok, _, err) = snapshot(&db, &["--order", &id.to_string()]).await;
    assert!(ok, "{err}");
    assert!(err.contains("Wrote 1 snapshot event(s)"), "{err}");
    change(
        &pool,
        id,
        Change::Ship {
            carrier: "DHL".into(),
            tracking_number: "T1".into(),
        },
    )
    .await;
    // A re-run while the first snapshot (same order, version 2) is unpublished.
    let (ok, _, err) = snapshot(&db, &["--order", &id.to_string()]).await;
    assert!(ok, "{err}");

    let expected: Vec<(String, i64)> = [
        ("order.placed", 1),
        ("order.confirmed", 2),
        ("order.snapshot", 2),
        ("order.shipped", 3),
        ("order.snapshot", 3),
    ]
    .iter()
    .map(|(t, v)| ((*t).to_owned(), *v))
    .collect();
    assert_eq!(outbox_of(&db, id).await, expected);
    assert_eq!(
        outbox_of(&db, other).await.len(),
        1,
        "only the selected order"
    );

    let prefix = unique_prefix();
    let relay = spawn_relay(relay_env(&db, &prefix, &brokers(), &[])).await;
    let names = [
        "order.placed",
        "order.confirmed",
        "order.shipped",
        "order.snapshot",
    ];
    let consumer = consumer(&brokers(), &topics(&prefix, &names));
    let records = read_records(
        &consumer,
        6,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    relay.stop().await;

    let mine: Vec<&Record> = records.iter().filter(|r| r.key == id.to_string()).collect();
    let find = |(event_type, version): &(String, i64)| {
        *mine
            .iter()
            .find(|r| r.value["eventType"] == event_type.as_str() && r.value["version"] == *version)
            .unwrap_or_else(|| panic!("no {event_type} v{version}: {records:#?}"))
    };
    assert_eq!(mine.len(), expected.len(), "{records:#?}");
    // Published in the outbox's order: the producer's CreateTime never goes back.
    let times: Vec<i64> = expected.iter().map(|e| find(e).timestamp).collect();
    assert!(times.is_sorted(), "{times:?}");
    let snaps: Vec<&&Record> = mine
        .iter()
        .filter(|r| r.topic == format!("{prefix}order.snapshot"))
        .collect();
    assert_eq!(snaps.len(), 2);
    assert_ne!(
        snaps[0].value["eventId"], snaps[1].value["eventId"],
        "deduplicated by eventId"
    );
    let first = &snaps[0].value;
    assert_eq!(first["data"]["id"], id.to_string());
    assert_eq!(first["data"]["status"], "CONFIRMED");
    assert_eq!(first["data"]["version"], 2);
    assert_eq!(first["data"]["paymentId"], "pay-1");
    assert_eq!(first["data"]["items"][0]["productId"], "sku-snap");
    assert_eq!(first["data"]["items"][0]["lineTotal"], 1400);
    assert_eq!(first["data"]["shippingAddress"]["city"], "Berlin");
    assert_eq!(snaps[1].value["data"]["status"], "SHIPPED");
    assert_eq!(snaps[1].value["data"]["carrier"], "DHL");
    let headers: &HashMap<String, String> = &snaps[0].headers;
    assert_eq!(headers["ce_type"], "order.snapshot");
    assert_eq!(headers["ce_id"], first["eventId"].as_str().unwrap());
    assert_eq!(headers["ce_subject"], id.to_string());
}

#[tokio::test]
async fn filters_are_and_ed_the_dry_run_writes_nothing_and_no_selector_is_refused() {
    let db = fresh_database().await;
    let pool = order_shared::db::build_pool(&db.settings()).unwrap();
    let pending = place(&pool, "alice").await;
    let confirmed = place(&pool, "alice").await;
    change(&pool, confirmed, Change::Confirm { payment_id: None }).await;
    let cut: chrono::DateTime<chrono::Utc> = db
        .connect()
        .await
        .query_one("SELECT updated_at FROM orders WHERE id = $1", &[&confirmed])
        .await
        .unwrap()
        .get(0);
    let baseline = count(&db, "SELECT count(*) FROM outbox").await;

    let (ok, out, err) = snapshot(&db, &["--status", "CONFIRMED", "--dry-run"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&confirmed.to_string()) && !out.contains(&pending.to_string()),
        "{out}"
    );
    assert!(
        err.contains("Dry run: would write 1 snapshot event(s)."),
        "{err}"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM outbox").await,
        baseline,
        "a dry run writes nothing"
    );

    let since = cut.to_rfc3339();
    let (ok, _, err) = snapshot(&db, &["--since", &since, "--status", "PENDING"]).await;
    assert!(ok, "{err}");
    assert!(err.contains("No order matches."), "AND-ed: {err}");

    let (ok, _, err) = snapshot(&db, &["--all", "--rate", "20"]).await;
    assert!(ok, "{err}");
    assert!(err.contains("Wrote 2 snapshot event(s)"), "{err}");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM outbox WHERE event_type = 'order.snapshot'"
        )
        .await,
        2
    );

    let (ok, _, err) = snapshot(&db, &[]).await;
    assert!(!ok);
    assert!(err.contains("say which orders"), "{err}");
    let (ok, _, err) = snapshot(&db, &["--order", "not-a-uuid"]).await;
    assert!(!ok);
    assert!(err.contains("--order takes an order id"), "{err}");
}

#[tokio::test]
async fn the_unique_version_rule_still_holds_for_every_other_event() {
    let db = fresh_database().await;
    let client = db.connect().await;
    let insert = |event_type: &'static str| {
        format!(
            "INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, shard) \
             VALUES (gen_random_uuid(), '0190a6f0-0000-7000-8000-000000000001', 1, '{event_type}', '{event_type}', '{{}}', 0)"
        )
    };
    client.execute(&insert("order.placed"), &[]).await.unwrap();
    client
        .execute(&insert("order.snapshot"), &[])
        .await
        .unwrap();
    client
        .execute(&insert("order.snapshot"), &[])
        .await
        .unwrap();
    let err = client
        .execute(&insert("order.confirmed"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
}
