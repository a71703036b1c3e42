//! POST /api/orders: success, validation, limits and atomicity.

use crate::helpers::*;
use order_shared::domain::events::shard_of;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn create_answers_201_with_location_and_writes_one_outbox_row() {
    let app = spawn_app().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let resp = app
        .http
        .post(app.url("/api/orders"))
        .bearer_auth(token("alice", false))
        .header("traceparent", traceparent)
        .json(&order_body())
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = resp.json().await.unwrap();
    let id = id_of(&order);
    assert_eq!(location, format!("/api/orders/{id}"));
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["userId"], "alice");
    assert_eq!(order["version"], 1);
    assert_eq!(order["totalAmount"], 2 * 1999 + 500);
    assert_eq!(order["items"][0]["lineTotal"], 3998);
    assert_eq!(order["shippingAddress"]["country"], "GB");
    assert!(
        order["shippingAddress"].get("line2").is_none(),
        "unset fields are omitted"
    );
    assert_eq!(id.get_version_num(), 7);

    let client = app.db.connect().await;
    let rows = client
        .query(
            "SELECT event_type, topic, aggregate_version, payload, headers, shard, event_id FROM outbox",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<_, String>(0), "order.placed");
    assert_eq!(row.get::<_, String>(1), "order.placed");
    assert_eq!(row.get::<_, i64>(2), 1);
    let payload: Value = row.get(3);
    assert_eq!(payload["eventType"], "order.placed");
    assert_eq!(payload["orderId"], json!(id));
    assert_eq!(payload["userId"], "alice");
    assert_eq!(payload["version"], 1);
    assert_eq!(payload["eventId"], json!(row.get::<_, uuid::Uuid>(6)));
    assert_eq!(payload["data"]["totalAmount"], 4498);
    assert_eq!(payload["data"]["currency"], "USD");
    assert_eq!(payload["data"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(payload["data"]["shippingAddress"]["city"], "London");
    let headers: Value = row.get(4);
    assert_eq!(headers["traceparent"], traceparent);
    assert_eq!(row.get::<_, i32>(5), shard_of(id.into(), 32));

    assert_eq!(app.count("SELECT count(*) FROM order_items").await, 2);
    assert_eq!(
        app.count("SELECT count(*) FROM order_status_history WHERE to_status = 'PENDING'")
            .await,
        1
    );
}

#[tokio::test]
async fn invalid_orders_get_400_with_every_field_error() {
    let app = spawn_app().await;
    let body = json!({
        "currency": "usd",
        "items": [
            {"productId": "", "quantity": 0, "unitPrice": -1},
            {"productId": "sku-2", "quantity": 10001, "unitPrice": 1000000001i64},
            {"productId": "sku-2", "quantity": 1, "unitPrice": 1}
        ],
        "shippingAddress": {"name": "A", "line1": "B", "city": "C", "postalCode": "D", "country": "Germany"}
    });

    let problem = assert_problem(
        app.post_order("alice", &body).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    let fields = error_fields(&problem);
    assert_eq!(
        fields,
        [
            "currency",
            "items[0].productId",
            "items[0].quantity",
            "items[0].unitPrice",
            "items[1].quantity",
            "items[1].unitPrice",
            "shippingAddress.country"
        ]
    );
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
}

#[tokio::test]
async fn missing_items_and_address_are_field_errors() {
    let app = spawn_app().await;
    let problem = assert_problem(
        app.post_order("alice", &json!({"currency": "USD"})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors[0]["field"], "items");
    assert!(errors.iter().any(|e| e["field"] == "shippingAddress.line1"));
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_400_problems() {
    let app = spawn_app().await;
    for raw in [
        "{not json",
        r#"{"currency":"USD","items":[{"productId":"a","quantity":"two","unitPrice":1}]}"#,
        "[]",
    ] {
        let resp = app
            .http
            .post(app.url("/api/orders"))
            .bearer_auth(token("alice", false))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
        assert!(problem["detail"].as_str().unwrap().len() > 5, "{raw}");
    }
}

#[tokio::test]
async fn body_over_the_limit_is_413_with_or_without_content_length() {
    let app = spawn_app().await;
    let mut body = order_body();
    body["shippingAddress"]["line2"] = json!("x".repeat(20_000));

    let resp = app.post_order("alice", &body).await;
    assert_problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"{\"currency\":\"".to_vec()), Ok(vec![b'x'; 20_000])];
    let resp = app
        .http
        .post(app.url("/api/orders"))
        .bearer_auth(token("alice", false))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
}

#[tokio::test]
async fn a_failure_inside_the_write_leaves_no_rows_behind() {
    let app = spawn_app().await;
    let client = app.db.connect().await;
    client
        .batch_execute(
            "CREATE FUNCTION fail_outbox() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'forced outbox failure'; END $$; \
             CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox \
             FOR EACH ROW EXECUTE FUNCTION fail_outbox();",
        )
        .await
        .unwrap();

    let resp = app.post_order("alice", &order_body()).await;

    let problem = assert_problem(resp, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert!(!problem.to_string().contains("forced"), "no SQL text leaks");
    for table in ["orders", "order_items", "order_status_history", "outbox"] {
        assert_eq!(
            app.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
}
