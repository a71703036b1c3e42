//! Hostile input and safe defaults (issue 10): headers on every answer,
//! what readiness and a 401 say, text with control characters.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn every_answer_is_nosniff_and_orders_are_never_cached() {
    let app = spawn_app().await;
    let order = app.create_order("alice").await;
    let id = id_of(&order);
    let alice = token("alice", false);
    for path in [format!("/api/orders/{id}"), "/api/orders".to_owned()] {
        let resp = app.get(&path, &alice).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
    }
    let live = app.http.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(live.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn a_problem_names_the_request_trace_id_as_its_instance() {
    let app = spawn_app().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = app
        .http
        .get(app.url(&format!("/api/orders/{}", uuid::Uuid::now_v7())))
        .bearer_auth(token("alice", false))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(resp, StatusCode::NOT_FOUND).await;
    assert_eq!(problem["instance"], trace);
    // Without a traceparent the id is made up, still 32 hex digits.
    let resp = app.get("/api/orders/not-a-uuid", &token("a", false)).await;
    assert_problem(resp, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn control_characters_and_dot_ids_are_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        ("/items/0/productId", json!("a\u{0}b"), "items[0].productId"),
        ("/items/0/productId", json!("."), "items[0].productId"),
        ("/items/0/productId", json!("a/b"), "items[0].productId"),
        (
            "/shippingAddress/name",
            json!("Ada\u{1b}[2J"),
            "shippingAddress.name",
        ),
        (
            "/shippingAddress/city",
            json!("Paris\u{0}"),
            "shippingAddress.city",
        ),
    ];
    for (pointer, value, field) in cases {
        let mut body = order_body();
        *body.pointer_mut(pointer).expect(pointer) = value;
        let problem = assert_problem(
            app.post_order("alice", &body).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_fields(&problem), [field], "{pointer}");
    }
    let mut by_cart = order_body();
    by_cart.as_object_mut().unwrap().remove("items");
    by_cart["cartId"] = json!("..");
    let problem = assert_problem(
        app.post_order("alice", &by_cart).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_fields(&problem), ["cartId"]);
    assert_eq!(
        app.count("SELECT count(*) FROM orders").await,
        0,
        "nothing written"
    );

    let id = id_of(&app.create_order("alice").await);
    let alice = token("alice", false);
    let admin = token("root", true);
    let resp = app
        .patch(
            &format!("/api/orders/{id}/cancel"),
            &alice,
            Some(json!({"reason": "no\u{0}"})),
        )
        .await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["reason"]);
    app.confirm(id).await;
    let ship = json!({"carrier": "UPS\u{7}", "trackingNumber": "1Z"});
    let resp = app
        .patch(&format!("/api/orders/{id}/ship"), &admin, Some(ship))
        .await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["carrier"]);
    let resp = app.get("/api/orders?userId=a%00b", &admin).await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["userId"]);
    // Line breaks are the one thing a reason may hold.
    let resp = app
        .patch(
            &format!("/api/orders/{id}/cancel"),
            &alice,
            Some(json!({"reason": "too late\nsorry"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn order_creation_is_rate_limited_per_user_with_retry_after() {
    let app = spawn_app_with(&[("RATE_LIMIT_ORDERS_PER_MINUTE", "2")]).await;
    for _ in 0..2 {
        let resp = app.post_order("alice", &order_body()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let resp = app.post_order("alice", &order_body()).await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    let problem = assert_problem(resp, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(problem["type"], "/problems/rate-limited");
    // Another user has a quota of their own; reads are not limited.
    let resp = app.post_order("bob", &order_body()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let list = app.get("/api/orders", &token("alice", false)).await;
    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 3);
}
