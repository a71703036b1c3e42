//! Announcing only what a stream may watch (`order_shared::db::interest`):
//! no hint of a change that no stream of this database watches, a hint of a watched user's
//! change, and a change made before the announcers saw a new stream still
//! reaches it (the stream's replica checks the versions again).

use crate::helpers::*;
use crate::live::{WAIT, assert_order_event, cancel, watch};
use order_shared::db::interest::{self, ALL_ORDERS, CATCH_UP, INTEREST_REFRESH, user_bucket};
use order_shared::db::live::parse_hints;
use order_shared::testing::fresh_database;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use uuid::Uuid;

/// The version check would take a minute: only hints and the catch-up
/// check can deliver.
const QUIET: [(&str, &str); 1] = [("SSE_CHECK_INTERVAL_MS", "60000")];

/// The orders hinted on the changes channel, as a listener that holds no
/// interest lock hears them (while the client is kept).
async fn hints(app: &TestApp) -> (tokio_postgres::Client, UnboundedReceiver<Uuid>) {
    let (client, mut conn) = tokio_postgres::connect(&app.db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, rx) = unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = msg {
                for hint in parse_hints(n.payload()).unwrap() {
                    let _ = tx.send(Uuid::from(hint.order_id));
                }
            }
        }
    });
    client.batch_execute("LISTEN order_changes").await.unwrap();
    (client, rx)
}

async fn heard_within(rx: &mut UnboundedReceiver<Uuid>, wait: Duration) -> Vec<Uuid> {
    let mut heard = Vec::new();
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Some(id)) = tokio::time::timeout_at(until, rx.recv()).await {
        heard.push(id);
    }
    heard
}

#[tokio::test]
async fn only_the_changes_a_stream_may_watch_are_announced() {
    let a = spawn_app_with(&QUIET).await;
    let b = spawn_app_on(a.db.clone(), &QUIET).await;
    assert_ne!(user_bucket("alice"), user_bucket("bob"));
    let (_listener, mut heard) = hints(&a).await;
    // An all-orders stream of a deployment on another database of the same
    // server (advisory locks are per database) is no reason to announce.
    let other = fresh_database().await;
    let (elsewhere, conn) = tokio_postgres::connect(&other.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    interest::take(&elsewhere, &[ALL_ORDERS]).await.unwrap();
    tokio::time::sleep(INTEREST_REFRESH + Duration::from_millis(500)).await;

    let unwatched = id_of(&a.create_order("alice").await);
    assert_eq!(
        heard_within(&mut heard, Duration::from_secs(1)).await,
        Vec::<Uuid>::new(),
        "no stream is open anywhere: {unwatched} is not announced"
    );

    let mut list = b
        .sse("/api/orders/events", &token("alice", false), None)
        .await;
    // The announcers have read b's interest, and b's catch-up check ran.
    tokio::time::sleep(CATCH_UP + Duration::from_millis(500)).await;
    let bobs = id_of(&a.create_order("bob").await);
    let alices = id_of(&a.create_order("alice").await);
    assert_eq!(
        heard_within(&mut heard, Duration::from_secs(1)).await,
        [alices],
        "alice's orders are watched, bob's ({bobs}) are not"
    );
    loop {
        let event = list.next_event(WAIT).await.expect("alice's new order");
        if event.id == Some(format!("{alices}:1")) {
            break;
        }
        assert_eq!(event.id, Some(format!("{unwatched}:1")), "only alice's");
    }
}

#[tokio::test]
async fn a_change_made_before_the_announcers_saw_the_stream_still_reaches_it() {
    let a = spawn_app_with(&QUIET).await;
    let b = spawn_app_on(a.db.clone(), &QUIET).await;
    let id = id_of(&a.create_order("alice").await);
    // a's announcer has read that nothing is watched.
    tokio::time::sleep(INTEREST_REFRESH + Duration::from_millis(500)).await;
    let mut stream = watch(&b, id).await;

    // At once: a's announcer reads b's new interest up to a second later,
    // so this change gets no hint; b's check after taking it finds it.
    cancel(&a, id).await;

    let event = stream
        .next_event(WAIT)
        .await
        .expect("the change, found by the check after the stream opened");
    assert_order_event(&event, id, 2);
}
