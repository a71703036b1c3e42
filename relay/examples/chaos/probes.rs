//! Waiting for a fault to heal: the probes and the clock.

use order_shared::testing::TestDb;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::load::Load;

pub async fn query_i64(db: &TestDb, sql: &str) -> Option<i64> {
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    client.query_one(sql, &[]).await.ok()?.try_get(0).ok()
}

/// Waits (up to `limit`) until `check` holds; returns how long it took.
pub async fn heal<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// No unparked outbox row older than two seconds.
pub async fn outbox_caught_up(db: &TestDb) -> bool {
    query_i64(
        db,
        "SELECT count(*) FROM outbox WHERE parked_at IS NULL \
         AND created_at < clock_timestamp() - interval '2 seconds'",
    )
    .await
        == Some(0)
}

pub async fn shards_owned(port: u16) -> f64 {
    let Ok(answer) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0.0;
    };
    let text = answer.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("relay_shards_owned "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

pub async fn api_answers(api: &str) -> bool {
    api_readiness(api).await.is_ok()
}

/// `/health/ready`'s answer: Ok when 200, else what came back (the status
/// and body, which names the database error, or why no answer came).
pub async fn api_readiness(api: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    match client.get(format!("{api}/health/ready")).send().await {
        Ok(answer) if answer.status() == 200 => Ok(()),
        Ok(answer) => Err(format!(
            "{}: {}",
            answer.status(),
            answer.text().await.unwrap_or_default()
        )),
        Err(err) => Err(format!("no answer: {err}")),
    }
}

pub fn restart_postgres() {
    let cluster = std::env::var("PG_CLUSTER").unwrap_or_else(|_| "main".into());
    let version = std::env::var("PG_VERSION").unwrap_or_else(|_| "15".into());
    let status = std::process::Command::new("pg_ctlcluster")
        .args([version.as_str(), cluster.as_str(), "restart", "-m", "fast"])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("chaos: pg_ctlcluster {version} {cluster} restart failed");
    }
}

/// Restarts PostgreSQL in the first round and records how long the API and
/// the outbox took to recover.
pub async fn restart_postgres_once(
    heals: &mut Vec<(String, Option<Duration>)>,
    load: &Arc<Mutex<Load>>,
    api: &str,
    db: &TestDb,
    round: usize,
) {
    if round != 1 {
        return;
    }
    let down = Instant::now();
    restart_postgres();
    let healed = heal(Duration::from_secs(90), || api_answers(api)).await;
    load.lock().unwrap_or_else(|e| e.into_inner()).database_down = Some((down, Instant::now()));
    heals.push(("PostgreSQL restarted (API ready again)".into(), healed));
    let healed = heal(Duration::from_secs(90), || outbox_caught_up(db)).await;
    heals.push(("PostgreSQL restarted (outbox caught up)".into(), healed));
}
