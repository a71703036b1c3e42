//! The database goes away: 503 within the timeout, readiness fails, and the
//! API recovers by itself when the database returns.

use crate::helpers::*;
use order_shared::testing::{TcpProxy, TestDb, fresh_database, host_port};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

#[tokio::test]
async fn database_outage_gives_503_and_recovers() {
    let db = fresh_database().await;
    let proxy = TcpProxy::start(host_port(&db.url)).await;
    let via_proxy = TestDb {
        name: db.name.clone(),
        url: proxy.url_for(&db.url),
    };
    let app = spawn_app_on(via_proxy, &[]).await;
    app.create_order("alice").await;

    proxy.cut().await;
    let started = Instant::now();
    let resp = app.post_order("alice", &order_body()).await;
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    let resp = app.get("/api/orders", &token("alice", false)).await;
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the request timeout"
    );
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = ready.json().await.unwrap();
    let database = body["checks"]["database"].as_str().unwrap_or_default();
    assert!(
        ["unavailable", "timed out"].contains(&database),
        "no driver text in the readiness body: {body}"
    );
    let live = app.http.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    while Instant::now() < deadline {
        status = app.post_order("alice", &order_body()).await.status();
        if status == StatusCode::CREATED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, StatusCode::CREATED, "recovered without a restart");
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        TestDb { ..db }
            .connect()
            .await
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
}
