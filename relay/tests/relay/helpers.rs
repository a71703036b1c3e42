//! Starting relays (in-process or as a process), filling the outbox, and
//! reading topics to the end (until they stay quiet: Tansu's high watermark
//! can trail, see DESIGN section 8).

use order_relay::{Relay, RelaySettings};
use order_shared::db::outbox::{OutboxSession, SessionEvent};
use order_shared::testing::TestDb;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A topic prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub fn relay_env(
    db: &TestDb,
    prefix: &str,
    brokers: &str,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db.url.clone()),
        ("KAFKA_BROKERS".into(), brokers.into()),
        ("KAFKA_TOPIC_PREFIX".into(), prefix.into()),
        ("KAFKA_CREATE_TOPICS".into(), "true".into()),
        ("KAFKA_TOPIC_PARTITIONS".into(), "3".into()),
        ("RELAY_HOST".into(), "127.0.0.1".into()),
        ("RELAY_PORT".into(), "0".into()),
        ("OUTBOX_SHARDS".into(), "8".into()),
        ("OUTBOX_REBALANCE_INTERVAL_MS".into(), "200".into()),
        ("OUTBOX_POLL_INTERVAL_MS".into(), "20".into()),
        ("KAFKA_MESSAGE_TIMEOUT_MS".into(), "5000".into()),
        ("SHUTDOWN_TIMEOUT_SECS".into(), "10".into()),
        (
            "KAFKA_CONSUMER_GROUP".into(),
            format!("group-{}", uuid::Uuid::new_v4().simple()),
        ),
        (
            "RELAY_INSTANCE_ID".into(),
            format!("relay-{}", uuid::Uuid::new_v4().simple()),
        ),
    ]);
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    env
}

pub struct RunningRelay {
    pub port: u16,
    pub shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningRelay {
    /// SIGTERM-like stop: finish batches, release leases.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), handle).await;
        }
    }
}

/// A test that fails before `stop` still stops the relay, so its consumer
/// thread ends and the test's runtime can shut down.
impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a relay in-process as a new group member (its own `RELAY_INSTANCE_ID`).
pub async fn spawn_relay(env: HashMap<String, String>) -> RunningRelay {
    let mut env = env;
    env.insert(
        "RELAY_INSTANCE_ID".into(),
        format!("relay-{}", uuid::Uuid::new_v4().simple()),
    );
    spawn_relay_as(env).await
}

/// Starts a relay in-process with exactly the given environment.
pub async fn spawn_relay_as(env: HashMap<String, String>) -> RunningRelay {
    order_shared::telemetry::init_tracing(order_shared::config::LogFormat::Text);
    let settings = RelaySettings::from_env(&move |n: &str| env.get(n).cloned()).expect("settings");
    let shutdown = CancellationToken::new();
    let relay = Relay::build(settings, shutdown.clone())
        .await
        .expect("relay");
    let port = relay.port();
    let handle = tokio::spawn(relay.run());
    RunningRelay {
        port,
        shutdown,
        handle: Some(handle),
    }
}

/// Inserts `orders` x `versions` outbox rows (version order within each order).
pub async fn fill_outbox(db: &TestDb, orders: i32, versions: i32, shards: i32) {
    db.connect()
        .await
        .execute(
            "INSERT INTO outbox (event_id, aggregate_id, aggregate_version, event_type, topic, payload, shard) \
             SELECT gen_random_uuid(), o.id, v, 'order.placed', 'order.placed', \
                    jsonb_build_object('orderId', o.id, 'version', v), \
                    abs(hashtext(o.id::text)) % $3 \
             FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, $1) n) o, \
                  generate_series(1, $2) v ORDER BY v, o.n",
            &[&orders, &versions, &shards],
        )
        .await
        .expect("fill outbox");
}

/// A relay's lease session on `db`, for claims by hand, with the receiver
/// of its events (keep it while the session is used).
pub async fn lease_session(db: &TestDb) -> (OutboxSession, UnboundedReceiver<SessionEvent>) {
    OutboxSession::connect(&db.settings(), Duration::from_secs(30))
        .await
        .unwrap()
}

/// The one number a `SELECT count(*) ...` returns.
pub async fn count(db: &TestDb, sql: &str) -> i64 {
    db.connect().await.query_one(sql, &[]).await.unwrap().get(0)
}

pub async fn outbox_count(db: &TestDb) -> i64 {
    count(db, "SELECT count(*) FROM outbox").await
}

/// One record as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub key: String,
    pub value: serde_json::Value,
    pub headers: HashMap<String, String>,
    /// Producer CreateTime in milliseconds.
    pub timestamp: i64,
}

pub fn consumer(brokers: &str, topics: &[String]) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).expect("subscribe");
    consumer
}

/// Reads until `expected` records arrived and then `quiet` passed without
/// more, or until `deadline`.
pub async fn read_records(
    consumer: &StreamConsumer,
    expected: usize,
    quiet: Duration,
    deadline: Duration,
) -> Vec<Record> {
    let mut out = Vec::new();
    let end = Instant::now() + deadline;
    loop {
        let wait = if out.len() >= expected {
            quiet
        } else {
            Duration::from_millis(500)
        };
        if Instant::now() > end {
            break;
        }
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Record {
                    topic: m.topic().to_owned(),
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    value: serde_json::from_slice(m.payload().unwrap_or_default())
                        .unwrap_or_default(),
                    headers,
                    timestamp: m.timestamp().to_millis().unwrap_or_default(),
                });
            }
            Ok(Err(e)) => panic!("consumer error: {e}"),
            Err(_) if out.len() >= expected => break,
            Err(_) => {}
        }
    }
    out
}

/// The relay's `/metrics` text.
pub async fn metrics_text(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics answer")
        .text()
        .await
        .unwrap()
}

/// Sum of every series of a counter in a Prometheus text.
pub fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits for a condition on the database, polling.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub fn topics(prefix: &str, names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("{prefix}{n}")).collect()
}

/// Produces one record (as the payment or inventory service would).
pub async fn produce(brokers: &str, topic: &str, key: &str, value: &str, ce_id: Option<&str>) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let mut headers = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some("application/json"),
    });
    if let Some(id) = ce_id {
        headers = headers.insert(Header {
            key: "ce_id",
            value: Some(id),
        });
    }
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(value)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// Shard leases held per relay session, sorted.
pub async fn lease_counts(db: &TestDb) -> Vec<i64> {
    let rows = db
        .connect()
        .await
        .query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::int8 = $1 AND objsubid = 2 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             GROUP BY pid ORDER BY 1",
            &[&i64::from(order_shared::db::outbox::SHARD_CLASS)],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// A Tansu of its own on `port` (memory engine) that advertises
/// `advertised` (the same port, or a proxy in front of it).
pub async fn start_tansu(port: u16, advertised: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new("tansu")
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .args([
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
        ])
        .args(["--storage-engine", "memory://tansu/", "--silent"])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tansu on PATH (./scripts/test.sh installs it)");
    eventually("tansu listens", Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    child
}

/// Creates `topic` with `partitions` partitions (as an operator would, for
/// a relay that does not create its topics), unless it exists.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    for result in results {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => panic!("creating {t}: {e}"),
        }
    }
}

pub fn versions_by_order(records: &[Record]) -> HashMap<String, Vec<i64>> {
    let mut by_order: HashMap<String, Vec<i64>> = HashMap::new();
    for r in records {
        by_order
            .entry(r.key.clone())
            .or_default()
            .push(r.value["version"].as_i64().unwrap());
    }
    by_order
}

/// Reads the `order.placed` records under `prefix` until `orders` x
/// `versions` arrived, and asserts each arrived once, in version order per
/// order.
pub async fn assert_each_once_in_order(prefix: &str, orders: usize, versions: i64) {
    let expected = orders * versions as usize;
    let consumer = consumer(&brokers(), &topics(prefix, &["order.placed"]));
    let records = read_records(
        &consumer,
        expected,
        Duration::from_secs(3),
        Duration::from_secs(120),
    )
    .await;

    assert_eq!(records.len(), expected, "every event exactly once");
    let by_order = versions_by_order(&records);
    assert_eq!(by_order.len(), orders);
    for (order, got) in by_order {
        assert_eq!(got, (1..=versions).collect::<Vec<i64>>(), "order {order}");
    }
}
