//! `order-relay [serve | migrate | healthcheck | outbox parked | outbox replay (--id ID | --all)
//! | dlq list | dlq replay [--topic T] [--since TIME] [--limit N] [--dry-run]
//! | snapshot [--order ID]... [--since TIME] [--status S] [--all] [--rate N] [--dry-run]]`

use anyhow::{Context, bail};
use order_relay::dlq::{DeadLetter, Selection};
use order_relay::flags::{Flags, since};
use order_relay::snapshot::SnapshotArgs;
use order_relay::{Relay, RelaySettings};
use order_shared::config::{CommonSettings, ProcessEnv};
use std::process::ExitCode;

/// mimalloc: the allocator was the largest single cost in the profile
/// (about 15 % of the API's CPU per create with glibc malloc;
/// docs/benchmarks.md). With its `override` feature (`Cargo.toml`) it also
/// serves librdkafka's allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: order-relay [serve | migrate | healthcheck | outbox parked | outbox replay (--id ID | --all)
                   | dlq list | dlq replay [--topic T] [--since RFC3339] [--limit N] [--dry-run]
                   | snapshot [--order ID]... [--since RFC3339] [--status S] [--all] [--rate N] [--dry-run]]";

fn main() -> ExitCode {
    // No transparent huge pages: mimalloc asks for them on its arenas, and
    // with librdkafka's allocations there too they took the relay's peak
    // RSS in a drain to 47-60 MB (about 30 without them), for no CPU gain
    // (docs/benchmarks.md, change 42). Not fatal where the kernel refuses.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let runtime = order_relay::config::worker_threads(&ProcessEnv)
        .map_err(anyhow::Error::from)
        .and_then(|threads| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .context("cannot start the async runtime")
        });
    let result = runtime.and_then(|rt| rt.block_on(run(std::env::args().skip(1).collect())));
    // The log lines still held go out before the error and the exit.
    order_shared::telemetry::flush_logs();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("order-relay: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> anyhow::Result<()> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["serve"] => serve().await,
        ["migrate"] => order_shared::db::migrate::command()
            .await
            .context("migration failed"),
        ["healthcheck"] => healthcheck().await,
        ["outbox", "parked"] => parked().await,
        ["outbox", "replay", "--all"] => replay(None).await,
        ["outbox", "replay", "--id", id] => {
            replay(Some(id.parse().context("--id takes an outbox row id")?)).await
        }
        ["dlq", "list"] => dlq(Selection::default(), DlqAction::List).await,
        ["dlq", "replay", flags @ ..] => {
            let (selection, dry_run) = replay_flags(flags)?;
            let action = if dry_run {
                DlqAction::DryRun
            } else {
                DlqAction::Replay
            };
            dlq(selection, action).await
        }
        ["snapshot", flags @ ..] => snapshot(SnapshotArgs::parse(flags)?).await,
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown command {:?}\n{USAGE}", words.join(" ")),
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = RelaySettings::from_env(&ProcessEnv)?;
    order_shared::telemetry::init_tracing(settings.common.log_format);
    order_shared::telemetry::prometheus()?;
    let shutdown = order_shared::shutdown::on_signal();
    let relay = Relay::build(settings, shutdown).await?;
    relay.run().await.context("relay failed")
}

/// Exit 0 when the local relay is live (container health checks; readiness
/// also needs the broker, which must not get a relay restarted).
async fn healthcheck() -> anyhow::Result<()> {
    let port = order_shared::config::parse_or(&ProcessEnv, "RELAY_PORT", 3004_u16)?;
    let live =
        order_shared::probe::http_ok(port, "/health/live", std::time::Duration::from_secs(3));
    if live.await {
        Ok(())
    } else {
        bail!("http://127.0.0.1:{port}/health/live does not answer")
    }
}

async fn client() -> anyhow::Result<deadpool_postgres::Client> {
    let common = CommonSettings::from_env(&ProcessEnv)?;
    let pool = order_shared::db::build_pool(&common.db)?;
    pool.get().await.context("DATABASE_URL: cannot connect")
}

async fn snapshot(args: SnapshotArgs) -> anyhow::Result<()> {
    let common = CommonSettings::from_env(&ProcessEnv)?;
    let pool = order_shared::db::build_pool(&common.db)?;
    // The shard count places the rows; it must be the installed one.
    order_shared::db::pinned::verify_at_start(&pool, common.outbox_shards).await?;
    let summary = order_relay::snapshot::run(
        &pool,
        &args,
        common.outbox_shards,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await?;
    if summary.selected == 0 {
        eprintln!("No order matches.");
    }
    Ok(())
}

async fn parked() -> anyhow::Result<()> {
    let rows = order_shared::db::outbox::parked_rows(&client().await?).await?;
    if rows.is_empty() {
        println!("No parked outbox rows.");
        return Ok(());
    }
    println!("id\tevent_type\torder_id\tversion\tattempts\tparked_at\tlast_error");
    for r in rows {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.id,
            r.event_type,
            r.order_id,
            r.version,
            r.attempts,
            r.parked_at.to_rfc3339(),
            r.last_error.unwrap_or_default().replace(['\n', '\t'], " ")
        );
    }
    Ok(())
}

async fn replay(id: Option<i64>) -> anyhow::Result<()> {
    let n = order_shared::db::outbox::replay_parked(&client().await?, id).await?;
    if n == 0 && id.is_some() {
        bail!("no parked outbox row with that id");
    }
    println!("Re-queued {n} parked row(s).");
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DlqAction {
    List,
    DryRun,
    Replay,
}

fn replay_flags(flags: &[&str]) -> anyhow::Result<(Selection, bool)> {
    let mut selection = Selection::default();
    let mut dry_run = false;
    let mut flags = Flags::new(flags);
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--topic" => selection.topic = Some(flags.value(flag)?.to_owned()),
            "--since" => selection.since = Some(since(flags.value(flag)?)?),
            "--limit" => {
                selection.limit = Some(
                    flags
                        .value(flag)?
                        .parse()
                        .context("--limit takes a positive number")?,
                )
            }
            "--dry-run" => dry_run = true,
            other => bail!("unknown flag {other:?}\n{USAGE}"),
        }
    }
    Ok((selection, dry_run))
}

fn print_dead_letters(records: &[&DeadLetter]) {
    println!("partition\toffset\ttime\ttopic\treason\tkey");
    for r in records {
        let time = r
            .timestamp
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        let key = r
            .key
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            r.partition,
            r.offset,
            time,
            r.original_topic().unwrap_or("?"),
            r.reason().replace(['\n', '\t'], " "),
            key
        );
    }
}

async fn dlq(selection: Selection, action: DlqAction) -> anyhow::Result<()> {
    let settings = RelaySettings::from_env(&ProcessEnv)?;
    let kafka = settings.kafka.clone();
    let dlq_topic = kafka.topic(&settings.consumer.dlq_topic);
    let (reading, topic) = (kafka.clone(), dlq_topic.clone());
    let records = tokio::task::spawn_blocking(move || {
        order_relay::dlq::read_all(&reading, &topic, std::time::Duration::from_secs(2))
    })
    .await?
    .with_context(|| format!("KAFKA_BROKERS: cannot read {dlq_topic}"))?;
    let picked = selection.apply(&records, &kafka.topic_prefix);
    match action {
        DlqAction::List => {
            print_dead_letters(&picked);
            eprintln!("{} dead-lettered record(s) in {dlq_topic}.", picked.len());
        }
        DlqAction::DryRun => {
            print_dead_letters(&picked);
            eprintln!("Dry run: would replay {} record(s).", picked.len());
        }
        DlqAction::Replay => {
            let n = order_relay::dlq::replay(&kafka, &dlq_topic, &picked).await?;
            println!("Replayed {n} record(s) from {dlq_topic}.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_flags_are_parsed_and_bad_ones_named() {
        let (selection, dry_run) = replay_flags(&[
            "--topic",
            "payment.failed",
            "--since",
            "2026-11-26T10:00:00Z",
            "--limit",
            "5",
            "--dry-run",
        ])
        .unwrap();
        assert!(dry_run);
        assert_eq!(selection.topic.as_deref(), Some("payment.failed"));
        assert_eq!(selection.limit, Some(5));
        assert_eq!(
            selection.since.unwrap().to_rfc3339(),
            "2026-11-26T10:00:00+00:00"
        );
        for (flags, expected) in [
            (
                &["--since", "yesterday"][..],
                "--since takes an RFC 3339 time",
            ),
            (&["--limit", "-1"][..], "--limit takes a positive number"),
            (&["--topic"][..], "--topic takes a value"),
            (&["--all"][..], "unknown flag \"--all\""),
        ] {
            let err = format!("{:#}", replay_flags(flags).unwrap_err());
            assert!(err.contains(expected), "{err}");
        }
    }

    /// The C code's allocations (librdkafka's, glibc's own) go to mimalloc
    /// as well: in glibc malloc they were about a fifth of the relay's CPU
    /// in a drain (docs/benchmarks.md, change 42).
    #[test]
    #[allow(unsafe_code)]
    fn c_allocations_use_mimalloc() {
        use std::ffi::c_void;
        unsafe extern "C" {
            fn malloc(size: usize) -> *mut c_void;
            fn free(ptr: *mut c_void);
            fn mi_is_in_heap_region(ptr: *const c_void) -> bool;
        }
        // SAFETY: 64 bytes from malloc, looked at, then given back to free.
        let mimalloc_owns = unsafe {
            let ptr = malloc(64);
            assert!(!ptr.is_null());
            let owns = mi_is_in_heap_region(ptr);
            free(ptr);
            owns
        };
        assert!(
            mimalloc_owns,
            "malloc is glibc's: mimalloc's `override` feature is off"
        );
    }
}
