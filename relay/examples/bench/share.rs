//! The floor of figure 4's relay share (commit -> send call): the least
//! any relay that polls the outbox can take to have a committed row in
//! hand. One tokio-postgres connection claims the oldest rows, `poll`
//! after the last claim ended (as the relay's coordinator waits), with the
//! rows of the claim before deleted in the same round trip. Nothing is
//! sent: a row's delay ends when the claim that read it returns. No shards,
//! leases, hand-off to workers, producer or metrics.

use crate::common::pick;
use crate::publish::outbox_client;
use std::time::{Duration, Instant};

/// The oldest rows, all of them (the relay's claim takes up to 500 a shard).
const CLAIM: &str = "FROM outbox WHERE parked_at IS NULL ORDER BY id LIMIT 4096";

/// Claims and deletes the outbox of `pg` for `secs` seconds, a claim
/// `poll` after the last one ended (none: back to back), and prints
/// the p50/p99 of created_at -> claim returned over the rows it read.
pub async fn share_floor(pg: &str, poll: Duration, secs: u64) -> anyhow::Result<()> {
    let (client, claim, delete) = outbox_client(pg, CLAIM).await?;
    let (mut delays, mut claims, mut claimed) = (Vec::new(), 0u64, Vec::<i64>::new());
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let deleted = async {
            match claimed.is_empty() {
                true => Ok(0),
                false => client.execute(&delete, &[&claimed]).await,
            }
        };
        let (deleted, rows) = tokio::join!(biased; deleted, client.query(&claim, &[]));
        deleted?;
        let now = chrono::Utc::now();
        claims += 1;
        claimed.clear();
        for row in rows? {
            let created: chrono::DateTime<chrono::Utc> = row.try_get("created_at")?;
            delays.push((now - created).as_seconds_f64().max(0.0) * 1e3);
            claimed.push(row.try_get("id")?);
        }
        if !poll.is_zero() {
            tokio::time::sleep(poll).await;
        }
    }
    delays.sort_by(f64::total_cmp);
    println!(
        "share floor at a {} ms poll: {claims} claims, {} rows; commit -> claimed p50 {:.1} ms, p99 {:.1} ms",
        poll.as_millis(),
        delays.len(),
        pick(&delays, 0.50),
        pick(&delays, 0.99)
    );
    Ok(())
}
