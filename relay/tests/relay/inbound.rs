//! Helpers for the consumer tests: orders to pay for, inbound events to
//! produce (as the payment and inventory services would), metrics to read,
//! and relays run as processes (to stop them with SIGTERM or SIGKILL).

use crate::helpers::*;
use order_shared::db::Emit;
use order_shared::db::orders::{CreateOrder, Created, create_order};
use order_shared::domain::{AddressInput, ItemInput, NewOrder, NewOrderInput, UserId};
use order_shared::testing::TestDb;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

pub async fn place(db: &TestDb) -> Uuid {
    let order = NewOrder::parse(&NewOrderInput {
        currency: "USD".into(),
        items: vec![ItemInput {
            product_id: "sku-1".into(),
            quantity: 1,
            unit_price: 100,
        }],
        shipping_address: AddressInput {
            name: "A".into(),
            line1: "B".into(),
            city: "C".into(),
            postal_code: "D".into(),
            country: "US".into(),
            ..AddressInput::default()
        },
    })
    .unwrap();
    let pool = order_shared::db::build_pool(&db.settings()).unwrap();
    let client = pool.get().await.unwrap();
    let req = CreateOrder {
        user_id: &UserId::new("alice"),
        order: &order,
        actor: "user:alice",
        idempotency: None,
        emit: Emit {
            traceparent: None,
            shards: 8,
            notify: true,
        },
    };
    match create_order(&client, &req).await.unwrap() {
        Created::New(o) => o.id.into(),
        Created::Replayed(_) => unreachable!(),
    }
}

pub async fn status(db: &TestDb, id: Uuid) -> (String, i64) {
    let row = db
        .connect()
        .await
        .query_one("SELECT status, version FROM orders WHERE id = $1", &[&id])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

pub async fn wait_status(db: &TestDb, id: Uuid, expected: &str) {
    eventually(
        &format!("order {id} becomes {expected}"),
        Duration::from_secs(60),
        || async { status(db, id).await.0 == expected },
    )
    .await;
}

pub async fn metric(port: u16, needle: &str) -> bool {
    metrics_text(port)
        .await
        .lines()
        .any(|l| l.starts_with(needle))
}

/// The `order.confirmed` records on the broker, read until quiet.
pub async fn confirmed_records(prefix: &str) -> Vec<Record> {
    let consumer = consumer(&brokers(), &topics(prefix, &["order.confirmed"]));
    read_records(
        &consumer,
        1,
        Duration::from_secs(3),
        Duration::from_secs(60),
    )
    .await
}

pub fn event(order: Uuid, extra: &str) -> String {
    format!(
        r#"{{"eventId":"{}","orderId":"{order}"{extra}}}"#,
        Uuid::new_v4()
    )
}

/// The value of the sample line starting with `series` (0 when absent).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `/health/ready` answers 503 with `needle` in its body.
pub async fn wait_not_ready_naming(port: u16, needle: &str) {
    eventually(
        &format!("readiness names {needle}"),
        Duration::from_secs(30),
        || async {
            let ready = reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
                .await
                .unwrap();
            ready.status() == 503 && ready.text().await.unwrap().contains(needle)
        },
    )
    .await;
}

/// One producer for many records; returns where each record landed.
pub struct EventProducer {
    producer: FutureProducer,
}

impl EventProducer {
    pub fn new(brokers: &str) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "2")
            // One record per batch: Tansu cannot fetch from inside a batch
            // (README, "Broker fact"), and a paused partition resumes there.
            .set("batch.num.messages", "1")
            .create()
            .expect("producer");
        EventProducer { producer }
    }

    /// Sends one record with optional `ce_id`/`ce_source` headers;
    /// returns (partition, offset).
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        value: &str,
        headers: &[(&str, &str)],
    ) -> (i32, i64) {
        let headers = headers.iter().fold(
            OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some("application/json"),
            }),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(*v),
                })
            },
        );
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .headers(headers);
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e)
            .expect("produce")
    }

    /// An event for `order` (fresh `eventId`, `extra` JSON members) on
    /// `{prefix}{topic}`, keyed by the order id.
    pub async fn emit(
        &self,
        prefix: &str,
        topic: &str,
        order: Uuid,
        extra: &str,
        headers: &[(&str, &str)],
    ) -> (i32, i64) {
        let topic = format!("{prefix}{topic}");
        self.send(&topic, &order.to_string(), &event(order, extra), headers)
            .await
    }

    /// A `payment.authorized` event for `order` with a fresh id.
    pub async fn pay(&self, prefix: &str, order: Uuid) -> (i32, i64) {
        self.emit(prefix, "payment.authorized", order, "", &[])
            .await
    }
}

/// An `order-relay serve` process on a known port (for its metrics).
pub struct RelayProcess {
    pub child: tokio::process::Child,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RelayProcess {
    /// Starts the binary with `env` (its RELAY_INSTANCE_ID included) and
    /// waits until it answers on its port.
    pub async fn start(env: &HashMap<String, String>, port: u16) -> Self {
        // Its log goes to a file named after the instance (appended across
        // restarts), for reading after a failure.
        let log = std::env::temp_dir().join(format!("{}.log", env["RELAY_INSTANCE_ID"]));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("relay log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-relay"))
            .arg("serve")
            .envs(env)
            .env("RELAY_PORT", port.to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start order-relay");
        eventually(
            "the relay answers",
            Duration::from_secs(30),
            || async move {
                reqwest::get(format!("http://127.0.0.1:{port}/health/live"))
                    .await
                    .is_ok()
            },
        )
        .await;
        RelayProcess { child }
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within the grace period")
            .unwrap();
        assert!(status.success(), "{status:?}");
    }

    /// SIGKILL: no commit, no goodbye to the group.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.unwrap();
    }
}
