//! A raw PostgreSQL round trip beside a load: the floor under every query
//! the relay makes while the machine is that busy.

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
