//! A raw PostgreSQL round trip beside a load: the floor under every query
//! the relay makes while the machine is that busy; and a watcher that waits
//! for a count on one connection, so that watching a drain does not cost a
//! `psql` start (about 40 ms of CPU each on this machine) every poll.

use crate::common::pick;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

/// Sends `SELECT 1` (prepared) every 2 ms on its own connection until
/// `stop`; returns the sorted round trips in milliseconds.
pub async fn round_trips(url: &str, stop: CancellationToken) -> anyhow::Result<Vec<f64>> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    let select = client.prepare("SELECT 1").await?;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trips = Vec::new();
    while !stop.is_cancelled() {
        tick.tick().await;
        let sent = Instant::now();
        client.query_one(&select, &[]).await?;
        trips.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    trips.sort_by(f64::total_cmp);
    Ok(trips)
}

/// Prints the p50/p99 of `trips`.
pub fn report(trips: &[f64]) {
    println!(
        "raw PostgreSQL round trip (SELECT 1 every 2 ms, same run): {} trips; p50 {:.2} ms, p99 {:.2} ms",
        trips.len(),
        pick(trips, 0.50),
        pick(trips, 0.99)
    );
}

/// Runs `sql` (one `bigint`) every `interval` on one connection until it
/// returns `target`; fails after `timeout`.
pub async fn wait_for(
    url: &str,
    sql: &str,
    target: i64,
    interval: Duration,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    let query = client.prepare(sql).await?;
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let value: i64 = client.query_one(&query, &[]).await?.try_get(0)?;
        if value == target {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{sql} is {value}, not {target}, after {timeout:?}"
        );
    }
}
