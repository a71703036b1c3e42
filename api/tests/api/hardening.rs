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

#[tokio::test]
async fn the_document_states_the_domain_limits() {
    use order_shared::domain::money::MAX_UNIT_PRICE;
    use order_shared::domain::new_order::{MAX_ITEMS, MAX_PRODUCT_ID_CHARS, MAX_QUANTITY};

    let app = spawn_app().await;
    let spec: serde_json::Value =
        serde_json::from_str(&app.public_text("/api/openapi.json").await).unwrap();
    let schemas = &spec["components"]["schemas"];
    let item = &schemas["ItemRequest"]["properties"];
    let number = |v: &serde_json::Value| v.as_f64().expect("a number");
    assert_eq!(number(&item["quantity"]["maximum"]), MAX_QUANTITY as f64);
    assert_eq!(number(&item["quantity"]["minimum"]), 1.0);
    assert_eq!(number(&item["unitPrice"]["maximum"]), MAX_UNIT_PRICE as f64);
    assert_eq!(item["productId"]["maxLength"], MAX_PRODUCT_ID_CHARS);
    assert_eq!(
        schemas["ItemsOrder"]["properties"]["items"]["maxItems"],
        MAX_ITEMS
    );
    let content = &spec["paths"]["/orders"]["post"]["requestBody"]["content"];
    let body = &content.as_object().unwrap().values().next().unwrap()["schema"];
    let one_of = schemas["CreateOrderBody"]["oneOf"].as_array().map(Vec::len);
    assert!(
        body["$ref"].as_str().unwrap().ends_with("CreateOrderBody"),
        "{body}"
    );
    assert_eq!(one_of, Some(2), "items or cartId");
    assert_eq!(
        schemas["CancelRequest"]["properties"]["reason"]["nullable"],
        true
    );
    assert!(schemas["Problem"]["properties"]["instance"].is_object());
    let list = &spec["paths"]["/orders"]["get"]["parameters"];
    let cursor = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cursor")
        .unwrap();
    assert!(cursor["schema"]["pattern"].is_string());
    // The regexes the document states refuse what the domain refuses.
    let product_id = regex_of(&item["productId"]);
    for bad in [".", "..", "a/b", " a", "a\u{0}"] {
        assert!(!product_id.is_match(bad), "{bad:?}");
    }
    for good in ["sku-1", "...", ".a", "a.", "a b"] {
        assert!(product_id.is_match(good), "{good:?}");
    }
}

fn regex_of(schema: &serde_json::Value) -> regex::Regex {
    regex::Regex::new(schema["pattern"].as_str().expect("pattern")).unwrap()
}

#[tokio::test]
async fn a_bad_idempotency_key_is_400_naming_the_header() {
    let app = spawn_app().await;
    let with_key = |value: reqwest::header::HeaderValue| {
        app.http
            .post(app.url("/api/orders"))
            .bearer_auth(token("alice", false))
            .header("Idempotency-Key", value)
            .json(&order_body())
            .send()
    };
    let too_long = "k".repeat(256);
    for value in [
        reqwest::header::HeaderValue::from_static("with space"),
        reqwest::header::HeaderValue::from_str(&too_long).unwrap(),
        reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
    ] {
        let problem = assert_problem(with_key(value).await.unwrap(), StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["Idempotency-Key"]);
    }
    let ok = with_key(reqwest::header::HeaderValue::from_static("key-1"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
}
