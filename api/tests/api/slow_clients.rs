//! Slow clients are cut within the configured times: a request head that
//! stops half-way, a body that stops half-way, a keep-alive connection left
//! idle; and a write without a valid token is refused before its body.

use crate::helpers::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn slow_app() -> TestApp {
    spawn_app_with(&[
        ("HTTP_HEADER_READ_TIMEOUT_MS", "500"),
        ("HTTP_BODY_READ_TIMEOUT_MS", "700"),
        ("HTTP_IDLE_TIMEOUT_MS", "900"),
    ])
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes (or 10 s pass); returns what it sent and when it closed.
async fn read_until_closed(conn: &mut TcpStream, started: Instant) -> (String, Duration) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
    (
        String::from_utf8_lossy(&all).into_owned(),
        started.elapsed(),
    )
}

/// A keep-alive connection, its answer read, left idle: the server sends
/// nothing more and closes it at the idle timeout.
async fn closed_when_idle(conn: &mut TcpStream) {
    let (rest, after) = read_until_closed(conn, Instant::now()).await;
    assert!(rest.is_empty(), "{rest}");
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(4),
        "closed after {after:?} idle (limit 900 ms)"
    );
}

#[tokio::test]
async fn a_head_that_stops_half_way_is_cut_at_the_header_timeout() {
    let app = slow_app().await;
    let mut conn = connect(&app).await;
    let started = Instant::now();
    conn.write_all(b"POST /api/orders HTTP/1.1\r\nHost: shop\r\n")
        .await
        .unwrap();
    let (_, after) = read_until_closed(&mut conn, started).await;
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_secs(3),
        "cut after {after:?} (limit 500 ms)"
    );
    // A connection that never sends a byte goes the same way.
    let mut silent = connect(&app).await;
    let (_, after) = read_until_closed(&mut silent, Instant::now()).await;
    assert!(
        after < Duration::from_secs(3),
        "silent connection cut after {after:?}"
    );
}

#[tokio::test]
async fn a_body_that_stops_half_way_is_408_at_the_body_timeout() {
    let app = slow_app().await;
    let mut conn = connect(&app).await;
    let head = format!(
        "POST /api/orders HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"currency\":",
        token("alice", false)
    );
    let started = Instant::now();
    conn.write_all(head.as_bytes()).await.unwrap();
    let (answer, after) = read_until_closed(&mut conn, started).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
    assert!(
        after >= Duration::from_millis(650) && after < Duration::from_secs(3),
        "answered after {after:?} (limit 700 ms)"
    );
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
}

#[tokio::test]
async fn a_write_without_a_valid_token_is_refused_before_its_body() {
    let app = slow_app().await;
    for auth in ["", "Authorization: Bearer not-a-token\r\n"] {
        let mut conn = connect(&app).await;
        let head = format!(
            "POST /api/orders HTTP/1.1\r\nHost: shop\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: 5000\r\n\r\n"
        );
        let started = Instant::now();
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("an answer without the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "401 before the body timeout, not after: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let app = slow_app().await;
    let mut conn = connect(&app).await;
    conn.write_all(b"GET /health/live HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    closed_when_idle(&mut conn).await;
}

#[tokio::test]
async fn a_keep_alive_client_ending_lines_with_bare_line_feeds_is_timed_as_any_other() {
    // hyper reads a head whose lines end in "\n" alone; the header deadline
    // must end with such a head too, or it cuts the connection at 500 ms
    // from its start, whatever the requests on it.
    let app = slow_app().await;
    let started = Instant::now();
    let mut conn = connect(&app).await;
    let mut buf = [0u8; 2048];
    for wait_until in [Duration::ZERO, Duration::from_millis(700)] {
        tokio::time::sleep(wait_until.saturating_sub(started.elapsed())).await;
        conn.write_all(b"GET /health/live HTTP/1.1\nHost: shop\n\n")
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "at {:?}: {answer:?}",
            started.elapsed()
        );
    }
    closed_when_idle(&mut conn).await;
}
