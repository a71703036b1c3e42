//! Builds the relay (producer, topics, health server) and runs the lease
//! coordinator until shutdown. Tests start this very `Relay` on port 0.

use crate::config::RelaySettings;
use crate::context::RelayContext;
use crate::health;
use crate::kafka::create_topics;
use crate::producers::{BACKLOG_IDLE, Producers};
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use order_shared::db::live::Announcer;
use order_shared::db::purge::Purge;
use order_shared::domain::EventType;
use poem::listener::TcpAcceptor;
use poem::middleware::SetHeader;
use poem::{EndpointExt, Route, Server};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often old inbox rows are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Topics the relay consumes, without prefix.
pub const INBOUND_TOPICS: [&str; 3] =
    ["payment.authorized", "payment.failed", "inventory.reserved"];
/// The dead-letter topic, without prefix.
pub const DLQ_TOPIC: &str = "order-service.dlq";

/// A bound, not yet running relay.
pub struct Relay {
    ctx: Arc<RelayContext>,
    pool: Pool,
    acceptor: TcpAcceptor,
    port: u16,
    shutdown: CancellationToken,
    metrics: PrometheusHandle,
}

impl Relay {
    pub async fn build(
        settings: RelaySettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let pool = order_shared::db::build_pool(&settings.common.db)?;
        order_shared::db::pinned::verify_at_start(&pool, settings.common.outbox_shards).await?;
        let c = &settings.consumer;
        let topics: Vec<String> = EventType::ALL
            .iter()
            .map(|t| t.as_str())
            .chain([
                c.payment_authorized_topic.as_str(),
                c.payment_failed_topic.as_str(),
                c.inventory_reserved_topic.as_str(),
                c.dlq_topic.as_str(),
            ])
            .map(|t| settings.kafka.topic(t))
            .collect();
        if settings.kafka.create_topics {
            // A broker that is down now is no reason to refuse to start:
            // publishing re-creates missing topics when it finds them missing.
            if let Err(err) = create_topics(&settings.kafka, &topics).await {
                tracing::warn!(error = %err, "Creating topics at start failed; will retry on demand.");
            }
        }
        let producers = Producers::new(&settings.kafka)
            .map_err(|e| anyhow::anyhow!("KAFKA_BROKERS: cannot create a producer: {e}"))?;
        let (acceptor, port) =
            order_shared::listen::bind(&settings.host, settings.port, "RELAY_HOST/RELAY_PORT")
                .await?;
        let hints = settings
            .consumer
            .enabled
            .then(|| Announcer::spawn(pool.clone(), shutdown.clone()).0);
        // The recorder first: the context registers its metric handles.
        let metrics = order_shared::telemetry::prometheus()?;
        let ctx = Arc::new(RelayContext::new(settings, producers, topics, hints));
        Ok(Relay {
            ctx,
            pool,
            acceptor,
            port,
            shutdown,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn context(&self) -> Arc<RelayContext> {
        self.ctx.clone()
    }

    /// Runs until the shutdown token fires; then lets in-flight batches
    /// finish and releases the leases, all within one SHUTDOWN_TIMEOUT_SECS
    /// deadline counted from the signal.
    pub async fn run(self) -> std::io::Result<()> {
        let grace = self.ctx.settings.common.shutdown_timeout;
        let coordinator = tokio::spawn(crate::leases::run(self.ctx.clone(), self.shutdown.clone()));
        let stats = tokio::spawn(report_stats(self.pool.clone(), self.shutdown.clone()));
        let retire = tokio::spawn(retire_idle_backlog(self.ctx.clone(), self.shutdown.clone()));
        let consumer = self.ctx.settings.consumer.enabled.then(|| {
            tokio::spawn(crate::consumer::run(
                self.ctx.clone(),
                self.pool.clone(),
                self.shutdown.clone(),
            ))
        });
        let inbox = Purge::ProcessedEvents {
            older_than: self.ctx.settings.consumer.inbox_retention,
        };
        let purge =
            tokio::spawn(inbox.run_every(self.pool.clone(), PURGE_INTERVAL, self.shutdown.clone()));
        let app = Route::new()
            .at("/health/live", poem::get(health::live))
            .at("/health/ready", poem::get(health::ready))
            .at("/metrics", poem::get(health::metrics))
            .data(self.ctx.clone())
            .data(self.metrics.clone())
            .with(SetHeader::new().overriding("x-content-type-options", "nosniff"));
        tracing::info!(
            port = self.port,
            "order-relay listening for health and metrics."
        );
        // One deadline for the whole stop, from the signal on: draining
        // HTTP, the shard workers, the consumer and the producer's flush all
        // fit in SHUTDOWN_TIMEOUT_SECS (keep it below the pod's
        // terminationGracePeriodSeconds).
        let signal = self.shutdown.clone();
        let deadline = tokio::spawn(async move {
            signal.cancelled().await;
            tokio::time::Instant::now() + grace
        });
        let shutdown = self.shutdown.clone();
        let served = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, async move { shutdown.cancelled().await }, Some(grace))
            .await;
        // The server also returns on its own error: stop everything else too.
        self.shutdown.cancel();
        let deadline = deadline
            .await
            .unwrap_or_else(|_| tokio::time::Instant::now() + grace);
        if tokio::time::timeout_at(deadline, coordinator)
            .await
            .is_err()
        {
            tracing::warn!(
                "Shard workers did not finish within the grace period; abandoning their batches (rows stay in the outbox)."
            );
        }
        if let Some(consumer) = consumer
            && tokio::time::timeout_at(deadline, consumer).await.is_err()
        {
            tracing::warn!("The consumer did not stop within the grace period.");
        }
        stats.abort();
        purge.abort();
        retire.abort();
        let producers = self.ctx.producers.all();
        let flush_for = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(100));
        let _ = tokio::time::timeout(
            flush_for,
            tokio::task::spawn_blocking(move || {
                use rdkafka::producer::Producer;
                let end = std::time::Instant::now() + flush_for;
                for producer in producers {
                    let left = end.saturating_duration_since(std::time::Instant::now());
                    let _ = producer.producer().flush(left);
                }
            }),
        )
        .await;
        self.pool.close();
        tracing::info!("order-relay stopped.");
        served
    }
}

/// Backlog gauges every five seconds (the whole outbox, so any replica's
/// figure is the true one).
async fn report_stats(pool: Pool, shutdown: CancellationToken) {
    loop {
        if let Ok(client) = pool.get().await {
            match order_shared::db::outbox::stats(&client).await {
                Ok(s) => {
                    metrics::gauge!("outbox_backlog").set(s.backlog as f64);
                    metrics::gauge!("outbox_oldest_age_seconds").set(s.oldest_age_seconds);
                    metrics::gauge!("outbox_parked").set(s.parked as f64);
                }
                Err(e) => tracing::debug!(error = %e, "Reading outbox statistics failed."),
            }
        }
        order_shared::db::record_pool_metrics(&pool, "relay");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Every 10 s, closes the backlog producer after [`BACKLOG_IDLE`] without a
/// full batch.
async fn retire_idle_backlog(ctx: Arc<RelayContext>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        if ctx.producers.retire_backlog(BACKLOG_IDLE) {
            tracing::debug!("Closed the idle Kafka backlog producer.");
        }
    }
}
