//! The verdict: the topics against the database.

use order_shared::testing::TestDb;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

use crate::checker::Seen;
use crate::load::Load;

pub struct Report {
    pub ok: bool,
    pub lines: Vec<String>,
}

pub async fn verify(
    db: &TestDb,
    load: &Arc<Mutex<Load>>,
    seen: &Arc<Mutex<Seen>>,
    expected_paid: usize,
) -> anyhow::Result<Report> {
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let versions: HashMap<Uuid, i64> = client
        .query("SELECT id, version FROM orders", &[])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let double_applied: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT order_id FROM order_status_history \
             WHERE to_status = 'CONFIRMED' GROUP BY order_id HAVING count(*) > 1) d",
            &[],
        )
        .await?
        .try_get(0)?;
    let confirmed: i64 = client
        .query_one(
            "SELECT count(DISTINCT order_id) FROM order_status_history WHERE to_status = 'CONFIRMED'",
            &[],
        )
        .await?
        .try_get(0)?;
    let left: i64 = client
        .query_one("SELECT count(*) FROM outbox WHERE parked_at IS NULL", &[])
        .await?
        .try_get(0)?;

    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let mut per_order: HashMap<Uuid, Vec<(i64, i64)>> = HashMap::new();
    for (order, version, at) in seen.events.values() {
        per_order.entry(*order).or_default().push((*at, *version));
    }
    let mut lost = 0_i64;
    let mut reordered = 0;
    for (order, version) in &versions {
        let mut got = per_order.get(order).cloned().unwrap_or_default();
        let have: HashSet<i64> = got.iter().map(|(_, v)| *v).collect();
        lost += (1..=*version).filter(|v| !have.contains(v)).count() as i64;
        got.sort();
        if got.windows(2).any(|w| w[0].0 < w[1].0 && w[0].1 > w[1].1) {
            reordered += 1;
        }
    }
    let load = load.lock().unwrap_or_else(|e| e.into_inner());
    let sent_twice = load.payments.iter().filter(|p| p.2 > 1).count();
    let server_errors: usize = load
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 500 && **s != 503)
        .map(|(_, n)| n)
        .sum();
    let unavailable = load.statuses.get(&503).copied().unwrap_or(0);
    // 503s (or no answer) are expected only while PostgreSQL restarts (and
    // for the requests in flight just after it; 2 s).
    let outside_restart = load
        .unavailable_at
        .iter()
        .filter(|at| {
            !load
                .database_down
                .is_some_and(|(from, to)| **at >= from && **at <= to + Duration::from_secs(2))
        })
        .count();
    let events: usize = seen.events.len();
    let duplicates = seen.records - events;
    let ok = lost == 0
        && reordered == 0
        && double_applied == 0
        && confirmed as usize == expected_paid
        && left == 0
        && server_errors == 0
        && outside_restart == 0;
    let lines = vec![
        format!(
            "orders placed           {} ({} in the database)",
            load.orders.len(),
            versions.len()
        ),
        format!(
            "payments                {expected_paid} ({sent_twice} sent twice), confirmed {confirmed}"
        ),
        format!("cancelled by the load   {}", load.cancels.len()),
        format!(
            "events on Kafka         {events} ({} records)",
            seen.records
        ),
        format!("duplicates              {duplicates}"),
        format!("reordered orders        {reordered}"),
        format!("lost events             {lost}"),
        format!("double-applied payments {double_applied}"),
        format!("outbox left (unparked)  {left}"),
        format!(
            "API 5xx (not 503)       {server_errors}; 503 while the database was down: {unavailable}"
        ),
        format!("API 503 or no answer outside the database restart: {outside_restart}"),
        format!("API answers by status   {:?}", {
            let mut s: Vec<_> = load.statuses.iter().collect();
            s.sort();
            s
        }),
    ];
    Ok(Report { ok, lines })
}
