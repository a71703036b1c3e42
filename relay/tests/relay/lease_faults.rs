//! The relay's leases under faults: a relay cut off from PostgreSQL without
//! a word (a proxy that stops forwarding but keeps the sockets open) stops
//! working its shards before the server frees them, and the other relay owns
//! every shard within 15 s; a relay that cannot reach the broker gives its
//! shards back and takes them again once it can; a SIGTERM'd relay stops
//! within one overall deadline; a mismatched OUTBOX_SHARDS refuses to start.

use crate::helpers::*;
use crate::inbound::{RelayProcess, free_port, wait_not_ready_naming};
use order_shared::testing::{TcpProxy, TestDb, fresh_database, host_port};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

async fn wait_leases(db: &TestDb, expected: &[i64], within: Duration) -> Duration {
    let start = Instant::now();
    eventually(&format!("leases {expected:?}"), within, || async {
        lease_counts(db).await == expected
    })
    .await;
    start.elapsed()
}

fn publisher_env(
    db_url: &str,
    db: &TestDb,
    prefix: &str,
    brokers: &str,
) -> HashMap<String, String> {
    let mut env = relay_env(db, prefix, brokers, &[("CONSUMER_ENABLED", "false")]);
    env.insert("DATABASE_URL".into(), db_url.into());
    env.insert(
        "RELAY_INSTANCE_ID".into(),
        format!("relay-{}", uuid::Uuid::new_v4().simple()),
    );
    env
}

/// Keeps inserting one event for each of 4 new orders every 50 ms until
/// dropped; returns how many it wrote.
fn steady_writer(
    db: &TestDb,
) -> (
    tokio::task::JoinHandle<i32>,
    tokio_util::sync::CancellationToken,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let (db, until) = (db.clone(), stop.clone());
    let handle = tokio::spawn(async move {
        let mut written = 0;
        while !until.is_cancelled() {
            fill_outbox(&db, 4, 1, 8).await;
            written += 4;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        written
    });
    (handle, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_cut_relay_stops_before_the_other_owns_its_shards_within_15_s() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let proxy = TcpProxy::start(host_port(&db.url)).await;
    let cut_env = publisher_env(&proxy.url_for(&db.url), &db, &prefix, &brokers());
    let healthy_env = publisher_env(&db.url, &db, &prefix, &brokers());
    let (cut_port, healthy_port) = (free_port(), free_port());
    let cut = RelayProcess::start(&cut_env, cut_port).await;
    wait_leases(&db, &[8], Duration::from_secs(30)).await;
    let healthy = RelayProcess::start(&healthy_env, healthy_port).await;
    wait_leases(&db, &[4, 4], Duration::from_secs(30)).await;
    let (writer, stop_writing) = steady_writer(&db);
    tokio::time::sleep(Duration::from_secs(1)).await;

    proxy.stall().await;
    let took_over = wait_leases(&db, &[8], Duration::from_secs(30)).await;
    let sent_at_takeover = total(&metrics_text(cut_port).await, "outbox_sent_total");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent_later = total(&metrics_text(cut_port).await, "outbox_sent_total");
    stop_writing.cancel();
    let written = writer.await.unwrap() as usize;
    eventually("outbox drained", Duration::from_secs(30), || async {
        outbox_count(&db).await == 0
    })
    .await;

    assert!(
        took_over <= Duration::from_secs(15),
        "the healthy relay owned every shard {took_over:?} after the cut"
    );
    assert!(sent_at_takeover > 0.0, "the cut relay had published before");
    assert_eq!(
        sent_later, sent_at_takeover,
        "the cut relay sent nothing after the takeover"
    );
    let consumer = consumer(&brokers(), &topics(&prefix, &["order.placed"]));
    let records = read_records(
        &consumer,
        written,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    let distinct: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(distinct.len(), written, "no event lost");
    healthy.terminate().await;
    cut.kill().await;
}

async fn ready_status(port: u16) -> u16 {
    reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_publish_gives_its_shards_back_and_takes_them_again() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    // The stalling relay's broker sits behind a proxy that the test cuts;
    // the healthy relay publishes to the shared broker.
    let proxy_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let advertised = proxy_listener.local_addr().unwrap().port();
    drop(proxy_listener);
    let tansu_port = free_port();
    let _tansu = start_tansu(tansu_port, advertised).await;
    let proxy = TcpProxy::start_on(advertised, format!("127.0.0.1:{tansu_port}")).await;
    let mut failing_env = publisher_env(&db.url, &db, &prefix, &format!("127.0.0.1:{advertised}"));
    failing_env.insert("OUTBOX_PUBLISH_STALL_SECS".into(), "3".into());
    failing_env.insert("KAFKA_MESSAGE_TIMEOUT_MS".into(), "2000".into());
    let failing_port = free_port();
    let failing = RelayProcess::start(&failing_env, failing_port).await;
    wait_leases(&db, &[8], Duration::from_secs(30)).await;
    eventually("ready", Duration::from_secs(30), || async {
        ready_status(failing_port).await == 200
    })
    .await;

    proxy.cut().await;
    fill_outbox(&db, 40, 2, 8).await;
    let healthy_port = free_port();
    let healthy = RelayProcess::start(
        &publisher_env(&db.url, &db, &prefix, &brokers()),
        healthy_port,
    )
    .await;

    let took_over = wait_leases(&db, &[8], Duration::from_secs(30)).await;
    wait_not_ready_naming(failing_port, "stalled").await;
    eventually(
        "the healthy relay drained the outbox",
        Duration::from_secs(30),
        || async { outbox_count(&db).await == 0 },
    )
    .await;
    let consumer = consumer(&brokers(), &topics(&prefix, &["order.placed"]));
    let records = read_records(
        &consumer,
        80,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    let distinct: HashSet<(String, i64)> = records
        .iter()
        .map(|r| (r.key.clone(), r.value["version"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        distinct.len(),
        80,
        "every event on the healthy relay's broker"
    );

    proxy.restore().await;
    wait_leases(&db, &[4, 4], Duration::from_secs(30)).await;
    eventually("ready again", Duration::from_secs(30), || async {
        ready_status(failing_port).await == 200
    })
    .await;
    assert!(
        took_over <= Duration::from_secs(20),
        "the healthy relay owned every shard {took_over:?} after it started"
    );
    healthy.terminate().await;
    failing.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_batches_stuck_on_the_broker_exits_within_one_deadline() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    // Nothing listens there: every send waits for its 30 s message timeout.
    let mut env = publisher_env(&db.url, &db, &prefix, &format!("127.0.0.1:{}", free_port()));
    env.insert("KAFKA_CREATE_TOPICS".into(), "false".into());
    env.insert("KAFKA_MESSAGE_TIMEOUT_MS".into(), "30000".into());
    env.insert("SHUTDOWN_TIMEOUT_SECS".into(), "3".into());
    fill_outbox(&db, 20, 1, 8).await;
    let port = free_port();
    let mut relay = RelayProcess::start(&env, port).await;
    wait_leases(&db, &[8], Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let pid = relay.child.id().unwrap().to_string();
    let started = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), relay.child.wait())
        .await
        .expect("exits")
        .unwrap();
    let took = started.elapsed();

    assert!(
        took <= Duration::from_secs(5),
        "SHUTDOWN_TIMEOUT_SECS=3 is one deadline, not one per stage: {took:?}"
    );
    assert!(status.success(), "{status:?}");
    assert_eq!(
        outbox_count(&db).await,
        20,
        "nothing deleted without an ack"
    );
}

#[tokio::test]
async fn a_different_outbox_shards_than_the_pinned_one_refuses_to_start() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let run = |args: &'static [&'static str], shards: &'static str| {
        let env = relay_env(&db, &prefix, &brokers(), &[("OUTBOX_SHARDS", shards)]);
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_order-relay"))
                .args(args)
                .envs(&env)
                .output()
                .await
                .unwrap()
        }
    };
    let pinned = run(&["migrate"], "8").await;
    assert!(pinned.status.success(), "{pinned:?}");

    let migrate = run(&["migrate"], "16").await;
    let serve = tokio::time::timeout(Duration::from_secs(30), run(&["serve"], "16"))
        .await
        .expect("refuses at once");

    for out in [migrate, serve] {
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("OUTBOX_SHARDS is 16 but this database was installed with 8"),
            "{stderr}"
        );
    }
}

/// Processes started at once on a database migrated without a pinned
/// shard count all pin it: the one whose insert lost the race reads the
/// winner's value instead of failing its start (the chaos run's relays
/// exited with "query returned an unexpected number of rows").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_starting_together_on_a_fresh_database_all_pin_the_shard_count() {
    for _ in 0..3 {
        let db = fresh_database().await;
        let mut settings = db.settings();
        settings.pool_size = 12;
        let pool = order_shared::db::build_pool(&settings).unwrap();
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(12));
        let mut starts = Vec::new();
        for _ in 0..12 {
            let (pool, start) = (pool.clone(), start.clone());
            starts.push(tokio::spawn(async move {
                let client = pool.get().await.unwrap();
                start.wait().await;
                order_shared::db::pinned::check_outbox_shards(&client, 8).await
            }));
        }
        for started in starts {
            let checked = started.await.unwrap();
            assert!(checked.is_ok(), "{checked:?}");
        }
    }
}
