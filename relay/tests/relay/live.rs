//! Live updates (SSE) across API replicas: each change is announced once,
//! after its commit, by whoever made it (an API replica or the relay's
//! consumer), and every replica's streams get it. The replicas' version
//! check is set to a minute (its most), and no test waits for more than
//! 40 s, so only the hint path can deliver within these tests.

use crate::helpers::*;
use crate::inbound::{event, place, wait_status};
use order_shared::testing::TestDb;
use order_shared::testing::fresh_database;
use order_shared::testing::sse::{SseEvent, SseStream};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SECRET: &str = "live-secret-0123456789-0123456789-01234";
const WAIT: Duration = Duration::from_secs(20);

/// An API replica on `db` that only learns of others' changes from hints.
async fn replica(db: &TestDb, shutdown: &CancellationToken) -> String {
    let url = db.url.clone();
    let settings = order_api::ApiSettings::from_env(&move |n: &str| match n {
        "DATABASE_URL" => Some(url.clone()),
        "JWT_SECRET" => Some(SECRET.into()),
        "API_HOST" => Some("127.0.0.1".into()),
        "API_PORT" => Some("0".into()),
        "OUTBOX_SHARDS" => Some("8".into()),
        "SSE_CHECK_INTERVAL_MS" => Some("60000".into()),
        _ => None,
    })
    .unwrap();
    let api = order_api::Application::build(settings, shutdown.child_token())
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{}", api.port());
    tokio::spawn(api.run());
    addr
}

fn token(user: &str) -> String {
    order_api::auth::mint_hs256(SECRET, user, false, 3600, None, None).unwrap()
}

async fn stream(addr: &str, path: &str) -> SseStream {
    let auth = format!("Bearer {}", token("alice"));
    let s = SseStream::connect(addr, path, &[("Authorization", &auth)])
        .await
        .unwrap();
    assert_eq!(s.status, 200);
    s
}

fn assert_version(event: Option<SseEvent>, id: Uuid, version: i64) -> serde_json::Value {
    let event = event.unwrap_or_else(|| panic!("no message for {id} v{version}"));
    assert_eq!(event.event.as_deref(), Some("order"));
    assert_eq!(event.id, Some(format!("{id}:{version}")));
    event.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_reaches_the_streams_of_another() {
    let db = fresh_database().await;
    let relay = spawn_relay(relay_env(&db, &unique_prefix(), &brokers(), &[])).await;
    let a = replica(&db, &relay.shutdown).await;
    let b = replica(&db, &relay.shutdown).await;
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("http://{a}/api/orders"))
        .bearer_auth(token("alice"))
        .json(&serde_json::json!({
            "currency": "USD",
            "items": [{"productId": "sku-1", "quantity": 1, "unitPrice": 100}],
            "shippingAddress": {"name": "A", "line1": "B", "city": "C", "postalCode": "D", "country": "US"}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let mut one = stream(&b, &format!("/api/orders/{id}/events")).await;
    assert_version(one.next_event(WAIT).await, id, 1);
    let mut mine = stream(&b, "/api/orders/events").await;

    let resp = http
        .patch(format!("http://{a}/api/orders/{id}/cancel"))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let order = assert_version(one.next_event(WAIT).await, id, 2);
    assert_eq!(order["status"], "CANCELLED");
    // The list stream opened after the placement, but replica a's hint of
    // the placement may reach b after that: version 1 may come first.
    let mut next = mine.next_event(WAIT).await;
    if next.as_ref().and_then(|e| e.id.clone()) == Some(format!("{id}:1")) {
        next = mine.next_event(WAIT).await;
    }
    assert_version(next, id, 2);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumed_payment_event_reaches_the_stream() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let relay = spawn_relay(relay_env(&db, &prefix, &brokers(), &[])).await;
    let api = replica(&db, &relay.shutdown).await;
    let id = place(&db).await;
    let mut one = stream(&api, &format!("/api/orders/{id}/events")).await;
    assert_version(one.next_event(WAIT).await, id, 1);

    produce(
        &brokers(),
        &format!("{prefix}payment.authorized"),
        &id.to_string(),
        &event(id, r#","paymentId":"pay-live""#),
        None,
    )
    .await;

    // The consumer joins its group first: up to 40 s, still short of the
    // replica's version check.
    let order = assert_version(one.next_event(Duration::from_secs(40)).await, id, 2);
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["paymentId"], "pay-live");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_announces_each_change_once_whatever_the_user_id() {
    // A 20,000-character user id (a NOTIFY payload holds 8,000 bytes) and
    // a plain one: every event is applied, and each change is announced
    // once, by the consumer after its commit, with the user id cut to 255
    // characters. Publishing the changes' outbox rows announces nothing
    // more (the relay used to announce every row it claimed, a second hint
    // of each API change).
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let mut orders = Vec::new();
    for _ in 0..6 {
        orders.push(place(&db).await);
    }
    let client = db.connect().await;
    client
        .execute(
            "UPDATE orders SET user_id = repeat('é', 20000) WHERE id = ANY($1)",
            &[&orders[..3].to_vec()],
        )
        .await
        .unwrap();
    let (listener, mut conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = msg {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    listener
        .batch_execute("LISTEN order_changes")
        .await
        .unwrap();
    // As an admin's all-orders stream does: else no change is announced.
    order_shared::db::interest::take(&listener, &[order_shared::db::interest::ALL_ORDERS])
        .await
        .unwrap();
    let relay = spawn_relay(relay_env(&db, &prefix, &brokers(), &[])).await;
    for id in &orders {
        let paid = format!(r#","paymentId":"pay-{id}""#);
        let topic = format!("{prefix}payment.authorized");
        produce(
            &brokers(),
            &topic,
            &id.to_string(),
            &event(*id, &paid),
            None,
        )
        .await;
    }
    for id in &orders {
        wait_status(&db, *id, "CONFIRMED").await;
    }
    eventually("every row published", Duration::from_secs(60), || async {
        outbox_count(&db).await == 0
    })
    .await;
    let mut hints = Vec::new();
    while let Ok(Some(payload)) = tokio::time::timeout(Duration::from_secs(2), notes.recv()).await {
        hints.extend(order_shared::db::live::parse_hints(&payload).expect("a well-formed hint"));
    }
    for id in &orders {
        let of_order: Vec<_> = hints
            .iter()
            .filter(|h| Uuid::from(h.order_id) == *id)
            .collect();
        assert_eq!(of_order.len(), 1, "hints of {id}: {of_order:?}");
        assert_eq!(of_order[0].version, 2);
        let user = of_order[0].user_id.as_str();
        let expected = if orders[..3].contains(id) { 255 } else { 5 };
        assert_eq!(user.chars().count(), expected, "{user:.20}");
    }
    assert_eq!(hints.len(), orders.len(), "{hints:?}");
    relay.stop().await;
}
