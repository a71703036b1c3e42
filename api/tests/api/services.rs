//! Product service price checks and cart checkout, against small real HTTP
//! servers standing in for those services.

use crate::helpers::*;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Json, Path};
use poem::{EndpointExt, Request, Route, handler};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[handler]
fn product(Path(id): Path<String>) -> poem::Response {
    use poem::IntoResponse;
    match id.as_str() {
        "sku-1" => Json(
            json!({"id": "sku-1", "name": "Mug", "price": 1999, "currency": "USD", "active": true}),
        )
        .into_response(),
        "sku-2" => Json(
            json!({"id": "sku-2", "name": "Cap", "price": 500, "currency": "USD", "active": true}),
        )
        .into_response(),
        "old" => Json(
            json!({"id": "old", "name": "Old", "price": 100, "currency": "USD", "active": false}),
        )
        .into_response(),
        _ => poem::http::StatusCode::NOT_FOUND.into_response(),
    }
}

#[handler]
fn cart(req: &Request, Path(id): Path<String>) -> poem::Response {
    use poem::IntoResponse;
    let auth = req.header("authorization").unwrap_or_default();
    if id != "cart-1" || !auth.starts_with("Bearer ") {
        return poem::http::StatusCode::NOT_FOUND.into_response();
    }
    Json(json!({"id": "cart-1", "currency": "USD", "items": [
        {"productId": "sku-1", "quantity": 3, "unitPrice": 1999}
    ]}))
    .into_response()
}

async fn serve(route: Route) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(route.map_to_response()));
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn prices_come_from_the_product_service() {
    let products = serve(Route::new().at("/api/products/:id", poem::get(product))).await;
    let app = spawn_app_with(&[("PRODUCT_SERVICE_URL", &products)]).await;

    assert_eq!(
        app.post_order("alice", &order_body()).await.status(),
        StatusCode::CREATED
    );

    let mut repriced = order_body();
    repriced["items"][0]["unitPrice"] = 1.into();
    repriced["items"][1]["productId"] = "unknown".into();
    repriced["items"]
        .as_array_mut()
        .unwrap()
        .push(json!({"productId": "old", "quantity": 1, "unitPrice": 100}));
    let problem = assert_problem(
        app.post_order("alice", &repriced).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let fields = error_fields(&problem);
    assert_eq!(
        fields,
        [
            "items[0].unitPrice",
            "items[1].productId",
            "items[2].productId"
        ]
    );
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
}

#[tokio::test]
async fn unreachable_product_service_is_503() {
    let app = spawn_app_with(&[("PRODUCT_SERVICE_URL", "http://127.0.0.1:9")]).await;
    assert_problem(
        app.post_order("alice", &order_body()).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
}

#[tokio::test]
async fn checkout_reads_the_cart_with_the_callers_token() {
    let carts = serve(Route::new().at("/api/carts/:id", poem::get(cart))).await;
    let app = spawn_app_with(&[("CART_SERVICE_URL", &carts)]).await;
    let address = order_body()["shippingAddress"].clone();

    let resp = app
        .post_order(
            "alice",
            &json!({"cartId": "cart-1", "shippingAddress": address}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["totalAmount"], 3 * 1999);
    assert_eq!(order["currency"], "USD");

    let resp = app
        .post_order(
            "alice",
            &json!({"cartId": "nope", "shippingAddress": address}),
        )
        .await;
    let problem = assert_problem(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["errors"][0]["field"], "cartId");
}

#[tokio::test]
async fn cart_checkout_without_a_cart_service_is_400() {
    let app = spawn_app().await;
    let body = json!({"cartId": "cart-1", "shippingAddress": order_body()["shippingAddress"]});
    assert_problem(
        app.post_order("alice", &body).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}
