//! Live updates (SSE) on one API replica, and across two replicas through
//! a replica's announcement or the version check alone (no relay here; the
//! relay's hint path is tested in the relay's tests): initial state,
//! `Last-Event-ID`, list streams, the per-user cap, ownership, heartbeats,
//! the gauge, and shutdown.

use crate::helpers::*;
use order_shared::testing::sse::{SseEvent, SseStream};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub(crate) const WAIT: Duration = Duration::from_secs(5);

impl TestApp {
    pub async fn sse(&self, path: &str, bearer: &str, last_event_id: Option<&str>) -> SseStream {
        let addr = self.address.trim_start_matches("http://");
        let auth = format!("Bearer {bearer}");
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(id) = last_event_id {
            headers.push(("Last-Event-ID", id));
        }
        SseStream::connect(addr, path, &headers)
            .await
            .expect("connect")
    }
}

async fn order_json(app: &TestApp, id: Uuid) -> Value {
    app.get(&format!("/api/orders/{id}"), &token("admin", true))
        .await
        .json()
        .await
        .unwrap()
}

pub(crate) async fn cancel(app: &TestApp, id: Uuid) {
    let resp = app
        .patch(
            &format!("/api/orders/{id}/cancel"),
            &token("alice", false),
            Some(json!({"reason": "live"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Alice's stream of order `id`, past its initial state (version 1).
pub(crate) async fn watch(app: &TestApp, id: Uuid) -> SseStream {
    let mut stream = app
        .sse(
            &format!("/api/orders/{id}/events"),
            &token("alice", false),
            None,
        )
        .await;
    assert_order_event(&stream.next_event(WAIT).await.unwrap(), id, 1);
    stream
}

pub(crate) fn assert_order_event(event: &SseEvent, id: Uuid, version: i64) {
    assert_eq!(event.event.as_deref(), Some("order"));
    assert_eq!(
        event.id.as_deref(),
        Some(format!("{id}:{version}").as_str())
    );
    assert_eq!(event.json()["version"], version);
}

#[tokio::test]
async fn an_order_stream_sends_the_current_state_then_each_change_as_get_returns_it() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    let mut stream = app
        .sse(
            &format!("/api/orders/{id}/events"),
            &token("alice", false),
            None,
        )
        .await;
    assert_eq!(stream.status, 200);
    assert!(
        stream
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );

    let first = stream.next_event(WAIT).await.expect("the current state");
    assert_order_event(&first, id, 1);
    assert_eq!(first.json(), order_json(&app, id).await);

    let sent = Instant::now();
    cancel(&app, id).await;
    let second = stream.next_event(WAIT).await.expect("the change");
    assert_order_event(&second, id, 2);
    assert_eq!(
        second.json(),
        order_json(&app, id).await,
        "data is the order as GET returns it"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "fanned out by this replica at once"
    );
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_sends_the_state_only_if_newer() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);
    app.confirm(id).await; // version 2, not through the API
    let path = format!("/api/orders/{id}/events");
    let alice = token("alice", false);

    let mut behind = app.sse(&path, &alice, Some(&format!("{id}:1"))).await;
    assert_order_event(&behind.next_event(WAIT).await.expect("v2, missed"), id, 2);

    let mut current = app.sse(&path, &alice, Some(&format!("{id}:2"))).await;
    assert_eq!(
        current.next_event(Duration::from_millis(500)).await,
        None,
        "nothing missed"
    );
    cancel(&app, id).await;
    assert_order_event(&current.next_event(WAIT).await.expect("v3"), id, 3);

    // An id of another order does not count: the state is sent.
    let other = format!("{}:9", Uuid::now_v7());
    let mut fresh = app.sse(&path, &alice, Some(&other)).await;
    assert_order_event(&fresh.next_event(WAIT).await.expect("v3"), id, 3);
}

#[tokio::test]
async fn list_streams_carry_the_callers_orders_and_admins_see_all() {
    let app = spawn_app().await;
    let mut mine = app
        .sse("/api/orders/events", &token("alice", false), None)
        .await;
    let mut all = app
        .sse("/api/orders/events", &token("admin", true), None)
        .await;
    let mut bobs = app
        .sse("/api/orders/events?userId=bob", &token("admin", true), None)
        .await;
    assert_eq!((mine.status, all.status, bobs.status), (200, 200, 200));

    let alices = id_of(&app.create_order("alice").await);
    let bob = id_of(&app.create_order("bob").await);
    cancel(&app, alices).await;

    assert_order_event(&mine.next_event(WAIT).await.unwrap(), alices, 1);
    assert_order_event(&mine.next_event(WAIT).await.unwrap(), alices, 2);
    assert_eq!(
        mine.next_event(Duration::from_millis(500)).await,
        None,
        "not bob's order"
    );
    let seen: Vec<String> = [
        all.next_event(WAIT).await.unwrap(),
        all.next_event(WAIT).await.unwrap(),
        all.next_event(WAIT).await.unwrap(),
    ]
    .iter()
    .map(|e| e.id.clone().unwrap())
    .collect();
    assert_eq!(
        seen,
        [
            format!("{alices}:1"),
            format!("{bob}:1"),
            format!("{alices}:2")
        ]
    );
    assert_order_event(&bobs.next_event(WAIT).await.unwrap(), bob, 1);
}

#[tokio::test]
async fn streams_are_for_owners_and_admins_only() {
    let app = spawn_app().await;
    let id = id_of(&app.create_order("alice").await);

    let theirs = app
        .sse(
            &format!("/api/orders/{id}/events"),
            &token("bob", false),
            None,
        )
        .await;
    assert_eq!(theirs.status, 404);
    let body: Value = serde_json::from_str(&theirs.body().await).unwrap();
    assert_eq!(body["type"], "/problems/not-found");

    let list = app
        .sse(
            "/api/orders/events?userId=alice",
            &token("bob", false),
            None,
        )
        .await;
    assert_eq!(list.status, 403);
    let anonymous = SseStream::connect(
        app.address.trim_start_matches("http://"),
        "/api/orders/events",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(anonymous.status, 401);
    let admin = app
        .sse(
            &format!("/api/orders/{id}/events"),
            &token("admin", true),
            None,
        )
        .await;
    assert_eq!(admin.status, 200);
}

#[tokio::test]
async fn the_per_user_cap_answers_429_with_retry_after_until_a_stream_closes() {
    // A closed connection is noticed at the next write: the heartbeat.
    let app = spawn_app_with(&[
        ("SSE_MAX_STREAMS_PER_USER", "2"),
        ("SSE_HEARTBEAT_MS", "200"),
    ])
    .await;
    let alice = token("alice", false);
    let first = app.sse("/api/orders/events", &alice, None).await;
    let _second = app.sse("/api/orders/events", &alice, None).await;

    let third = app.sse("/api/orders/events", &alice, None).await;
    assert_eq!(third.status, 429);
    assert_eq!(third.header("retry-after"), Some("10"));
    let problem: Value = serde_json::from_str(&third.body().await).unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("SSE_MAX_STREAMS_PER_USER")
    );
    let bobs = app
        .sse("/api/orders/events", &token("bob", false), None)
        .await;
    assert_eq!(bobs.status, 200, "the cap is per user");

    drop(first);
    let mut status = 0;
    for _ in 0..50 {
        status = app.sse("/api/orders/events", &alice, None).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "a closed stream frees its slot");
}

#[tokio::test]
async fn quiet_streams_get_heartbeats_and_the_gauge_counts_open_streams() {
    let app = spawn_app_with(&[("SSE_HEARTBEAT_MS", "200")]).await;
    let mut stream = app
        .sse("/api/orders/events", &token("alice", false), None)
        .await;
    assert!(
        stream.heartbeat(Duration::from_secs(2)).await,
        "a comment line"
    );
    assert!(
        app.public_text("/metrics")
            .await
            .contains("sse_open_streams 1")
    );
    drop(stream);
    let mut gauge = String::new();
    for _ in 0..50 {
        gauge = app.public_text("/metrics").await;
        if gauge.contains("sse_open_streams 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gauge.contains("sse_open_streams 0"), "{gauge}");
}

#[tokio::test]
async fn open_streams_end_at_shutdown_without_waiting_for_the_grace_period() {
    let app = spawn_app_with(&[("SHUTDOWN_TIMEOUT_SECS", "30")]).await;
    let mut stream = app
        .sse("/api/orders/events", &token("alice", false), None)
        .await;
    assert_eq!(stream.status, 200);
    let started = Instant::now();
    app.shutdown.cancel();
    assert!(
        stream.ends_within(Duration::from_secs(3)).await,
        "the stream ended"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_change_no_replica_announced_arrives_through_the_version_check() {
    // Written straight to the database (as when no hint comes: relay or
    // broker down): only the periodic check can find it.
    let b = spawn_app_with(&[("SSE_CHECK_INTERVAL_MS", "200")]).await;
    let id = id_of(&b.create_order("alice").await);
    let mut stream = watch(&b, id).await;

    b.confirm(id).await;

    let event = stream
        .next_event(WAIT)
        .await
        .expect("the change found by the check");
    assert_order_event(&event, id, 2);
    assert_eq!(event.json()["status"], "CONFIRMED");
}

#[tokio::test]
async fn another_replicas_change_arrives_through_its_announcement() {
    // No relay, and a version check that would take a minute: only replica
    // a's announcement (a NOTIFY after its commit) can carry the change.
    let quiet = [("SSE_CHECK_INTERVAL_MS", "60000")];
    let a = spawn_app_with(&quiet).await;
    let b = spawn_app_on(a.db.clone(), &quiet).await;
    let id = id_of(&a.create_order("alice").await);
    let mut stream = watch(&b, id).await;
    let mut list = b
        .sse("/api/orders/events", &token("alice", false), None)
        .await;
    // Until replica a reads b's interest in them, and b's check after
    // taking it has run, a change could reach b by that check.
    tokio::time::sleep(order_shared::db::interest::CATCH_UP + Duration::from_millis(500)).await;

    let sent = Instant::now();
    cancel(&a, id).await;
    let created = id_of(&a.create_order("alice").await);

    let event = stream
        .next_event(WAIT)
        .await
        .expect("the change made on replica a");
    assert_order_event(&event, id, 2);
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    // The list stream opened after the placement, whose announcement may
    // still come first.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = list.next_event(WAIT).await.expect("list updates");
        let event_id = event.id.unwrap();
        if event_id != format!("{id}:1") {
            seen.push(event_id);
        }
    }
    assert_eq!(seen, [format!("{id}:2"), format!("{created}:1")]);
}
