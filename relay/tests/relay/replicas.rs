//! Several relays at once: every event arrives, in version order per order;
//! a relay killed mid-batch loses nothing and the survivor takes over.

use crate::helpers::*;
use order_shared::testing::fresh_database;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test]
async fn three_replicas_publish_5000_events_in_order_per_order() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    fill_outbox(&db, 200, 25, 8).await;
    let env = relay_env(&db, &prefix, &brokers(), &[("OUTBOX_BATCH_SIZE", "100")]);
    let relays = vec![
        spawn_relay(env.clone()).await,
        spawn_relay(env.clone()).await,
        spawn_relay(env).await,
    ];
    assert_each_once_in_order(&prefix, 200, 25).await;
    assert_eq!(outbox_count(&db).await, 0);

    // The 8 shards are spread over the three relays, and over the two left
    // when one stops.
    eventually("leases spread 3/3/2", Duration::from_secs(10), || async {
        lease_counts(&db).await == vec![2, 3, 3]
    })
    .await;
    let mut relays = relays;
    relays.pop().unwrap().stop().await;
    eventually(
        "leases spread 4/4 after a relay left",
        Duration::from_secs(10),
        || async { lease_counts(&db).await == vec![4, 4] },
    )
    .await;
    for relay in relays {
        relay.stop().await;
    }
}

#[tokio::test]
async fn a_killed_relay_loses_nothing_and_the_survivor_takes_over() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    fill_outbox(&db, 200, 100, 8).await;
    let env = relay_env(
        &db,
        &prefix,
        &brokers(),
        &[("OUTBOX_BATCH_SIZE", "10"), ("RELAY_PORT", "0")],
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-relay"))
        .arg("serve")
        .envs(&env)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start order-relay");
    eventually(
        "the first relay publishes",
        Duration::from_secs(60),
        || async { outbox_count(&db).await < 19_900 },
    )
    .await;
    // main() turns transparent huge pages off for the relay (change 42).
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id().unwrap()))
        .expect("the relay's /proc status");
    assert!(
        status.contains("THP_enabled:\t0"),
        "transparent huge pages still on for the relay"
    );
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    let left = outbox_count(&db).await;
    assert!(left > 0, "killed before the end");

    let survivor = spawn_relay(env).await;
    let consumer = consumer(&brokers(), &topics(&prefix, &["order.placed"]));
    let records = read_records(
        &consumer,
        20_000,
        Duration::from_secs(3),
        Duration::from_secs(120),
    )
    .await;

    let mut seen = HashSet::new();
    for r in &records {
        seen.insert((r.key.clone(), r.value["version"].as_i64().unwrap()));
    }
    assert_eq!(seen.len(), 20_000, "no event lost");
    let duplicates = records.len() - seen.len();
    assert!(
        duplicates <= 8 * 10,
        "duplicates only from in-flight batches: {duplicates}"
    );
    for (order, versions) in versions_by_order(&records) {
        let mut firsts = Vec::new();
        for v in versions {
            if !firsts.contains(&v) {
                firsts.push(v);
            }
        }
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "order {order}: {firsts:?}"
        );
    }
    assert_eq!(outbox_count(&db).await, 0);
    survivor.stop().await;
}

#[tokio::test]
async fn sigterm_releases_the_leases_and_exits_cleanly() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    let env = relay_env(&db, &prefix, &brokers(), &[]);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-relay"))
        .arg("serve")
        .envs(&env)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start order-relay");
    eventually("all 8 shards leased", Duration::from_secs(30), || async {
        lease_counts(&db).await == vec![8]
    })
    .await;

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();

    assert!(status.success(), "{status:?}");
    assert!(lease_counts(&db).await.is_empty(), "leases released");
}

#[tokio::test]
async fn a_small_row_budget_still_drains_every_order_in_order() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    fill_outbox(&db, 50, 10, 8).await;
    // 16 rows in flight for the relay's 8 shards: batches of 2, so every
    // shard goes through many claims, full batches and exclusions.
    let env = relay_env(
        &db,
        &prefix,
        &brokers(),
        &[("OUTBOX_MAX_ROWS_IN_FLIGHT", "16")],
    );
    let relay = spawn_relay(env).await;

    assert_each_once_in_order(&prefix, 50, 10).await;
    assert_eq!(outbox_count(&db).await, 0);
    let metrics = metrics_text(relay.port).await;
    assert!(
        metrics.lines().any(|l| l == "relay_shard_rows_cap 2"),
        "16 rows split among 8 shards:\n{metrics}"
    );
    relay.stop().await;
}

/// A relay short of its fair share because another relay holds the rest
/// (8 shards among 3 relays: one of them has 2) logs its leases when they
/// change, not at every rebalance (once a second by default).
#[tokio::test]
async fn a_relay_short_of_its_share_logs_its_leases_only_when_they_change() {
    let db = fresh_database().await;
    let prefix = unique_prefix();
    // Another relay holds 5 of the 8 shards: this one's fair share is 4,
    // and only 3 are free.
    let (other, _events) = lease_session(&db).await;
    for shard in 0..5 {
        assert!(other.try_lease(shard).await.unwrap());
    }
    let env = relay_env(&db, &prefix, &brokers(), &[]);
    let (mut child, path) = crate::logged::spawn_logged_relay(&env);
    let balanced = || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Shard leases balanced."))
            .map(|l| l.to_owned())
            .collect::<Vec<_>>()
    };
    eventually(
        "the 3 free shards leased",
        Duration::from_secs(30),
        || async { lease_counts(&db).await == vec![3, 5] },
    )
    .await;
    // Ten rebalances (every 200 ms) that change nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = balanced();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(r#""owned":3"#), "{}", lines[0]);

    // The other relay goes: this one takes the rest, and says so once more.
    drop(other);
    eventually("all 8 shards leased", Duration::from_secs(30), || async {
        lease_counts(&db).await == vec![8]
    })
    .await;
    eventually(
        "the line of the last change",
        Duration::from_secs(5),
        || {
            let logged = balanced()
                .last()
                .is_some_and(|l| l.contains(r#""owned":8"#));
            async move { logged }
        },
    )
    .await;
    // Usually one more line; two if a rebalance saw the other relay as a
    // member but its shards already free (a shard, then the rest).
    let lines = balanced();
    assert!((2..=3).contains(&lines.len()), "{lines:#?}");
    assert!(
        lines[lines.len() - 1].contains(r#""owned":8"#),
        "{lines:#?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(balanced().len(), lines.len(), "nothing changed since");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let _ = std::fs::remove_file(&path);
}
