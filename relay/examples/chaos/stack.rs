//! The processes of the run (api, three relays, Tansu, a proxy) and how
//! to (re)start them.

use order_shared::testing::{TcpProxy, TestDb};
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::{Child, Command};

pub const SHARDS: &str = "8";
pub const SECRET: &str = "chaos-secret-chaos-secret-chaos-secret";
pub const OUT_TOPICS: [&str; 5] = [
    "order.placed",
    "order.confirmed",
    "order.shipped",
    "order.delivered",
    "order.cancelled",
];

/// `N` distinct free ports. The listeners are held until all are chosen:
/// one dropped at once could be handed out again by the next bind.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("a bound port").port())
}

/// The last `lines` lines of a process's log, for a report.
pub fn log_tail(dir: &std::path::Path, name: &str, lines: usize) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn log_file(dir: &std::path::Path, name: &str) -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map(Into::into)
        .unwrap_or_else(|_| std::process::Stdio::null())
}

/// The processes and how to (re)start them.
pub struct Stack {
    pub bins: PathBuf,
    pub logs: PathBuf,
    pub db: TestDb,
    pub broker_port: u16,
    pub proxy: TcpProxy,
    pub api_port: u16,
    pub relay_ports: [u16; 3],
    pub tansu: Option<Child>,
    pub relays: [Option<Child>; 3],
    pub api: Option<Child>,
    /// Processes that exited on their own, and were started again.
    pub crashes: Vec<String>,
}

impl Stack {
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    pub fn start_tansu(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.broker_port);
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(log_file(&self.logs, "tansu"))
            .stderr(log_file(&self.logs, "tansu"))
            .kill_on_drop(true)
            .spawn()
            .expect("tansu on PATH");
        self.tansu = Some(child);
    }

    pub fn common_env(&self, cmd: &mut Command, db_url: &str) {
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", db_url)
            .env("OUTBOX_SHARDS", SHARDS)
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "warn,order_relay=info")
            .env("APP_ENV", "development")
            .kill_on_drop(true);
    }

    pub fn start_api(&mut self) {
        let mut cmd = Command::new(self.bins.join("order-api"));
        self.common_env(&mut cmd, &self.db.url);
        cmd.arg("serve")
            .env("JWT_SECRET", SECRET)
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", self.api_port.to_string())
            .stdout(log_file(&self.logs, "order-api"))
            .stderr(log_file(&self.logs, "order-api"));
        self.api = Some(cmd.spawn().expect("start order-api"));
    }

    pub fn start_relay(&mut self, i: usize) {
        let url = if i == 2 {
            self.proxy.url_for(&self.db.url)
        } else {
            self.db.url.clone()
        };
        let mut cmd = Command::new(self.bins.join("order-relay"));
        self.common_env(&mut cmd, &url);
        let name = format!("order-relay-{}", i + 1);
        cmd.arg("serve")
            .env("KAFKA_BROKERS", self.brokers())
            .env("KAFKA_CREATE_TOPICS", "true")
            .env("KAFKA_TOPIC_PARTITIONS", "3")
            .env("KAFKA_MESSAGE_TIMEOUT_MS", "5000")
            .env("KAFKA_CONSUMER_GROUP", "chaos")
            .env("RELAY_INSTANCE_ID", &name)
            .env("RELAY_HOST", "127.0.0.1")
            .env("RELAY_PORT", self.relay_ports[i].to_string())
            .env("OUTBOX_PUBLISH_STALL_SECS", "15")
            .env("SHUTDOWN_TIMEOUT_SECS", "10")
            .stdout(log_file(&self.logs, &name))
            .stderr(log_file(&self.logs, &name));
        self.relays[i] = Some(cmd.spawn().expect("start order-relay"));
    }

    /// What an orchestrator does: a relay or the API that exited on its own
    /// is recorded and started again.
    pub fn supervise(&mut self) {
        for i in 0..3 {
            let exited = self.relays[i]
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.crashes
                    .push(format!("order-relay-{} exited ({status})", i + 1));
                self.start_relay(i);
            }
        }
        let exited = self.api.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            self.crashes.push(format!("order-api exited ({status})"));
            self.start_api();
        }
    }

    /// Restarts every relay cleanly (SIGTERM, wait, start again): each
    /// leaves the consumer group, which Tansu then rebalances at once.
    pub async fn restart_relays(&mut self) {
        for i in 0..3 {
            if let Some(mut child) = self.relays[i].take() {
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status();
                }
                if tokio::time::timeout(Duration::from_secs(15), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
            self.start_relay(i);
        }
    }

    pub fn signal_relays(&self, signal: &str) {
        for child in self.relays.iter().flatten() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args([signal, &pid.to_string()])
                    .status();
            }
        }
    }

    pub async fn kill_relay(&mut self, i: usize) {
        if let Some(mut child) = self.relays[i].take() {
            let _ = child.kill().await;
        }
    }

    pub async fn stop_all(&mut self) {
        for child in self.relays.iter_mut().chain([&mut self.api]).flatten() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for child in self.relays.iter_mut().chain([&mut self.api]).flatten() {
            if tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        if let Some(mut tansu) = self.tansu.take() {
            let _ = tansu.kill().await;
        }
    }
}
