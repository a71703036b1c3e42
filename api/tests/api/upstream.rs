//! The product service misbehaving: each lookup is retried once, at most
//! UPSTREAM_MAX_CONCURRENCY run at a time, and a service that keeps failing
//! opens the circuit breaker (503 at once, with Retry-After, no calls).

use crate::helpers::*;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json, Path};
use poem::{EndpointExt, IntoResponse, Route, handler};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What the fake product service does and saw.
#[derive(Default)]
struct Fake {
    /// Answer 500 to the first `fail_first` calls (usize::MAX: always).
    fail_first: usize,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay_ms: u64,
}

#[handler]
async fn product(Path(id): Path<String>, fake: Data<&Arc<Fake>>) -> poem::Response {
    let call = fake.calls.fetch_add(1, Ordering::SeqCst);
    let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(fake.delay_ms)).await;
    fake.in_flight.fetch_sub(1, Ordering::SeqCst);
    if call < fake.fail_first {
        return poem::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Json(json!({"id": id, "price": 100, "currency": "USD", "active": true})).into_response()
}

async fn serve(fake: Arc<Fake>) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let route = Route::new().at("/api/products/:id", poem::get(product).data(fake));
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(route));
    format!("http://127.0.0.1:{port}")
}

fn order_of(lines: usize) -> Value {
    let mut body = order_body();
    body["items"] = (0..lines)
        .map(|i| json!({"productId": format!("p-{i}"), "quantity": 1, "unitPrice": 100}))
        .collect();
    body
}

#[tokio::test]
async fn a_failed_lookup_is_retried_once() {
    let fake = Arc::new(Fake {
        fail_first: 1,
        ..Fake::default()
    });
    let products = serve(fake.clone()).await;
    let app = spawn_app_with(&[("PRODUCT_SERVICE_URL", &products)]).await;
    let resp = app.post_order("alice", &order_of(1)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        2,
        "one failure, one retry"
    );
}

#[tokio::test]
async fn lookups_run_at_most_max_concurrency_at_a_time() {
    let fake = Arc::new(Fake {
        delay_ms: 50,
        ..Fake::default()
    });
    let products = serve(fake.clone()).await;
    let app = spawn_app_with(&[
        ("PRODUCT_SERVICE_URL", &products),
        ("UPSTREAM_MAX_CONCURRENCY", "3"),
    ])
    .await;
    let resp = app.post_order("alice", &order_of(12)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 12);
    let max = fake.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "at most 3 in flight, saw {max}");
}

#[tokio::test]
async fn a_failing_service_opens_the_breaker_and_is_left_alone() {
    let fake = Arc::new(Fake {
        fail_first: usize::MAX,
        ..Fake::default()
    });
    let products = serve(fake.clone()).await;
    let app = spawn_app_with(&[
        ("PRODUCT_SERVICE_URL", &products),
        ("UPSTREAM_BREAKER_FAILURES", "2"),
        ("UPSTREAM_BREAKER_OPEN_SECS", "30"),
    ])
    .await;
    for _ in 0..2 {
        let resp = app.post_order("alice", &order_of(1)).await;
        assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    }
    let calls = fake.calls.load(Ordering::SeqCst);
    assert_eq!(calls, 4, "two failed lookups, each tried twice");

    let started = std::time::Instant::now();
    let resp = app.post_order("alice", &order_of(2)).await;
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((25..=30).contains(&retry), "Retry-After {retry}");
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(started.elapsed() < Duration::from_millis(500), "fails fast");
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        calls,
        "no call while open"
    );

    let text = app.public_text("/metrics").await;
    for needle in [
        "upstream_breaker_open{service=\"product\"} 1",
        "upstream_requests_total{service=\"product\",outcome=\"failure\"} 4",
        "upstream_requests_total{service=\"product\",outcome=\"rejected\"}",
        "upstream_request_duration_seconds_bucket{service=\"product\"",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
}
