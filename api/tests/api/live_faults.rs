//! Live updates under faults: the database connections of a replica are
//! cut (its LISTEN connection reconnects and hints flow again), and a real
//! `order-api serve` process gets SIGTERM with a stream open (the stream
//! ends and the process exits long before the grace period).

use crate::helpers::*;
use order_shared::testing::sse::SseStream;
use order_shared::testing::{TcpProxy, TestDb, fresh_database, host_port};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

async fn stream(addr: &str, path: &str) -> SseStream {
    let auth = format!("Bearer {}", token("alice", false));
    let s = SseStream::connect(addr, path, &[("Authorization", &auth)])
        .await
        .unwrap();
    assert_eq!(s.status, 200);
    s
}

#[tokio::test]
async fn hints_flow_again_after_the_listen_connection_was_cut() {
    // Only hints can deliver here: the version check would take a minute
    // (it runs once when LISTEN reconnects, before the change below).
    let quiet = [("SSE_CHECK_INTERVAL_MS", "60000")];
    let db = fresh_database().await;
    let proxy = TcpProxy::start(host_port(&db.url)).await;
    let via_proxy = TestDb {
        name: db.name.clone(),
        url: proxy.url_for(&db.url),
    };
    let a = spawn_app_on(db, &quiet).await;
    let b = spawn_app_on(via_proxy, &quiet).await;
    let id = id_of(&a.create_order("alice").await);
    let addr = b.address.trim_start_matches("http://");
    let mut one = stream(addr, &format!("/api/orders/{id}/events")).await;
    assert_eq!(
        one.next_event(WAIT).await.unwrap().id,
        Some(format!("{id}:1"))
    );

    proxy.cut().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore().await;
    // The LISTEN connection comes back within its backoff (0.5 s, then 1 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resp = a
        .patch(
            &format!("/api/orders/{id}/cancel"),
            &token("alice", false),
            None,
        )
        .await;
    assert_eq!(resp.status(), 200);

    let event = one
        .next_event(WAIT)
        .await
        .expect("the change after the cut");
    assert_eq!(event.id, Some(format!("{id}:2")));
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_the_process_exits_before_the_grace_period() {
    let db = fresh_database().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-api"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("JWT_SECRET", SECRET)
        .env("API_HOST", "127.0.0.1")
        .env("API_PORT", port.to_string())
        .env("SHUTDOWN_TIMEOUT_SECS", "30")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start order-api");
    let addr = format!("127.0.0.1:{port}");
    let mut opened = None;
    for _ in 0..100 {
        if let Ok(s) = SseStream::connect(
            &addr,
            "/api/orders/events",
            &[(
                "Authorization",
                &format!("Bearer {}", token("alice", false)),
            )],
        )
        .await
            && s.status == 200
        {
            opened = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut open = opened.expect("a stream on the process");

    let started = Instant::now();
    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());

    assert!(
        open.ends_within(Duration::from_secs(5)).await,
        "the stream ended"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited well before the 30 s grace period")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
