//! Hostile input and safe defaults (issue 10): headers on every answer,
//! what readiness and a 401 say, text with control characters.

use crate::helpers::*;
use reqwest::StatusCode;

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
