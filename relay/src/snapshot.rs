//! `order-relay snapshot`: writes one `order.snapshot` event per selected
//! order into the outbox, so downstream services can rebuild their view of
//! orders. The relay publishes each in order with that order's other events.
//! Re-running is safe: a snapshot restates the current version, and
//! consumers deduplicate it by `eventId`.

use crate::flags::{Flags, since};
use anyhow::{Context, bail};
use deadpool_postgres::Pool;
use order_shared::db::snapshot::{Picked, SnapshotFilter, select_page, write_snapshot};
use order_shared::domain::{OrderId, OrderStatus};
use std::io::Write;
use std::time::{Duration, Instant};

/// Usage of the command.
pub const USAGE: &str = "order-relay snapshot [--order ID]... [--since RFC3339] [--status S] [--all] [--rate N] [--dry-run]";

/// Orders read per page.
const PAGE: i64 = 500;
/// Progress is printed this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// The command line of a snapshot run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotArgs {
    /// Which orders.
    pub filter: SnapshotFilter,
    /// `--all`: the selector that means "every order" (AND-ed with the others).
    pub all: bool,
    /// `--rate`: orders per second at most.
    pub rate: Option<f64>,
    /// `--dry-run`: print the selection, write nothing.
    pub dry_run: bool,
}

impl SnapshotArgs {
    /// Parses the flags after `snapshot`; no selector is an error.
    pub fn parse(flags: &[&str]) -> anyhow::Result<Self> {
        let mut args = SnapshotArgs::default();
        let mut flags = Flags::new(flags);
        while let Some(flag) = flags.next_flag() {
            match flag {
                "--order" => {
                    let id = flags.value(flag)?;
                    let id: OrderId = id.parse().with_context(|| {
                        format!("--order takes an order id (a UUID), not {id:?}")
                    })?;
                    args.filter.orders.push(id);
                }
                "--since" => args.filter.since = Some(since(flags.value(flag)?)?),
                "--status" => {
                    let status = flags.value(flag)?;
                    let parsed: OrderStatus = status.to_ascii_uppercase().parse().with_context(|| {
                        format!("--status takes PENDING, CONFIRMED, SHIPPED, DELIVERED or CANCELLED, not {status:?}")
                    })?;
                    args.filter.status = Some(parsed);
                }
                "--rate" => {
                    let rate: f64 = flags
                        .value(flag)?
                        .parse()
                        .ok()
                        .filter(|r: &f64| r.is_finite() && *r > 0.0)
                        .context("--rate takes a positive number of orders per second")?;
                    args.rate = Some(rate);
                }
                "--all" => args.all = true,
                "--dry-run" => args.dry_run = true,
                other => bail!("unknown flag {other:?}\nusage: {USAGE}"),
            }
        }
        let f = &args.filter;
        if !args.all && f.orders.is_empty() && f.since.is_none() && f.status.is_none() {
            bail!(
                "say which orders: --order ID, --since TIME, --status S, or --all for every order\nusage: {USAGE}"
            );
        }
        Ok(args)
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Orders selected.
    pub selected: u64,
    /// Snapshot events written (0 in a dry run).
    pub written: u64,
    /// Selected orders that were gone when their turn came.
    pub gone: u64,
}

/// Runs the snapshot: pages through the selected orders by id and writes
/// each one's event in its own transaction, at most `rate` per second.
/// The selection is printed to `out` in a dry run, progress to `progress`.
pub async fn run(
    pool: &Pool,
    args: &SnapshotArgs,
    shards: u32,
    out: &mut impl Write,
    progress: &mut impl Write,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut after = None;
    let interval = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    if args.dry_run {
        writeln!(out, "order_id\tversion\tstatus\tupdated_at")?;
    }
    loop {
        let page = {
            let client = pool.get().await.context("DATABASE_URL: cannot connect")?;
            select_page(&client, &args.filter, after, PAGE).await?
        };
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for picked in &page {
            summary.selected += 1;
            if args.dry_run {
                print_picked(out, picked)?;
                continue;
            }
            if let Some(interval) = interval {
                let due = started + interval.mul_f64(summary.written as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            if write_one(pool, picked.id, shards).await? {
                summary.written += 1;
            } else {
                summary.gone += 1;
            }
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                writeln!(
                    progress,
                    "Snapshot: {} written so far (last order {}).",
                    summary.written, picked.id
                )?;
            }
        }
    }
    if args.dry_run {
        writeln!(
            progress,
            "Dry run: would write {} snapshot event(s).",
            summary.selected
        )?;
    } else {
        writeln!(
            progress,
            "Wrote {} snapshot event(s) in {:.1} s ({} order(s) gone meanwhile).",
            summary.written,
            started.elapsed().as_secs_f64(),
            summary.gone
        )?;
    }
    Ok(summary)
}

fn print_picked(out: &mut impl Write, p: &Picked) -> std::io::Result<()> {
    writeln!(
        out,
        "{}\t{}\t{}\t{}",
        p.id,
        p.version,
        p.status,
        p.updated_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// One order's snapshot in its own transaction; `false` when it is gone.
async fn write_one(pool: &Pool, id: OrderId, shards: u32) -> anyhow::Result<bool> {
    let mut client = pool.get().await.context("DATABASE_URL: cannot connect")?;
    let tx = client.transaction().await?;
    let written = write_snapshot(&tx, id, shards, true).await?;
    tx.commit().await?;
    Ok(written.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_and_ed_and_one_is_required() {
        let id = "0190a6f0-0000-7000-8000-000000000001";
        let args = SnapshotArgs::parse(&[
            "--order",
            id,
            "--order",
            id,
            "--status",
            "confirmed",
            "--since",
            "2026-11-26T10:00:00Z",
            "--rate",
            "50",
            "--dry-run",
        ])
        .unwrap();
        assert_eq!(args.filter.orders.len(), 2);
        assert_eq!(args.filter.status, Some(OrderStatus::Confirmed));
        assert!(args.filter.since.is_some());
        assert_eq!(args.rate, Some(50.0));
        assert!(args.dry_run && !args.all);
        assert!(SnapshotArgs::parse(&["--all"]).unwrap().all);
    }

    #[test]
    fn bad_flags_are_named() {
        for (flags, expected) in [
            (&[][..], "say which orders"),
            (&["--dry-run"][..], "say which orders"),
            (&["--order", "42"][..], "--order takes an order id"),
            (&["--status", "LOST"][..], "--status takes PENDING"),
            (
                &["--since", "yesterday"][..],
                "--since takes an RFC 3339 time",
            ),
            (
                &["--all", "--rate", "0"][..],
                "--rate takes a positive number",
            ),
            (
                &["--all", "--rate", "NaN"][..],
                "--rate takes a positive number",
            ),
            (&["--order"][..], "--order takes a value"),
            (&["--every"][..], "unknown flag \"--every\""),
        ] {
            let err = format!("{:#}", SnapshotArgs::parse(flags).unwrap_err());
            assert!(err.contains(expected), "{flags:?}: {err}");
        }
    }
}
