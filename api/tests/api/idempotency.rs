//! Idempotency-Key on POST /api/orders.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

async fn post_with_key(app: &TestApp, user: &str, key: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/api/orders"))
        .bearer_auth(token(user, false))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn same_key_and_body_return_the_first_order_without_a_second_event() {
    let app = spawn_app().await;
    let first = post_with_key(&app, "alice", "key-1", &order_body()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let again = post_with_key(&app, "alice", "key-1", &order_body()).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();

    assert_eq!(again["id"], first["id"]);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 1);
}

#[tokio::test]
async fn same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    post_with_key(&app, "alice", "key-1", &order_body()).await;
    let mut other = order_body();
    other["items"][0]["quantity"] = 3.into();

    let resp = post_with_key(&app, "alice", "key-1", &other).await;

    assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
}

#[tokio::test]
async fn keys_belong_to_one_user_and_expire() {
    let app = spawn_app().await;
    let a: Value = post_with_key(&app, "alice", "k", &order_body())
        .await
        .json()
        .await
        .unwrap();
    let b: Value = post_with_key(&app, "bob", "k", &order_body())
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(a["id"], b["id"], "another user's key is another key");

    app.db
        .connect()
        .await
        .execute(
            "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let c = post_with_key(&app, "alice", "k", &order_body()).await;
    assert_eq!(c.status(), StatusCode::CREATED);
    let c: Value = c.json().await.unwrap();
    assert_ne!(c["id"], a["id"], "an expired key starts afresh");
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 3);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_order() {
    let app = spawn_app().await;
    let body = order_body();
    let requests = (0..8).map(|_| post_with_key(&app, "alice", "race", &body));

    let responses = futures_util::future::join_all(requests).await;

    let mut ids = Vec::new();
    for resp in responses {
        assert_eq!(resp.status(), StatusCode::CREATED);
        ids.push(resp.json::<Value>().await.unwrap()["id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 1);
}

#[tokio::test]
async fn malformed_keys_are_400() {
    let app = spawn_app().await;
    // Too long, a blank inside: each breaks the schema.
    for key in ["k".repeat(256), "a b".to_owned()] {
        let resp = post_with_key(&app, "alice", &key, &order_body()).await;
        let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["Idempotency-Key"], "{key:?}");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(
            message
                .starts_with("failed to parse parameter `Idempotency-Key`: verification failed. ")
                && !message.contains("occurred while"),
            "{message}"
        );
    }
    // Trailing blanks are allowed (and the longest key).
    for key in ["order-1 \t".to_owned(), "k".repeat(255)] {
        let resp = post_with_key(&app, "alice", &key, &order_body()).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{key:?}");
    }
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 2);
}

#[tokio::test]
async fn purging_deletes_expired_keys_in_batches_and_keeps_the_rest() {
    use order_shared::db::purge::{PURGE_BATCH, Purge};
    use std::time::Duration;

    // No server over this database: its start-up purge would race the
    // purge under test for the same rows.
    let db = order_shared::testing::fresh_database().await;
    let client = db.connect().await;
    let count = async |sql: &str| -> i64 { client.query_one(sql, &[]).await.unwrap().get(0) };
    // More expired keys than one batch, a live key and a fresh inbox row.
    let expired = PURGE_BATCH + 5;
    client
        .execute(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, expires_at) \
             SELECT 'alice', 'old-' || n, '\\x00'::bytea, gen_random_uuid(), now() - interval '1 s' \
             FROM generate_series(1, $1::int8) n \
             UNION ALL SELECT 'alice', 'live', '\\x00', gen_random_uuid(), now() + interval '1 h'",
            &[&expired],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO processed_events (scope, event_key, topic, order_id, outcome, processed_at) \
             VALUES ('s', 'old', 't', gen_random_uuid(), 'applied', now() - interval '2 h'), \
                    ('s', 'new', 't', gen_random_uuid(), 'applied', now())",
            &[],
        )
        .await
        .unwrap();

    let pool = &order_shared::db::build_pool(&db.settings()).unwrap();
    let purged = Purge::ExpiredIdempotencyKeys.all(pool).await.unwrap();
    assert_eq!(
        purged, expired as u64,
        "every expired key, over two batches"
    );
    assert_eq!(
        count("SELECT count(*) FROM idempotency_keys WHERE key = 'live'").await,
        1
    );
    assert_eq!(count("SELECT count(*) FROM idempotency_keys").await, 1);
    let inbox = Purge::ProcessedEvents {
        older_than: Duration::from_secs(3600),
    };
    assert_eq!(inbox.all(pool).await.unwrap(), 1);
    assert_eq!(
        count("SELECT count(*) FROM processed_events WHERE event_key = 'new'").await,
        1
    );
}
