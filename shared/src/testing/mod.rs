//! Test support shared by the integration tests of `order-api` and
//! `order-relay`: a fresh, migrated database per test (so tests run in
//! parallel), and a TCP proxy that can cut the database off and back on.

pub mod sse;

use crate::db::DbSettings;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The server the tests use: `TEST_DATABASE_URL`, else `DATABASE_URL`, else
/// the local default. Its role needs CREATEDB.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| crate::config::DEFAULT_DATABASE_URL.to_owned())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let prefix = base.rsplit_once('/').map(|(p, _)| p).unwrap_or(base);
    format!("{prefix}/{name}{query}")
}

/// A migrated database created for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// The database name (`test_...`).
    pub name: String,
    /// Its connection URL.
    pub url: String,
}

impl TestDb {
    /// Pool settings for this database.
    pub fn settings(&self) -> DbSettings {
        DbSettings {
            url: crate::config::Secret::new(self.url.clone()),
            pool_size: 8,
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(10),
        }
    }

    /// A direct connection for arranging and asserting.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        client
    }
}

/// Creates `test_<uuid>` on the test server and applies the migrations.
pub async fn fresh_database() -> TestDb {
    let server = server_url();
    let admin_url = with_database(&server, "postgres");
    let (admin, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {admin_url} (start it with ./scripts/test.sh): {e}")
        });
    let task = tokio::spawn(conn);
    let name = format!("test_{}", Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create the test database");
    drop(admin);
    task.abort();
    let db = TestDb {
        url: with_database(&server, &name),
        name,
    };
    crate::db::migrate::run(&db.settings())
        .await
        .expect("migrate the test database");
    db
}

/// A TCP proxy in front of a server; `cut()` drops every connection and
/// refuses new ones until `restore()`. Simulates a database outage for one
/// test without touching the shared server. `stall()` is the silent kind of
/// cut (a dead host, a partition): it stops forwarding in both directions
/// but keeps every socket open, and accepts new connections without
/// forwarding them, so only timeouts can notice.
#[derive(Clone)]
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    conns: Arc<Mutex<CancellationToken>>,
    stall: Arc<Mutex<CancellationToken>>,
}

impl TcpProxy {
    /// A proxy to `target` (`host:port`) on a free port.
    pub async fn start(target: String) -> TcpProxy {
        Self::start_on(0, target).await
    }

    /// Like [`TcpProxy::start`] on a given local port (0: any).
    pub async fn start_on(port: u16, target: String) -> TcpProxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy");
        let proxy = TcpProxy {
            addr: listener.local_addr().expect("proxy address"),
            down: Arc::new(AtomicBool::new(false)),
            stalled: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(CancellationToken::new())),
            stall: Arc::new(Mutex::new(CancellationToken::new())),
        };
        let me = proxy.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if me.down.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let token = me.conns.lock().await.clone();
                let stall = me.stall.lock().await.clone();
                if me.stalled.load(Ordering::SeqCst) {
                    // Accepted, never answered: held until a cut.
                    tokio::spawn(async move {
                        token.cancelled().await;
                        drop(inbound);
                    });
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = token.cancelled() => {}
                        _ = stall.cancelled() => {
                            // Both sockets stay open; nothing moves.
                            token.cancelled().await;
                        }
                    }
                });
            }
        });
        proxy
    }

    /// Drops all connections and refuses new ones.
    pub async fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        let mut token = self.conns.lock().await;
        token.cancel();
        *token = CancellationToken::new();
    }

    /// Stops forwarding without closing anything (see the type's doc).
    pub async fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        let mut token = self.stall.lock().await;
        token.cancel();
        *token = CancellationToken::new();
    }

    /// Ends a cut or a stall: new connections are forwarded again (stalled
    /// ones are closed).
    pub async fn restore(&self) {
        if self.stalled.swap(false, Ordering::SeqCst) {
            let mut token = self.conns.lock().await;
            token.cancel();
            *token = CancellationToken::new();
        }
        self.down.store(false, Ordering::SeqCst);
    }

    /// `url` rewritten to go through this proxy.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("URL with scheme");
        let (auth, after_host) = match rest.split_once('@') {
            Some((auth, after)) => (format!("{auth}@"), after),
            None => (String::new(), rest),
        };
        let path = after_host.find('/').map(|i| &after_host[i..]).unwrap_or("");
        format!("{scheme}://{auth}{}{path}", self.addr)
    }
}

/// host:port of a postgres URL (for the proxy target).
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten() {
        let url = "postgres://orders:orders@127.0.0.1:5432/orders?sslmode=disable";
        assert_eq!(
            with_database(url, "x"),
            "postgres://orders:orders@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(host_port(url), "127.0.0.1:5432");
        assert_eq!(host_port("postgres://db/orders"), "db:5432");
    }
}
