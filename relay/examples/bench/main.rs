//! Benchmark helpers for `./scripts/bench.sh` and `./scripts/bench-relay.sh` (not a test).
//!
//! `bench producer --brokers B --topic T --count N`
//!     a raw rdkafka producer (same settings and record shape as the relay):
//!     the broker-side limit.
//! `bench ping --brokers B --topic T --count N`
//!     sends one record at a time: the broker's acknowledgement latency.
//! `bench latency --api URL --token JWT --relay-metrics URL [--pg URL] --rate R --secs S`
//!     the same load; p50/p99 of the relay's own commit -> ack histogram,
//!     of its share (commit -> send call) and of its claim statement; with
//!     `--pg`, a raw `SELECT 1` round trip every 2 ms in the same run.
//! `bench http --api URL --token JWT --rate R --secs S`
//!     R creates/s for S seconds: the HTTP create p50/p99 alone (of the API,
//!     or of the floor of the required stack).
//! `bench steady --brokers B --topic T --rate R --secs S`
//!     a raw producer at R records/s: each record's ack latency (beside the
//!     `latency` load, in the same run).
//! `bench inbound-floor --brokers B --topic T --pg URL --count N`
//!     the floor of the required stack for figure 5: a bare consumer and
//!     six tokio-postgres workers running pgbench's inbound transaction.
//! `bench publish-floor --brokers B --pg URL --prefix P [--poll-ms 10]`
//!     the floor of the required stack for figure 3's CPU per event: a
//!     bare claim, send and delete loop over the outbox, until stopped.
//! `bench share-floor --pg URL [--poll-ms 10] --secs S`
//!     the floor of figure 4's relay share: claims (and deletes) the
//!     outbox on one connection, `--poll-ms` after each claim ended (0: back
//!     to back), for S seconds; p50/p99 of created_at -> claim returned.
//!     Run it instead of the relay, beside `bench http`'s load.
//! `bench wait --pg URL --sql Q --target N [--interval-ms 20] [--timeout-secs 120]`
//!     runs Q (one bigint) on one connection until it returns N.
//! `bench inbound --brokers B --topic T --count N --prefix P`
//!     N `payment.authorized` events for the orders `P` + 12 hex digits of
//!     1..=N (the orders `scripts/bench.sh` inserts).
//! `bench latency --api URL --token JWT --brokers B --topic T --rate R --secs S`
//!     places R orders/s through the API for S seconds and measures, per
//!     order, the time from the API's 201 (after commit) to the record's
//!     arrival at a consumer: commit -> ack plus the consumer's fetch.

mod broker;
mod common;
mod floor;
mod load;
mod pg;
mod publish;
mod share;

use broker::{inbound, ping, producer, steady};
use common::arg;
use load::{ack_latency, http_latency, latency};
use std::time::Duration;

/// The relay's allocator, which with its `override` feature also serves
/// librdkafka: the floors (raw producer, `publish-floor`, `inbound-floor`)
/// pay for allocations what the relay pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let brokers = arg(&args, "--brokers", "127.0.0.1:9092");
    let topic = arg(&args, "--topic", "bench.raw");
    match args.first().map(String::as_str) {
        Some("producer") => {
            producer(&brokers, &topic, arg(&args, "--count", "200000").parse()?).await
        }
        Some("ping") => ping(&brokers, &topic, arg(&args, "--count", "200").parse()?).await,
        Some("steady") => {
            steady(
                &brokers,
                &topic,
                arg(&args, "--rate", "1000").parse()?,
                arg(&args, "--secs", "10").parse()?,
            )
            .await
        }
        Some("inbound") => {
            inbound(
                &brokers,
                &topic,
                arg(&args, "--count", "10000").parse()?,
                &arg(&args, "--prefix", "eeeeeeee-0000-7000-8000-"),
            )
            .await
        }
        Some("http") => {
            http_latency(
                &arg(&args, "--api", "http://127.0.0.1:3003"),
                &arg(&args, "--token", ""),
                arg(&args, "--rate", "1000").parse()?,
                arg(&args, "--secs", "10").parse()?,
            )
            .await;
            Ok(())
        }
        Some("inbound-floor") => {
            floor::inbound_floor(
                &brokers,
                &topic,
                &arg(&args, "--pg", ""),
                arg(&args, "--count", "10000").parse()?,
            )
            .await
        }
        Some("publish-floor") => {
            publish::publish_floor(
                &brokers,
                &arg(&args, "--pg", ""),
                &arg(&args, "--prefix", ""),
                &["order.placed"],
                Duration::from_millis(arg(&args, "--poll-ms", "10").parse()?),
            )
            .await
        }
        Some("share-floor") => {
            share::share_floor(
                &arg(&args, "--pg", ""),
                Duration::from_millis(arg(&args, "--poll-ms", "10").parse()?),
                arg(&args, "--secs", "10").parse()?,
            )
            .await
        }
        Some("wait") => {
            pg::wait_for(
                &arg(&args, "--pg", ""),
                &arg(&args, "--sql", ""),
                arg(&args, "--target", "0").parse()?,
                Duration::from_millis(arg(&args, "--interval-ms", "20").parse()?),
                Duration::from_secs(arg(&args, "--timeout-secs", "120").parse()?),
            )
            .await
        }
        Some("latency") if args.iter().any(|a| a == "--relay-metrics") => {
            ack_latency(
                &arg(&args, "--api", "http://127.0.0.1:3003"),
                &arg(&args, "--token", ""),
                &arg(&args, "--relay-metrics", ""),
                args.iter()
                    .position(|a| a == "--pg")
                    .and_then(|i| args.get(i + 1))
                    .map(String::as_str),
                arg(&args, "--rate", "1000").parse()?,
                arg(&args, "--secs", "20").parse()?,
            )
            .await
        }
        Some("latency") => {
            latency(
                &arg(&args, "--api", "http://127.0.0.1:3003"),
                &arg(&args, "--token", ""),
                &brokers,
                &topic,
                arg(&args, "--rate", "1000").parse()?,
                arg(&args, "--secs", "20").parse()?,
            )
            .await
        }
        _ => anyhow::bail!(
            "usage: bench producer|ping|steady|inbound|inbound-floor|publish-floor|share-floor|http|wait|latency [options]"
        ),
    }
}
