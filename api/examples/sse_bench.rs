//! Live-update (SSE) benchmark client, run by `./scripts/bench-sse.sh`
//! against two API replicas and a relay on one database:
//! 1. create throughput through replica A (closed loop, `--workers`
//!    connections) with no stream open, then with `--streams` per-order
//!    streams open on replica B, interleaved `--pairs` times (A B A B ...),
//!    each phase after the relay drained the outbox;
//! 2. replica B's RSS before and after opening the streams;
//! 3. change -> SSE message latency while orders are created at `--rate`
//!    per second: cancels of watched orders at `--changes` per second,
//!    alternately through B (the replica's own fan-out) and A (the relay's
//!    hint, another replica).
//!
//! Usage: sse_bench --db URL --a URL --b URL --secret S --pid-b PID
//!                  [--streams 1000] [--rate 500] [--changes 20] [--secs 20] [--workers 16] [--pairs 3]

use order_shared::testing::sse::SseStream;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

struct Args {
    db: String,
    a: String,
    b: String,
    secret: String,
    pid_b: u32,
    streams: usize,
    rate: u64,
    changes: u64,
    secs: u64,
    workers: usize,
    pairs: usize,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let num = |name: &str, default: u64| get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    Args {
        db: get("--db").expect("--db URL"),
        a: get("--a").expect("--a URL"),
        b: get("--b").expect("--b URL"),
        secret: get("--secret").expect("--secret"),
        pid_b: num("--pid-b", 0) as u32,
        streams: num("--streams", 1000) as usize,
        rate: num("--rate", 500),
        changes: num("--changes", 20),
        secs: num("--secs", 20),
        workers: num("--workers", 16) as usize,
        pairs: num("--pairs", 3) as usize,
    }
}

const USERS: usize = 250;

fn user(i: usize) -> String {
    format!("bench-{}", i % USERS)
}

fn body() -> Value {
    json!({
        "currency": "USD",
        "items": [{"productId": "sku-1", "quantity": 2, "unitPrice": 1999},
                  {"productId": "sku-2", "quantity": 1, "unitPrice": 500}],
        "shippingAddress": {"name": "Ada", "line1": "1 Main St", "city": "London",
                            "postalCode": "N1 9GU", "country": "GB"}
    })
}

struct Bench {
    args: Args,
    http: reqwest::Client,
    tokens: Vec<String>,
}

impl Bench {
    async fn create(&self, base: &str, i: usize) -> Option<String> {
        let resp = self
            .http
            .post(format!("{base}/api/orders"))
            .bearer_auth(&self.tokens[i % USERS])
            .json(&body())
            .send()
            .await
            .ok()?;
        if resp.status() != 201 {
            return None;
        }
        let order: Value = resp.json().await.ok()?;
        order["id"].as_str().map(str::to_owned)
    }

    /// Waits until the relay has published every outbox row, so that no
    /// phase pays for the backlog of the one before.
    async fn settle(&self) {
        let (client, conn) = tokio_postgres::connect(&self.args.db, tokio_postgres::NoTls)
            .await
            .expect("--db: connect");
        let conn = tokio::spawn(conn);
        loop {
            let row = client
                .query_one("SELECT count(*) FROM outbox", &[])
                .await
                .expect("count");
            if row.get::<_, i64>(0) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        conn.abort();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    /// Orders created per second by `workers` closed-loop clients.
    async fn throughput(self: &Arc<Self>, secs: u64) -> f64 {
        self.settle().await;
        let done = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..self.args.workers)
            .map(|w| {
                let (bench, done) = (self.clone(), done.clone());
                tokio::spawn(async move {
                    let mut i = w;
                    while Instant::now() < until {
                        if bench.create(&bench.args.a, i).await.is_some() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        i += bench.args.workers;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        done.load(Ordering::Relaxed) as f64 / secs as f64
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// Opens a stream per order on replica B; each records when its order's
/// version 2 arrives. Returns once every stream got the initial state.
async fn open_streams(
    bench: &Arc<Bench>,
    orders: &[String],
    arrivals: &Arrivals,
) -> Vec<tokio::task::JoinHandle<()>> {
    let addr = bench.args.b.trim_start_matches("http://").to_owned();
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = Vec::new();
    for (i, id) in orders.iter().enumerate() {
        let auth = format!("Bearer {}", bench.tokens[i % USERS]);
        let (addr, id, arrivals, ready) =
            (addr.clone(), id.clone(), arrivals.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!("/api/orders/{id}/events");
            let Ok(mut stream) =
                SseStream::connect(&addr, &path, &[("Authorization", &auth)]).await
            else {
                ready.add_permits(1);
                return;
            };
            let _first = stream.next_event(Duration::from_secs(30)).await;
            ready.add_permits(1);
            while let Some(event) = stream.next_event(Duration::from_secs(3600)).await {
                if event.id.as_deref().is_some_and(|e| e.ends_with(":2")) {
                    arrivals.lock().await.insert(id.clone(), Instant::now());
                }
            }
        }));
    }
    let _ = ready.acquire_many(orders.len() as u32).await;
    tasks
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Change -> message latency while orders are created at `rate`: cancels
/// of watched orders at `changes` per second, alternately through B and A.
/// Returns (same-replica ms, other-replica ms, changes without a message,
/// orders created).
async fn latency(
    bench: &Arc<Bench>,
    watched: &[String],
    arrivals: &Arrivals,
) -> (Vec<f64>, Vec<f64>, usize, u64) {
    let until = Instant::now() + Duration::from_secs(bench.args.secs);
    let load = {
        let bench = bench.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(1.0 / bench.args.rate as f64));
            let mut i = 0;
            while Instant::now() < until {
                tick.tick().await;
                let b = bench.clone();
                tokio::spawn(async move { b.create(&b.args.a, i as usize).await });
                i += 1;
            }
            i
        })
    };
    let mut sent: Vec<(String, Instant, bool)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / bench.args.changes as f64));
    for (i, id) in watched.iter().enumerate() {
        if Instant::now() >= until {
            break;
        }
        tick.tick().await;
        let via_b = i % 2 == 0;
        let base = if via_b { &bench.args.b } else { &bench.args.a };
        let at = Instant::now();
        let resp = bench
            .http
            .patch(format!("{base}/api/orders/{id}/cancel"))
            .bearer_auth(&bench.tokens[i % USERS])
            .send()
            .await;
        if resp.is_ok_and(|r| r.status() == 200) {
            sent.push((id.clone(), at, via_b));
        }
    }
    let created = load.await.unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = arrivals.lock().await.clone();
    let (mut same, mut other, mut lost) = (Vec::new(), Vec::new(), 0);
    for (id, at, via_b) in &sent {
        match got.get(id) {
            Some(t) => {
                let ms = t.duration_since(*at).as_secs_f64() * 1e3;
                if *via_b {
                    same.push(ms)
                } else {
                    other.push(ms)
                }
            }
            None => lost += 1,
        }
    }
    same.sort_by(f64::total_cmp);
    other.sort_by(f64::total_cmp);
    (same, other, lost, created)
}

#[tokio::main]
async fn main() {
    let args = args();
    let tokens = (0..USERS)
        .map(|i| {
            order_api::auth::mint_hs256(&args.secret, &user(i), false, 7200, None, None)
                .expect("token")
        })
        .collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let bench = Arc::new(Bench { args, http, tokens });
    let n = bench.args.streams;

    // Orders to watch, created before any measurement.
    let mut watched = Vec::with_capacity(n);
    for i in 0..n {
        if let Some(id) = bench.create(&bench.args.a, i).await {
            watched.push(id);
        }
    }
    let secs = (bench.args.secs / 2).max(5);
    let mut without = Vec::new();
    let mut with = Vec::new();
    let (mut rss_before, mut rss_after) = (0, 0);
    let (mut same, mut other, mut lost, mut created) = (Vec::new(), Vec::new(), 0, 0);
    for pair in 0..bench.args.pairs {
        without.push(bench.throughput(secs).await);
        let arrivals: Arrivals = Arc::new(Mutex::new(HashMap::new()));
        if pair == 0 {
            rss_before = rss_kib(bench.args.pid_b);
        }
        let streams = open_streams(&bench, &watched, &arrivals).await;
        if pair == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss_after = rss_kib(bench.args.pid_b);
        }
        with.push(bench.throughput(secs).await);
        if pair == 0 {
            (same, other, lost, created) = latency(&bench, &watched, &arrivals).await;
        }
        for s in &streams {
            s.abort();
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let per_stream = (rss_after.saturating_sub(rss_before)) as f64 / n as f64;
    println!(
        "streams open: {n} (per-order, on replica B); load: {} creates/s for {} s ({created} sent), {} cancels/s",
        bench.args.rate, bench.args.secs, bench.args.changes
    );
    println!(
        "create throughput, closed loop, {} connections, {secs} s each, (A B) x {}:",
        bench.args.workers, bench.args.pairs
    );
    println!(
        "  without streams: {} orders/s; with {n} streams: {} orders/s",
        show(&without),
        show(&with)
    );
    println!(
        "  ratio of means with/without: {:.3} (target >= 0.97)",
        mean(&with) / mean(&without)
    );
    println!(
        "change -> SSE message latency (ms), same replica (B's own fan-out), {} changes: p50 {:.1}  p99 {:.1}  max {:.1}",
        same.len(),
        percentile(&same, 0.5),
        percentile(&same, 0.99),
        same.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "change -> SSE message latency (ms), other replica (A's announcement), {} changes: p50 {:.1}  p99 {:.1}  max {:.1}  (target p99 <= 100)",
        other.len(),
        percentile(&other, 0.5),
        percentile(&other, 0.99),
        other.last().copied().unwrap_or(f64::NAN)
    );
    println!("changes without a message: {lost}");
    println!(
        "replica B RSS: {rss_before} KiB before, {rss_after} KiB with {n} streams: {per_stream:.1} KiB per open stream"
    );
}
