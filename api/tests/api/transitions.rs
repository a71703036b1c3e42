//! cancel / ship / deliver: the state machine over HTTP, outbox rows per
//! applied change, no-ops, conflicts, atomicity and concurrency.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn cancel_writes_history_and_an_order_cancelled_event() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);

    let resp = app
        .patch(
            &format!("/api/orders/{id}/cancel"),
            &token("alice", false),
            Some(json!({"reason": "too slow"})),
        )
        .await;

    assert_eq!(resp.status(), StatusCode::OK);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["version"], 2);
    assert_eq!(order["cancellationReason"], "too slow");
    assert_eq!(
        app.outbox_of(id).await,
        vec![("order.placed".into(), 1), ("order.cancelled".into(), 2)]
    );
    let payload: Value = app
        .db
        .connect()
        .await
        .query_one(
            "SELECT payload FROM outbox WHERE event_type = 'order.cancelled'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(payload["data"]["reason"], "too slow");
    assert_eq!(payload["data"]["previousStatus"], "PENDING");
    assert_eq!(payload["data"]["items"][0]["productId"], "sku-1");
    assert_eq!(payload["version"], 2);
}

#[tokio::test]
async fn cancelling_a_cancelled_order_is_a_200_no_op() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    let path = format!("/api/orders/{id}/cancel");
    app.patch(&path, &token("alice", false), None).await;

    let again = app.patch(&path, &token("alice", false), None).await;

    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["version"], 2);
    assert_eq!(app.outbox_of(id).await.len(), 2);
}

#[tokio::test]
async fn the_full_lifecycle_emits_gapless_versions() {
    let app = spawn_app().await;
    let admin = token("root", true);
    let id = id_of(&app.create_order("alice").await);
    app.confirm(id).await;

    let shipped = app
        .patch(
            &format!("/api/orders/{id}/ship"),
            &admin,
            Some(json!({"carrier": "DHL", "trackingNumber": "JD0001"})),
        )
        .await;
    assert_eq!(shipped.status(), StatusCode::OK);
    let shipped: Value = shipped.json().await.unwrap();
    assert_eq!(shipped["status"], "SHIPPED");
    assert_eq!(shipped["carrier"], "DHL");
    assert_eq!(shipped["trackingNumber"], "JD0001");
    assert_eq!(shipped["paymentId"], "pay-1");

    let delivered = app
        .patch(&format!("/api/orders/{id}/deliver"), &admin, None)
        .await;
    assert_eq!(delivered.status(), StatusCode::OK);
    assert_eq!(
        delivered.json::<Value>().await.unwrap()["status"],
        "DELIVERED"
    );

    assert_eq!(
        app.outbox_of(id).await,
        vec![
            ("order.placed".into(), 1),
            ("order.confirmed".into(), 2),
            ("order.shipped".into(), 3),
            ("order.delivered".into(), 4),
        ]
    );
}

#[tokio::test]
async fn illegal_transitions_are_409_naming_the_current_status() {
    let app = spawn_app().await;
    let admin = token("root", true);
    let id = id_of(&app.create_order("alice").await);

    let resp = app
        .patch(
            &format!("/api/orders/{id}/ship"),
            &admin,
            Some(json!({"carrier": "DHL", "trackingNumber": "1"})),
        )
        .await;
    let problem = assert_problem(resp, StatusCode::CONFLICT).await;
    assert_eq!(problem["currentStatus"], "PENDING");
    assert!(problem["detail"].as_str().unwrap().contains("PENDING"));

    let resp = app
        .patch(&format!("/api/orders/{id}/deliver"), &admin, None)
        .await;
    assert_problem(resp, StatusCode::CONFLICT).await;
    assert_eq!(app.outbox_of(id).await.len(), 1, "refusals emit nothing");
}

#[tokio::test]
async fn ship_needs_carrier_and_tracking_number() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    app.confirm(id).await;

    let resp = app
        .patch(
            &format!("/api/orders/{id}/ship"),
            &token("root", true),
            Some(json!({"carrier": " ", "trackingNumber": "x".repeat(101)})),
        )
        .await;

    let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
    let resp = app
        .patch(
            &format!("/api/orders/{id}/ship"),
            &token("root", true),
            None,
        )
        .await;
    assert_problem(resp, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn users_cannot_cancel_other_users_orders() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);

    let resp = app
        .patch(
            &format!("/api/orders/{id}/cancel"),
            &token("mallory", false),
            None,
        )
        .await;

    assert_problem(resp, StatusCode::NOT_FOUND).await;
    let admin = app
        .patch(
            &format!("/api/orders/{id}/cancel"),
            &token("root", true),
            None,
        )
        .await;
    assert_eq!(admin.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_failed_transition_changes_nothing() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    app.db
        .connect()
        .await
        .batch_execute(
            "CREATE FUNCTION fail_cancel() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'forced'; END $$; \
             CREATE TRIGGER fail_cancel BEFORE INSERT ON outbox FOR EACH ROW \
             WHEN (NEW.event_type = 'order.cancelled') EXECUTE FUNCTION fail_cancel();",
        )
        .await
        .unwrap();

    let resp = app
        .patch(
            &format!("/api/orders/{id}/cancel"),
            &token("alice", false),
            None,
        )
        .await;

    assert_problem(resp, StatusCode::INTERNAL_SERVER_ERROR).await;
    let order: Value = app
        .get(&format!("/api/orders/{id}"), &token("alice", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["version"], 1);
    assert_eq!(
        app.count("SELECT count(*) FROM order_status_history").await,
        1
    );
    assert_eq!(app.outbox_of(id).await.len(), 1);
}

#[tokio::test]
async fn concurrent_transitions_on_one_order_have_exactly_one_winner() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    app.confirm(id).await;
    let admin = token("root", true);
    let cancel = format!("/api/orders/{id}/cancel");
    let ship = format!("/api/orders/{id}/ship");
    let body = json!({"carrier": "UPS", "trackingNumber": "1Z"});

    let requests = (0..10).map(|i| {
        let (path, body) = if i % 2 == 0 {
            (cancel.clone(), None)
        } else {
            (ship.clone(), Some(body.clone()))
        };
        let app = &app;
        let admin = admin.clone();
        async move { (i % 2 == 0, app.patch(&path, &admin, body).await.status()) }
    });
    let results = futures_util::future::join_all(requests).await;

    let outbox = app.outbox_of(id).await;
    assert_eq!(
        outbox.len(),
        3,
        "placed, confirmed, and one winner: {outbox:?}"
    );
    let versions: Vec<i64> = outbox.iter().map(|(_, v)| *v).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    let cancel_won = outbox[2].0 == "order.cancelled";
    for (is_cancel, status) in results {
        let expected = if is_cancel == cancel_won {
            StatusCode::OK // the winner, or a repeat of it (no-op)
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(status, expected);
    }
    assert_eq!(
        app.count("SELECT count(*) FROM order_status_history").await,
        3
    );
}
